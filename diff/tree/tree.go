// Package tree compares two file trees, such as a store object and its rebuild: which files
// differ, how (content, type, presence), and for a text file its first differing lines.
// `runpod-comfy check` reports with it (docs/check-and-diff.md); it knows nothing of the store.
package tree

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/runpod-comfy/runpod-comfy/internal/filehash"
)

// FileDiff is one file that differs between the stored object (a in Compare) and its rebuild (b).
type FileDiff struct {
	Path string `json:"path"`
	// Change is "content", "type" (file, symlink, directory or executable bit),
	// "only-in-store" or "only-in-rebuild".
	Change        string `json:"change"`
	StoreSize     int64  `json:"store_size"`
	RebuiltSize   int64  `json:"rebuilt_size"`
	StoreSHA256   string `json:"store_sha256,omitempty"`
	RebuiltSHA256 string `json:"rebuilt_sha256,omitempty"`
	// Lines are the first differing lines of a text file.
	Lines []LineDiff `json:"lines,omitempty"`
}

// LineDiff is a differing line of a text file (1-based).
type LineDiff struct {
	Line    int    `json:"line"`
	Store   string `json:"store"`
	Rebuilt string `json:"rebuilt"`
}

// maxLineDiffs is how many differing lines of one text file a report shows.
const maxLineDiffs = 5

// entry is one file of a tree, for Compare.
type entry struct {
	kind   string // "file", "exec", "symlink", "dir"
	size   int64
	target string
}

func listTree(root string) (map[string]entry, error) {
	out := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			rel = ""
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = entry{kind: "symlink", target: t}
		case d.IsDir():
			out[rel] = entry{kind: "dir"}
		case info.Mode()&0o100 != 0:
			out[rel] = entry{kind: "exec", size: info.Size()}
		default:
			out[rel] = entry{kind: "file", size: info.Size()}
		}
		return nil
	})
	return out, err
}

// Compare names the files that differ between two trees (or two single files): a is the
// stored object, b its rebuild. Directories are compared by what they hold; files by type
// (file, executable, symlink, directory), then by SHA-256, with the first differing lines of
// a text file; symlinks by target. The result is sorted by path.
func Compare(a, b string) ([]FileDiff, error) {
	ta, err := listTree(a)
	if err != nil {
		return nil, err
	}
	tb, err := listTree(b)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for n := range ta {
		names[n] = true
	}
	for n := range tb {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	var diffs []FileDiff
	for _, n := range sorted {
		ea, inA := ta[n]
		eb, inB := tb[n]
		fd := FileDiff{Path: n, StoreSize: ea.size, RebuiltSize: eb.size}
		switch {
		case !inA:
			fd.Change = "only-in-rebuild"
		case !inB:
			fd.Change = "only-in-store"
		case ea.kind != eb.kind:
			fd.Change = "type"
		case ea.kind == "symlink":
			if ea.target == eb.target {
				continue
			}
			fd.Change = "content"
			fd.Lines = []LineDiff{{Line: 1, Store: ea.target, Rebuilt: eb.target}}
		case ea.kind == "dir":
			continue
		default:
			pa, pb := filepath.Join(a, n), filepath.Join(b, n)
			ha, err := filehash.SHA256Hex(pa)
			if err != nil {
				return nil, err
			}
			hb, err := filehash.SHA256Hex(pb)
			if err != nil {
				return nil, err
			}
			if ha == hb {
				continue
			}
			fd.Change, fd.StoreSHA256, fd.RebuiltSHA256 = "content", ha, hb
			if fd.Lines, err = lineDiff(pa, pb); err != nil {
				return nil, err
			}
		}
		diffs = append(diffs, fd)
	}
	return diffs, nil
}

// maxTextSize bounds the files lineDiff reads.
const maxTextSize = 4 << 20

// lineDiff returns the first differing lines of two text files, or nothing when either is
// binary (a NUL byte) or large.
func lineDiff(a, b string) ([]LineDiff, error) {
	da, err := readText(a)
	if err != nil || da == nil {
		return nil, err
	}
	db, err := readText(b)
	if err != nil || db == nil {
		return nil, err
	}
	la, lb := splitLines(da), splitLines(db)
	var out []LineDiff
	for i := 0; i < max(len(la), len(lb)) && len(out) < maxLineDiffs; i++ {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y || (i >= len(la)) != (i >= len(lb)) {
			out = append(out, LineDiff{Line: i + 1, Store: x, Rebuilt: y})
		}
	}
	return out, nil
}

func readText(p string) ([]byte, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxTextSize {
		return nil, nil
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, nil
	}
	return data, nil
}

func splitLines(data []byte) []string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), maxTextSize)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}
