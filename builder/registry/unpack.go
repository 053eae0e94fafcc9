package registry

import (
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"
)

// Limits bound what one archive may unpack to.
type Limits struct {
	// MaxFiles is the most entries (files, directories, links); 0 = DefaultMaxFiles.
	MaxFiles int
	// MaxBytes is the most bytes all files together unpack to; 0 = DefaultMaxBytes.
	MaxBytes int64
}

// Defaults of Limits: generous for source code, small against a zip bomb.
const (
	DefaultMaxFiles = 50_000
	DefaultMaxBytes = 2 << 30
)

// maxLinkTarget bounds a symlink entry's target.
const maxLinkTarget = 4096

// UnpackError is an archive refused while unpacking; Entry names the offending entry.
type UnpackError struct {
	Entry  string
	Reason string
}

func (e *UnpackError) Error() string {
	if e.Entry == "" {
		return "archive refused: " + e.Reason
	}
	return fmt.Sprintf("archive refused: entry %q %s", e.Entry, e.Reason)
}

// entryPath is the clean slash-separated path of a zip entry name relative to the node's top
// ("" for the top itself) and whether the name names a directory. Names that could leave the
// tree or mean different things on different systems are errors.
func entryPath(name string) (string, bool, error) {
	switch {
	case name == "":
		return "", false, errors.New("has an empty name")
	case !utf8.ValidString(name):
		return "", false, errors.New("has a name that is not UTF-8")
	case strings.ContainsRune(name, '\\'):
		return "", false, errors.New("holds a backslash (a Windows path separator): it is refused rather than guessed")
	case strings.HasPrefix(name, "/"), len(name) >= 2 && name[1] == ':':
		return "", false, errors.New("is an absolute path")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return "", false, fmt.Errorf("holds the control character %U", r)
		}
	}
	dir := strings.HasSuffix(name, "/")
	var parts []string
	for _, el := range strings.Split(name, "/") {
		switch el {
		case "", ".":
		case "..":
			return "", false, errors.New("climbs out of the node's directory (..)")
		default:
			parts = append(parts, el)
		}
	}
	return strings.Join(parts, "/"), dir, nil
}

type entry struct {
	f    *zip.File
	key  string
	kind byte // 'd', 'f', 'l'
}

// Unpack unpacks the zip archive into out (which must not exist) under lim. Entries land at
// their names relative to out (ComfyUI-Manager extracts a registry archive into the node's
// directory the same way). Files get mode 0644, or 0755 when the archive marks them
// executable; times are not carried. Nothing is written before every entry has been checked.
func Unpack(archive, out string, lim Limits) error {
	if lim.MaxFiles <= 0 {
		lim.MaxFiles = DefaultMaxFiles
	}
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = DefaultMaxBytes
	}
	r, err := zip.OpenReader(archive)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return fmt.Errorf("reading archive: %w", err)
	}
	defer r.Close()
	if len(r.File) > lim.MaxFiles {
		return &UnpackError{Reason: fmt.Sprintf("holds %d entries, more than the %d allowed", len(r.File), lim.MaxFiles)}
	}
	kinds := map[string]byte{}
	var entries []entry
	var declared uint64
	for _, f := range r.File {
		key, isDir, err := entryPath(f.Name)
		if err != nil {
			return &UnpackError{Entry: f.Name, Reason: err.Error()}
		}
		mode := f.Mode()
		var kind byte
		switch {
		case isDir || mode.IsDir():
			kind = 'd'
		case mode&os.ModeSymlink != 0:
			kind = 'l'
		case mode.IsRegular():
			kind = 'f'
		default:
			return &UnpackError{Entry: f.Name, Reason: fmt.Sprintf("is a %v, neither a file, a directory nor a symlink", mode.Type())}
		}
		if key == "" {
			if kind == 'd' {
				continue // the top itself
			}
			return &UnpackError{Entry: f.Name, Reason: "names the node's directory itself"}
		}
		if prev, dup := kinds[key]; dup {
			if prev == 'd' && kind == 'd' {
				continue // a directory listed twice is harmless
			}
			return &UnpackError{Entry: f.Name, Reason: "appears twice in the archive (which one would win depends on the tool)"}
		}
		kinds[key] = kind
		if kind == 'f' {
			declared += f.UncompressedSize64
			if declared > uint64(lim.MaxBytes) {
				return &UnpackError{Reason: fmt.Sprintf("unpacks to more than %d bytes (a zip bomb?)", lim.MaxBytes)}
			}
		}
		entries = append(entries, entry{f: f, key: key, kind: kind})
	}
	// Nothing may sit under a file or a link: writing "a/b" through a link "a" would write
	// wherever the link points.
	for _, e := range entries {
		for p := path.Dir(e.key); p != "."; p = path.Dir(p) {
			if k, ok := kinds[p]; ok && k != 'd' {
				what := "file"
				if k == 'l' {
					what = "symlink"
				}
				return &UnpackError{Entry: e.f.Name, Reason: fmt.Sprintf("lies under %s, which is a %s", p, what)}
			}
		}
	}
	links := map[string]string{}
	for _, e := range entries {
		if e.kind != 'l' {
			continue
		}
		target, err := readLink(e.f)
		if err != nil {
			return &UnpackError{Entry: e.f.Name, Reason: err.Error()}
		}
		if strings.HasPrefix(target, "/") || strings.ContainsRune(target, '\\') || len(target) >= 2 && target[1] == ':' {
			return &UnpackError{Entry: e.f.Name, Reason: fmt.Sprintf("is a symlink to the absolute path %q", target)}
		}
		if j := path.Join(path.Dir(e.key), target); j == ".." || strings.HasPrefix(j, "../") {
			return &UnpackError{Entry: e.f.Name, Reason: fmt.Sprintf("is a symlink to %q, out of the node's directory", target)}
		}
		links[e.key] = target
	}
	// Links to links could still climb out step by step; follow every chain inside the tree.
	for key := range links {
		if err := checkChain(key, links); err != nil {
			return &UnpackError{Entry: key, Reason: err.Error()}
		}
	}

	if err := os.Mkdir(out, 0o755); err != nil {
		return err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].key < entries[j].key })
	var written int64
	for _, e := range entries {
		dst := filepath.Join(out, filepath.FromSlash(e.key))
		switch e.kind {
		case 'd':
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case 'f':
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			perm := os.FileMode(0o644)
			if e.f.Mode()&0o111 != 0 {
				perm = 0o755
			}
			n, err := writeEntry(e.f, dst, perm, lim.MaxBytes-written)
			written += n
			if err != nil {
				return err
			}
		}
	}
	for _, e := range entries {
		if e.kind != 'l' {
			continue
		}
		dst := filepath.Join(out, filepath.FromSlash(e.key))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(links[e.key], dst); err != nil {
			return err
		}
	}
	return nil
}

// checkChain resolves the symlink at key through the archive's other links, component by
// component as the kernel would (not by cleaning the path first: "a/up/.." with a/up -> ".."
// is two levels up), and fails when a step leaves the tree or the chain does not end.
func checkChain(key string, links map[string]string) error {
	dir := strings.Split(path.Dir(key), "/")
	if path.Dir(key) == "." {
		dir = nil
	}
	_, err := resolveIn(dir, links[key], links, 0)
	return err
}

func resolveIn(cur []string, target string, links map[string]string, depth int) ([]string, error) {
	if depth > 40 {
		return nil, errors.New("is a chain of more than 40 symlinks")
	}
	cur = append([]string(nil), cur...)
	for _, el := range strings.Split(target, "/") {
		switch el {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return nil, errors.New("is a symlink (or chain of symlinks) leading out of the node's directory")
			}
			cur = cur[:len(cur)-1]
		default:
			cur = append(cur, el)
			if t, ok := links[strings.Join(cur, "/")]; ok {
				var err error
				if cur, err = resolveIn(cur[:len(cur)-1], t, links, depth+1); err != nil {
					return nil, err
				}
			}
		}
	}
	return cur, nil
}

func readLink(f *zip.File) (string, error) {
	rc, err := f.Open()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxLinkTarget+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxLinkTarget || len(b) == 0 {
		return "", fmt.Errorf("is a symlink with a target of %d bytes", len(b))
	}
	t := string(b)
	if !utf8.ValidString(t) || strings.ContainsAny(t, "\x00\n\r") {
		return "", errors.New("is a symlink whose target is not a clean path")
	}
	return t, nil
}

// writeEntry writes f's content to dst, at most budget bytes (what is left of MaxBytes):
// the sizes in a zip's headers are not trusted.
func writeEntry(f *zip.File, dst string, perm os.FileMode, budget int64) (int64, error) {
	rc, err := f.Open()
	if err != nil {
		return 0, &UnpackError{Entry: f.Name, Reason: err.Error()}
	}
	defer rc.Close()
	w, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(w, io.LimitReader(rc, budget+1))
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if n > budget {
		return n, &UnpackError{Reason: "unpacks to more bytes than its headers say and the limit allows (a zip bomb?)"}
	}
	if err != nil {
		return n, &UnpackError{Entry: f.Name, Reason: err.Error()}
	}
	return n, nil
}
