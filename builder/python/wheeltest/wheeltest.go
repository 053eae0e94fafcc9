// Package wheeltest makes Python wheels and serves them through a PEP 503 simple index, so
// that tests and benchmarks exercise pip for real without reaching a package index.
//
// A Wheel is described by its name, version, dependencies and console scripts; Write turns it
// into a real .whl file (a zip holding the module, <name>-<version>.dist-info/METADATA, WHEEL,
// RECORD and, with scripts, entry_points.txt). An Index is an httptest server answering
// /simple/<project>/ with links carrying #sha256= fragments, and /files/<filename> with the bytes.
package wheeltest

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"html"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Wheel describes one pure-Python wheel to make.
type Wheel struct {
	Name    string
	Version string
	// Requires are Requires-Dist lines, e.g. "numpy<2".
	Requires []string
	// Scripts maps console_scripts names to "module:function"; Write adds the function
	// to the module so that the script runs.
	Scripts map[string]string
	// Extra is added to the module's __init__.py.
	Extra string
	// Files are more members by their name in the wheel (e.g. "demo-1.0.data/scripts/tool"
	// or "demo/data.bin"), listed in RECORD like the others.
	Files map[string]string
	// Exec lists members whose zip mode is a regular file with execute bits (0100755).
	Exec []string
	// Entry is more entry_points.txt text (e.g. a [gui_scripts] section).
	Entry string
}

// Module is the importable module name of the wheel: the name with dashes and dots as
// underscores.
func (w Wheel) Module() string {
	return strings.NewReplacer("-", "_", ".", "_").Replace(strings.ToLower(w.Name))
}

// Filename is the wheel's file name, <name>-<version>-py3-none-any.whl.
func (w Wheel) Filename() string {
	return fmt.Sprintf("%s-%s-py3-none-any.whl", w.distName(), w.Version)
}

func (w Wheel) distName() string {
	return regexp.MustCompile(`[-_.]+`).ReplaceAllString(w.Name, "_")
}

// Bytes returns the wheel's zip bytes. The same Wheel always gives the same bytes.
func (w Wheel) Bytes() ([]byte, error) {
	mod := w.Module()
	dist := fmt.Sprintf("%s-%s.dist-info", w.distName(), w.Version)
	type file struct{ name, body string }
	init := fmt.Sprintf("VERSION = %q\n", w.Version)
	var scriptNames []string
	for k := range w.Scripts {
		scriptNames = append(scriptNames, k)
	}
	sort.Strings(scriptNames)
	for _, k := range scriptNames {
		target := w.Scripts[k]
		if _, fn, ok := strings.Cut(target, ":"); ok {
			init += fmt.Sprintf("\n\ndef %s():\n    print(%q + ' ' + VERSION)\n    return 0\n", fn, k)
		}
	}
	init += w.Extra
	files := []file{{mod + "/__init__.py", init}}
	var extraNames []string
	for n := range w.Files {
		extraNames = append(extraNames, n)
	}
	sort.Strings(extraNames)
	for _, n := range extraNames {
		files = append(files, file{n, w.Files[n]})
	}
	meta := fmt.Sprintf("Metadata-Version: 2.1\nName: %s\nVersion: %s\n", w.Name, w.Version)
	for _, r := range w.Requires {
		meta += "Requires-Dist: " + r + "\n"
	}
	files = append(files,
		file{dist + "/METADATA", meta},
		file{dist + "/WHEEL", "Wheel-Version: 1.0\nGenerator: wheeltest\nRoot-Is-Purelib: true\nTag: py3-none-any\n"})
	if len(scriptNames) > 0 || w.Entry != "" {
		ep := ""
		if len(scriptNames) > 0 {
			ep = "[console_scripts]\n"
		}
		for _, k := range scriptNames {
			ep += k + " = " + w.Scripts[k] + "\n"
		}
		files = append(files, file{dist + "/entry_points.txt", ep + w.Entry})
	}
	var record strings.Builder
	for _, f := range files {
		sum := sha256.Sum256([]byte(f.body))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", f.name, base64.RawURLEncoding.EncodeToString(sum[:]), len(f.body))
	}
	record.WriteString(dist + "/RECORD,,\n")
	files = append(files, file{dist + "/RECORD", record.String()})

	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		hdr := &zip.FileHeader{Name: f.name, Method: zip.Deflate, Modified: time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)}
		for _, x := range w.Exec {
			if x == f.name {
				hdr.CreatorVersion = 3 << 8 // unix
				hdr.ExternalAttrs = 0o100755 << 16
			}
		}
		fw, err := zw.CreateHeader(hdr)
		if err != nil {
			return nil, fmt.Errorf("making wheel %s: %w", w.Filename(), err)
		}
		if _, err := fw.Write([]byte(f.body)); err != nil {
			return nil, fmt.Errorf("making wheel %s: %w", w.Filename(), err)
		}
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("making wheel %s: %w", w.Filename(), err)
	}
	return buf.Bytes(), nil
}

// Write writes the wheel into dir and returns its path and sha256 (hex).
func (w Wheel) Write(dir string) (path, sha string, err error) {
	b, err := w.Bytes()
	if err != nil {
		return "", "", err
	}
	path = filepath.Join(dir, w.Filename())
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "", "", fmt.Errorf("writing wheel: %w", err)
	}
	sum := sha256.Sum256(b)
	return path, hex.EncodeToString(sum[:]), nil
}

// WriteAll writes every wheel into dir (created if needed).
func WriteAll(dir string, wheels ...Wheel) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("making find-links folder: %w", err)
	}
	for _, w := range wheels {
		if _, _, err := w.Write(dir); err != nil {
			return err
		}
	}
	return nil
}

// Index is a PEP 503 simple index on an httptest server, serving the wheels of a folder.
type Index struct {
	*httptest.Server
	dir string

	mu       sync.Mutex
	requests []string
}

// NewIndex serves the .whl files of dir: /simple/ lists projects, /simple/<project>/ lists
// files with #sha256= fragments, /files/<filename> serves them. Close it when done.
func NewIndex(dir string) *Index {
	ix := &Index{dir: dir}
	ix.Server = httptest.NewServer(http.HandlerFunc(ix.serve))
	return ix
}

// URL of the simple index, for pip's --index-url.
func (ix *Index) SimpleURL() string { return ix.Server.URL + "/simple/" }

// Requests returns the paths requested so far.
func (ix *Index) Requests() []string {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return append([]string(nil), ix.requests...)
}

// Normalize is the PEP 503 normalised form of a project name.
func Normalize(name string) string {
	return strings.ToLower(regexp.MustCompile(`[-_.]+`).ReplaceAllString(name, "-"))
}

func (ix *Index) serve(w http.ResponseWriter, r *http.Request) {
	ix.mu.Lock()
	ix.requests = append(ix.requests, r.URL.Path)
	ix.mu.Unlock()
	entries, err := os.ReadDir(ix.dir)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	projects := map[string][]string{}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".whl") {
			continue
		}
		dist, _, _ := strings.Cut(name, "-")
		projects[Normalize(dist)] = append(projects[Normalize(dist)], name)
	}
	switch {
	case r.URL.Path == "/simple/":
		var names []string
		for p := range projects {
			names = append(names, p)
		}
		sort.Strings(names)
		fmt.Fprint(w, "<!DOCTYPE html><html><body>\n")
		for _, p := range names {
			fmt.Fprintf(w, "<a href=\"/simple/%s/\">%s</a>\n", p, p)
		}
		fmt.Fprint(w, "</body></html>\n")
	case strings.HasPrefix(r.URL.Path, "/simple/"):
		p := strings.Trim(strings.TrimPrefix(r.URL.Path, "/simple/"), "/")
		files, ok := projects[Normalize(p)]
		if !ok {
			http.NotFound(w, r)
			return
		}
		sort.Strings(files)
		fmt.Fprint(w, "<!DOCTYPE html><html><body>\n")
		for _, f := range files {
			b, err := os.ReadFile(filepath.Join(ix.dir, f))
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			sum := sha256.Sum256(b)
			fmt.Fprintf(w, "<a href=\"/files/%s#sha256=%s\">%s</a>\n", html.EscapeString(f), hex.EncodeToString(sum[:]), html.EscapeString(f))
		}
		fmt.Fprint(w, "</body></html>\n")
	case strings.HasPrefix(r.URL.Path, "/files/"):
		f := filepath.Base(r.URL.Path)
		http.ServeFile(w, r, filepath.Join(ix.dir, f))
	default:
		http.NotFound(w, r)
	}
}

// TorchLike returns a wheel shaped like torch: files members in folders of about 40 under
// the module, nearly all bytes in a few shared-library-like binaries (half random, half
// zeros, so they compress about as well as real ones) and the rest small Python modules;
// about size bytes unpacked. The same arguments give the same wheel.
func TorchLike(name, version string, files int, size int64) Wheel {
	w := Wheel{Name: name, Version: version, Files: map[string]string{}}
	mod := w.Module()
	libs := files / 50
	if libs < 1 {
		libs = 1
	}
	seed := uint64(len(name))*7919 + uint64(len(version))
	next := func() uint64 { // xorshift: deterministic, fast
		seed ^= seed << 13
		seed ^= seed >> 7
		seed ^= seed << 17
		return seed
	}
	per := size / int64(libs)
	for i := 0; i < libs; i++ {
		b := make([]byte, per)
		for j := 0; j < len(b)/2; j += 8 {
			v := next()
			for k := 0; k < 8 && j+k < len(b)/2; k++ {
				b[j+k] = byte(v >> (8 * k))
			}
		}
		w.Files[fmt.Sprintf("%s/lib/lib%s_%03d.so", mod, mod, i)] = string(b)
	}
	for i := 0; len(w.Files) < files-1; i++ {
		var body strings.Builder
		fmt.Fprintf(&body, "\"\"\"Module %d of %s.\"\"\"\n", i, name)
		for f := 0; f < 8; f++ {
			fmt.Fprintf(&body, "\ndef f%d(x, y=%d):\n    s = {%d, %d}\n    return [x + y + i for i in range(%d) if i in s]\n", f, i, i, f, f+2)
		}
		dir := fmt.Sprintf("%s/sub%03d", mod, i/40)
		if i%40 == 0 {
			w.Files[dir+"/__init__.py"] = ""
		}
		w.Files[fmt.Sprintf("%s/m%04d.py", dir, i)] = body.String()
	}
	return w
}

// DiskUsage is what dirs take on disk, each hard-linked file counted once (du's rule), so
// that tests and benchmarks can measure what a venv of links really costs.
func DiskUsage(dirs ...string) (int64, error) {
	seen := map[[2]uint64]bool{}
	var n int64
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok {
				return fmt.Errorf("%s: no stat", p)
			}
			if k := [2]uint64{uint64(st.Dev), st.Ino}; !seen[k] {
				seen[k] = true
				n += st.Blocks * 512
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return n, nil
}
