package git

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/internal/rawfile"
)

// writeTreeCLI writes the tree of commit from the bare repository gitDir into dir with the
// git command: `git ls-tree -r -t -z` lists every entry, `git cat-file --batch` streams the
// raw blobs. Raw objects mean no line-ending conversion, filters, ident or export-subst,
// whatever the repository's .gitattributes or the user's git config say: the same bytes as
// the go-git exporter. It returns the submodule entries (gitlinks).
func writeTreeCLI(ctx context.Context, gitDir, commit, dir string) ([]submodule, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// gitCommand's hermetic environment: the export reads a bare repository and needs nothing
	// of the user's (no config, no replace objects, no locale).
	ls := gitCommand(ctx, gitDir, "ls-tree", "-r", "-t", "-z", "--full-tree", commit)
	var lsErr bytes.Buffer
	ls.Stderr = &lsErr
	listing, err := ls.Output()
	if err != nil {
		// go-git found the commit, so a tree git cannot list is a damaged mirror.
		return nil, fmt.Errorf("%w: git ls-tree: %v: %s", ErrMirrorBroken, err, strings.TrimSpace(lsErr.String()))
	}
	type entry struct {
		mode, hash, path, rel string
	}
	var blobs []entry
	var subs []submodule
	for _, rec := range bytes.Split(listing, []byte{0}) {
		if len(rec) == 0 {
			continue
		}
		meta, p, ok := strings.Cut(string(rec), "\t")
		f := strings.Fields(meta)
		if !ok || len(f) != 3 {
			return nil, fmt.Errorf("git ls-tree: unexpected line %q", rec)
		}
		for _, el := range strings.Split(p, "/") {
			if err := checkName(el); err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
		}
		target := filepath.Join(dir, filepath.FromSlash(p))
		switch f[0] {
		case "040000":
			if err := os.Mkdir(target, 0o755); err != nil {
				return nil, err
			}
		case "160000":
			if err := os.Mkdir(target, 0o755); err != nil {
				return nil, err
			}
			subs = append(subs, submodule{path: p, commit: f[2]})
		case "100644", "100664", "100755", "120000":
			blobs = append(blobs, entry{mode: f[0], hash: f[2], path: target, rel: p})
		default:
			return nil, fmt.Errorf("%s: unsupported file mode %s", p, f[0])
		}
	}
	if len(blobs) == 0 {
		return subs, nil
	}

	cat := gitCommand(ctx, gitDir, "cat-file", "--batch")
	var catErr bytes.Buffer
	cat.Stderr = &catErr
	stdin, err := cat.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cat.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cat.Start(); err != nil {
		return nil, fmt.Errorf("git cat-file: %w", err)
	}
	// The writer ends when every id is written or the pipe breaks (cat-file exited).
	werr := make(chan error, 1)
	go func() {
		bw := bufio.NewWriterSize(stdin, 64<<10)
		var err error
		for _, b := range blobs {
			if _, err = bw.WriteString(b.hash + "\n"); err != nil {
				break
			}
		}
		if err == nil {
			err = bw.Flush()
		}
		stdin.Close()
		werr <- err
	}()
	copyBuf := make([]byte, 64<<10)
	rerr := readBlobs(bufio.NewReaderSize(stdout, 256<<10), len(blobs), func(i int, size int64, r io.Reader) error {
		b := blobs[i]
		if b.mode == "120000" {
			t, err := io.ReadAll(io.LimitReader(r, size))
			if err != nil {
				return err
			}
			if err := checkSymlink(b.rel, string(t)); err != nil {
				return err
			}
			return os.Symlink(string(t), b.path)
		}
		return createFile(b.path, b.mode == "100755", r, size, copyBuf)
	}, func(i int, hash, typ string) error {
		if hash != blobs[i].hash || typ != "blob" {
			return fmt.Errorf("git cat-file: asked for blob %s, got %s %s", blobs[i].hash, typ, hash)
		}
		return nil
	})
	if rerr != nil {
		cancel()
	}
	waitErr := cat.Wait()
	wErr := <-werr
	switch {
	case rerr != nil:
		return nil, rerr
	case waitErr != nil:
		return nil, fmt.Errorf("git cat-file: %v: %s", waitErr, strings.TrimSpace(catErr.String()))
	case wErr != nil:
		return nil, fmt.Errorf("git cat-file: writing ids: %w", wErr)
	}
	return subs, nil
}

// readBlobs reads n objects of `git cat-file --batch` output ("<id> <type> <size>\n<data>\n"),
// calling check on each header and write with a reader of exactly size bytes.
func readBlobs(r *bufio.Reader, n int, write func(i int, size int64, r io.Reader) error, check func(i int, hash, typ string) error) error {
	for i := 0; i < n; i++ {
		head, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("git cat-file: reading header: %w", err)
		}
		f := strings.Fields(head)
		if len(f) == 2 && f[1] == "missing" {
			return fmt.Errorf("%w: git cat-file: object %s missing from the mirror", ErrMirrorBroken, f[0])
		}
		if len(f) != 3 {
			return fmt.Errorf("git cat-file: unexpected header %q", head)
		}
		if err := check(i, f[0], f[1]); err != nil {
			return err
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return fmt.Errorf("git cat-file: bad size in %q", head)
		}
		lr := &io.LimitedReader{R: r, N: size}
		if err := write(i, size, lr); err != nil {
			return err
		}
		if lr.N != 0 {
			return errors.New("git cat-file: short object")
		}
		if b, err := r.ReadByte(); err != nil || b != '\n' {
			return errors.New("git cat-file: missing object terminator")
		}
	}
	return nil
}

// createFile creates the regular file p with size bytes from r, read-only from the start:
// mode 0444, or 0555 when executable, the modes the store gives a file (docs/design.md
// section 4), so that the store's canonicalisation finds them right and skips a chmod per
// file. Writing through the descriptor is allowed whatever the mode. Raw system calls (open,
// write, close) avoid the poller registration os.OpenFile tries for every file.
func createFile(p string, executable bool, r io.Reader, size int64, buf []byte) error {
	perm := uint32(0o444)
	if executable {
		perm = 0o555
	}
	return rawfile.CopyN(p, perm, r, size, buf)
}
