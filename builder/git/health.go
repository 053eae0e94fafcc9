package git

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// ErrMirrorBroken is a mirror whose files are damaged (an empty or truncated pack or index,
// an unreadable ref, an object a ref or tree needs missing), typically by a fetch that ran out
// of disk space or was killed. The next fetch discards such a mirror and fetches it again.
var ErrMirrorBroken = errors.New("mirror broken")

// mirrorProblem returns the first thing found wrong with the bare mirror at p, or "" when it
// looks sound. It checks what a cut-short write leaves behind, cheaply (headers and
// trailers, not every object): each pack has an index whose object count and pack checksum
// match the pack's header and trailer, no loose object is empty, HEAD and every ref parse,
// and every ref names an object the mirror holds. It removes the temporary files of an
// interrupted fetch (objects/pack/tmp_*, objects/incoming-*), which are garbage, not damage.
// A mirror that does not exist has no problem.
func mirrorProblem(p string) string {
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	for _, f := range []string{"HEAD", "config"} {
		fi, err := os.Stat(filepath.Join(p, f))
		if err != nil || fi.Size() == 0 {
			return f + " is missing or empty"
		}
	}
	removeFetchLeftovers(p)
	if msg := packProblem(filepath.Join(p, "objects", "pack")); msg != "" {
		return msg
	}
	if msg := looseProblem(filepath.Join(p, "objects")); msg != "" {
		return msg
	}
	return refProblem(p)
}

// removeFetchLeftovers deletes what an interrupted fetch leaves: git's tmp_pack_*, tmp_idx_*
// and incoming quarantine directories, go-git's packfile temporaries. Callers hold the
// mirror's lock, so no fetch of this tool is writing them.
func removeFetchLeftovers(p string) {
	for _, pat := range []string{"objects/pack/tmp_*", "objects/pack/.tmp-*", "objects/pack/packfile*", "objects/incoming-*", "objects/tmp_objdir-*"} {
		ms, _ := filepath.Glob(filepath.Join(p, pat))
		for _, m := range ms {
			os.RemoveAll(m)
		}
	}
}

// packProblem checks every pack and index in dir.
func packProblem(dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return ""
		}
		return fmt.Sprintf("objects/pack: %v", err)
	}
	names := map[string]bool{}
	for _, e := range ents {
		names[e.Name()] = true
	}
	for _, e := range ents {
		n := e.Name()
		switch {
		case strings.HasSuffix(n, ".pack"):
			idx := strings.TrimSuffix(n, ".pack") + ".idx"
			if !names[idx] {
				return "objects/pack/" + n + " has no index"
			}
			if msg := checkPackPair(filepath.Join(dir, n), filepath.Join(dir, idx)); msg != "" {
				return msg
			}
		case strings.HasSuffix(n, ".idx"):
			if !names[strings.TrimSuffix(n, ".idx")+".pack"] {
				return "objects/pack/" + n + " has no pack"
			}
		}
	}
	return ""
}

// checkPackPair compares a version-2 pack index with its pack: the index's size fits its
// object count, the pack's header has the same count and its trailing checksum is the one
// the index records.
func checkPackPair(packPath, idxPath string) string {
	rel := func(p string) string { return "objects/pack/" + filepath.Base(p) }
	idx, err := os.Open(idxPath)
	if err != nil {
		return fmt.Sprintf("%s: %v", rel(idxPath), err)
	}
	defer idx.Close()
	ifi, err := idx.Stat()
	if err != nil {
		return fmt.Sprintf("%s: %v", rel(idxPath), err)
	}
	const head = 8 + 256*4 // magic, version, fan-out table
	if ifi.Size() == 0 {
		return rel(idxPath) + " is empty"
	}
	if ifi.Size() < head+40 {
		return rel(idxPath) + " is truncated"
	}
	var h [head]byte
	if _, err := io.ReadFull(idx, h[:]); err != nil {
		return fmt.Sprintf("%s: %v", rel(idxPath), err)
	}
	if !bytes.Equal(h[:4], []byte{0xff, 't', 'O', 'c'}) || binary.BigEndian.Uint32(h[4:8]) != 2 {
		return rel(idxPath) + " is not a version-2 pack index"
	}
	count := int64(binary.BigEndian.Uint32(h[head-4:]))
	min := head + count*(20+4+4) + 40 // names, CRCs, offsets, two checksums
	if ifi.Size() < min || (ifi.Size()-min)%8 != 0 || ifi.Size()-min > count*8 {
		return rel(idxPath) + " is truncated"
	}
	var idxPackSum [20]byte
	if _, err := idx.ReadAt(idxPackSum[:], ifi.Size()-40); err != nil {
		return fmt.Sprintf("%s: %v", rel(idxPath), err)
	}
	pack, err := os.Open(packPath)
	if err != nil {
		return fmt.Sprintf("%s: %v", rel(packPath), err)
	}
	defer pack.Close()
	pfi, err := pack.Stat()
	if err != nil {
		return fmt.Sprintf("%s: %v", rel(packPath), err)
	}
	if pfi.Size() < 12+20 {
		return rel(packPath) + " is truncated"
	}
	var ph [12]byte
	if _, err := io.ReadFull(pack, ph[:]); err != nil {
		return fmt.Sprintf("%s: %v", rel(packPath), err)
	}
	if string(ph[:4]) != "PACK" {
		return rel(packPath) + " is not a pack"
	}
	if int64(binary.BigEndian.Uint32(ph[8:12])) != count {
		return rel(packPath) + " does not match its index"
	}
	var packSum [20]byte
	if _, err := pack.ReadAt(packSum[:], pfi.Size()-20); err != nil {
		return fmt.Sprintf("%s: %v", rel(packPath), err)
	}
	if packSum != idxPackSum {
		return rel(packPath) + " is truncated or does not match its index"
	}
	return ""
}

// looseProblem finds an empty loose object (a write cut short).
func looseProblem(objects string) string {
	dirs, _ := filepath.Glob(filepath.Join(objects, "[0-9a-f][0-9a-f]"))
	for _, d := range dirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			fi, err := e.Info()
			if err == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
				return "objects/" + filepath.Base(d) + "/" + e.Name() + " is empty"
			}
		}
	}
	return ""
}

// refProblem checks that every ref (loose and packed) parses and names an object present in
// the mirror.
func refProblem(p string) string {
	var bad string
	check := func(name, val string) bool {
		if strings.HasPrefix(val, "ref: ") {
			return true
		}
		if !IsCommit(val) {
			bad = fmt.Sprintf("ref %s is unreadable (%q)", name, clip(val))
			return false
		}
		return true
	}
	refs := map[string]string{}
	_ = filepath.WalkDir(filepath.Join(p, "refs"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || bad != "" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			bad = fmt.Sprintf("ref %s: %v", path, err)
			return nil
		}
		rel, _ := filepath.Rel(p, path)
		val := strings.TrimSpace(string(b))
		if check(filepath.ToSlash(rel), val) && !strings.HasPrefix(val, "ref: ") {
			refs[filepath.ToSlash(rel)] = val
		}
		return nil
	})
	if bad != "" {
		return bad
	}
	if f, err := os.Open(filepath.Join(p, "packed-refs")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line := sc.Text()
			if line == "" || line[0] == '#' || line[0] == '^' {
				continue
			}
			val, name, ok := strings.Cut(line, " ")
			if !ok || !check(name, val) {
				f.Close()
				if bad == "" {
					bad = fmt.Sprintf("packed-refs line %q is unreadable", clip(line))
				}
				return bad
			}
			if _, loose := refs[name]; !loose {
				refs[name] = val
			}
		}
		f.Close()
	}
	if len(refs) == 0 {
		return ""
	}
	repo, err := gogit.PlainOpen(p)
	if err != nil {
		return fmt.Sprintf("cannot open: %v", err)
	}
	for name, val := range refs {
		if _, err := repo.Storer.EncodedObject(plumbing.AnyObject, plumbing.NewHash(val)); err != nil {
			return fmt.Sprintf("ref %s names object %s, which is missing", name, val)
		}
	}
	return ""
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// discard moves the broken mirror at p aside and deletes it. Readers that still have its
// files open keep reading them; the next open creates a fresh mirror.
func discard(p string) error {
	aside := fmt.Sprintf("%s.broken-%d", p, time.Now().UnixNano())
	if err := os.Rename(p, aside); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("moving broken mirror aside: %w", err)
	}
	if err := os.RemoveAll(aside); err != nil {
		return fmt.Errorf("removing broken mirror: %w", err)
	}
	return nil
}

// openChecked opens the mirror of u like open, after discarding it if mirrorProblem finds it
// broken (and saying so through Log). The caller holds the mirror's lock.
func (m *Mirrors) openChecked(u string) (*gogit.Repository, error) {
	p := m.Path(u)
	if msg := mirrorProblem(p); msg != "" {
		if err := m.repair(u, msg); err != nil {
			return nil, err
		}
	}
	repo, err := m.open(u)
	if err != nil {
		return nil, &Error{Op: "opening mirror of", URL: CleanURL(u), Err: noSpace(err, m.Dir)}
	}
	return repo, nil
}

// repair discards the broken mirror of u; the next fetch makes it anew. The caller holds the
// mirror's lock.
func (m *Mirrors) repair(u, why string) error {
	p := m.Path(u)
	m.logf("git mirror of %s was broken (%s); discarding it and fetching again", CleanURL(u), why)
	if err := discard(p); err != nil {
		return &Error{Op: "repairing mirror of", URL: CleanURL(u), Err: err}
	}
	return nil
}

func (m *Mirrors) logf(format string, args ...any) {
	if m.Log != nil {
		m.Log(fmt.Sprintf(format, args...))
	}
}

// noSpace marks err as ErrNoSpace when it is a full disk, naming the mirror cache dir.
func noSpace(err error, dir string) error {
	if err != nil && errors.Is(err, syscall.ENOSPC) && !errors.Is(err, ErrNoSpace) {
		return fmt.Errorf("%w in the git mirror cache %s (free space there, then build again): %v", ErrNoSpace, dir, err)
	}
	return err
}
