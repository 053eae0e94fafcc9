package python

import (
	"archive/zip"
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/csv"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/internal/filehash"
)

// Limits on one wheel: a torch wheel holds about 20,000 files and 10 GB unpacked.
const (
	maxWheelFiles    = 500_000
	maxWheelUnpacked = 64 << 30
	maxWheelMetaFile = 64 << 20 // RECORD, WHEEL, entry_points.txt
	maxWheelName     = 4096
)

// Installer is what INSTALLER says in every distribution the venv builder installs.
const Installer = "runpod-comfy"

// packageInfoFile is the one file of a package object that is not part of the installed
// prefix: which wheel was installed (its file name and sha256), for the lock. Wheels may not
// install a file of that name at the top of the prefix.
const packageInfoFile = "wheel.json"

// WheelError is a wheel refused or failed by the installer: the wheel's file name, the member
// concerned (if any) and why.
type WheelError struct {
	Wheel, Member, Reason string
}

func (e *WheelError) Error() string {
	if e.Member != "" {
		return fmt.Sprintf("wheel %s: %s: %s", e.Wheel, e.Member, e.Reason)
	}
	return fmt.Sprintf("wheel %s: %s", e.Wheel, e.Reason)
}

// WheelOptions say how a wheel is installed into a prefix.
type WheelOptions struct {
	// Name is the project name as locked; it names the headers folder
	// (include/site/pythonX.Y/<Name>) and must match the wheel's .dist-info folder.
	Name string
	// PyVersion is the interpreter's "X.Y"; site-packages is lib/pythonX.Y/site-packages.
	PyVersion string
}

// InstalledWheel is a wheel unpacked into a prefix, before its bytecode and RECORD.
type InstalledWheel struct {
	wheel, prefix, site string
	// DistInfo is the prefix-relative .dist-info folder.
	DistInfo string
	// Files are the prefix-relative (slash) paths of the installed files but RECORD, sorted.
	Files []string
	// Sources are the .py files in site-packages, which get bytecode.
	Sources []string
}

var pyVersionRe = regexp.MustCompile(`^[0-9]+\.[0-9]+$`)

var wheelNameRe = regexp.MustCompile(`^([^-]+)-([^-]+)(?:-([0-9][^-]*))?-([^-]+)-([^-]+)-([^-]+)\.whl$`)

// InstallWheel installs the wheel at file into prefix (created if missing) as pip installs it
// into a venv at prefix, following the binary distribution format (PEP 427): root files to
// site-packages, <dist>.data/{purelib,platlib,scripts,headers,data} to their places, scripts
// starting with #!python and console/gui scripts as /bin/sh trampolines that run the python
// beside them (relocatable), INSTALLER and REQUESTED. Every member must be listed in RECORD
// with a sha256 (or sha384/sha512) it matches; absolute names, `..`, backslashes, symlinks,
// duplicates and unknown .data schemes are refused. Call Finish after compiling bytecode to
// write RECORD.
func InstallWheel(file, prefix string, opts WheelOptions) (*InstalledWheel, error) {
	base := filepath.Base(file)
	werr := func(member, format string, args ...any) error {
		return &WheelError{Wheel: base, Member: member, Reason: fmt.Sprintf(format, args...)}
	}
	m := wheelNameRe.FindStringSubmatch(base)
	if m == nil {
		return nil, werr("", "not a wheel file name (name-version[-build]-python-abi-platform.whl)")
	}
	if opts.Name != "" && Normalize(m[1]) != Normalize(opts.Name) {
		return nil, werr("", "the file name's project %q is not the locked %q", m[1], opts.Name)
	}
	if !pyVersionRe.MatchString(opts.PyVersion) {
		return nil, werr("", "bad interpreter version %q", opts.PyVersion)
	}
	zr, err := zip.OpenReader(file)
	if err != nil {
		return nil, werr("", "not a readable zip: %v", err)
	}
	defer zr.Close()
	if len(zr.File) > maxWheelFiles {
		return nil, werr("", "%d members (at most %d)", len(zr.File), maxWheelFiles)
	}

	// Names: relative, clean, no symlinks, no duplicates; find the one .dist-info folder.
	members := map[string]*zip.File{}
	distInfos := map[string]bool{}
	var total uint64
	for _, f := range zr.File {
		name := f.Name
		if len(name) > maxWheelName || name == "" {
			return nil, werr(trunc(name), "bad member name")
		}
		if strings.ContainsAny(name, "\\\x00") {
			return nil, werr(name, "member name holds a backslash or NUL")
		}
		if strings.HasPrefix(name, "/") {
			return nil, werr(name, "absolute member name")
		}
		isDir := strings.HasSuffix(name, "/")
		clean := strings.TrimSuffix(name, "/")
		for _, part := range strings.Split(clean, "/") {
			if part == ".." || part == "." || part == "" {
				return nil, werr(name, "member name is not a clean relative path (.., . or an empty part)")
			}
		}
		mode := f.Mode()
		if raw := f.ExternalAttrs >> 16 & 0o170000; raw == 0o120000 || mode&fs.ModeSymlink != 0 {
			return nil, werr(name, "symlink member (wheels hold regular files only)")
		}
		if mode&(fs.ModeDevice|fs.ModeNamedPipe|fs.ModeSocket|fs.ModeCharDevice|fs.ModeIrregular) != 0 {
			return nil, werr(name, "special file member")
		}
		if first, _, ok := strings.Cut(clean, "/"); ok && strings.HasSuffix(first, ".dist-info") {
			distInfos[first] = true
		}
		if isDir || mode.IsDir() {
			continue
		}
		if _, dup := members[clean]; dup {
			return nil, werr(name, "duplicate member")
		}
		members[clean] = f
		total += f.UncompressedSize64
		if total > maxWheelUnpacked {
			return nil, werr("", "more than %d bytes unpacked", uint64(maxWheelUnpacked))
		}
	}
	if len(distInfos) != 1 {
		names := make([]string, 0, len(distInfos))
		for d := range distInfos {
			names = append(names, d)
		}
		sort.Strings(names)
		return nil, werr("", "want exactly one .dist-info folder, found %d %v", len(distInfos), names)
	}
	var distInfo string
	for d := range distInfos {
		distInfo = d
	}
	stem := strings.TrimSuffix(distInfo, ".dist-info")
	i := strings.LastIndex(stem, "-")
	if i <= 0 || Normalize(stem[:i]) != Normalize(m[1]) {
		return nil, werr(distInfo, "the .dist-info folder does not name the wheel's project %q", m[1])
	}
	dataDir := stem + ".data"

	wheelMeta, err := readMember(members, distInfo+"/WHEEL")
	if err != nil {
		return nil, werr(distInfo+"/WHEEL", "%v", err)
	}
	if err := checkWheelVersion(wheelMeta); err != nil {
		return nil, werr(distInfo+"/WHEEL", "%v", err)
	}
	recordData, err := readMember(members, distInfo+"/RECORD")
	if err != nil {
		return nil, werr(distInfo+"/RECORD", "%v", err)
	}
	record, err := parseRecord(recordData)
	if err != nil {
		return nil, werr(distInfo+"/RECORD", "%v", err)
	}

	site := "lib/python" + opts.PyVersion + "/site-packages"
	headers := "include/site/python" + opts.PyVersion + "/" + opts.Name
	if opts.Name == "" {
		headers = "include/site/python" + opts.PyVersion + "/" + stem[:i]
	}
	iw := &InstalledWheel{wheel: base, prefix: prefix, site: site, DistInfo: site + "/" + distInfo}
	dests := map[string]string{}
	names := make([]string, 0, len(members))
	for n := range members {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if n == distInfo+"/RECORD" || n == distInfo+"/INSTALLER" || n == distInfo+"/REQUESTED" {
			continue // written by the installer
		}
		dest, script := "", false
		if rest, ok := strings.CutPrefix(n, dataDir+"/"); ok {
			scheme, sub, ok := strings.Cut(rest, "/")
			if !ok {
				return nil, werr(n, "file directly in the .data folder")
			}
			switch scheme {
			case "purelib", "platlib":
				dest = site + "/" + sub
			case "scripts":
				dest, script = "bin/"+sub, true
			case "headers":
				dest = headers + "/" + sub
			case "data":
				dest = sub
			default:
				return nil, werr(n, "unknown .data scheme %q (want purelib, platlib, scripts, headers or data)", scheme)
			}
		} else {
			dest = site + "/" + n
		}
		if dest == packageInfoFile {
			return nil, werr(n, "installs %s at the top of the prefix, a name the installer keeps for itself", packageInfoFile)
		}
		if prev, dup := dests[dest]; dup {
			return nil, werr(n, "installs to %s, as %s does", dest, prev)
		}
		dests[dest] = n
		if err := extract(members[n], record[n], filepath.Join(prefix, filepath.FromSlash(dest)), script); err != nil {
			return nil, werr(n, "%v", err)
		}
		iw.Files = append(iw.Files, dest)
		if strings.HasPrefix(dest, site+"/") && strings.HasSuffix(dest, ".py") {
			iw.Sources = append(iw.Sources, dest)
		}
	}
	// Entry points: console and gui scripts.
	if ep, ok := members[distInfo+"/entry_points.txt"]; ok {
		data, err := readZip(ep)
		if err != nil {
			return nil, werr(ep.Name, "%v", err)
		}
		scripts, err := parseEntryPoints(data)
		if err != nil {
			return nil, werr(ep.Name, "%v", err)
		}
		for _, s := range scripts {
			dest := "bin/" + s.name
			if _, dup := dests[dest]; !dup {
				iw.Files = append(iw.Files, dest)
			}
			dests[dest] = "entry point " + s.name
			if err := writeNew(filepath.Join(prefix, "bin", s.name), []byte(trampoline+s.body()), 0o755, true); err != nil {
				return nil, werr(ep.Name, "writing script %s: %v", s.name, err)
			}
		}
	}
	for _, extra := range []struct{ name, body string }{{"INSTALLER", Installer + "\n"}, {"REQUESTED", ""}} {
		dest := iw.DistInfo + "/" + extra.name
		if err := writeNew(filepath.Join(prefix, filepath.FromSlash(dest)), []byte(extra.body), 0o644, false); err != nil {
			return nil, werr("", "writing %s: %v", extra.name, err)
		}
		iw.Files = append(iw.Files, dest)
	}
	sort.Strings(iw.Files)
	return iw, nil
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func readMember(members map[string]*zip.File, name string) ([]byte, error) {
	f, ok := members[name]
	if !ok {
		return nil, errors.New("missing")
	}
	return readZip(f)
}

func readZip(f *zip.File) ([]byte, error) {
	if f.UncompressedSize64 > maxWheelMetaFile {
		return nil, fmt.Errorf("larger than %d bytes", maxWheelMetaFile)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxWheelMetaFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxWheelMetaFile {
		return nil, fmt.Errorf("larger than %d bytes", maxWheelMetaFile)
	}
	return data, nil
}

func checkWheelVersion(data []byte) error {
	for _, l := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || strings.TrimSpace(k) != "Wheel-Version" {
			continue
		}
		major, _, _ := strings.Cut(strings.TrimSpace(v), ".")
		if major != "1" {
			return fmt.Errorf("Wheel-Version %s is not supported (want 1.x)", strings.TrimSpace(v))
		}
		return nil
	}
	return errors.New("no Wheel-Version")
}

// recordHash is one RECORD entry's hash.
type recordHash struct {
	algo, digest string
	size         int64 // -1 when not given
}

// parseRecord reads a wheel's RECORD (CSV: path, algo=urlsafe-b64-digest, size).
func parseRecord(data []byte) (map[string]recordHash, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	out := map[string]recordHash{}
	for line := 1; ; line++ {
		row, err := r.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(row) == 0 || row[0] == "" {
			continue
		}
		if len(row) != 3 {
			return nil, fmt.Errorf("line %d: %d fields, want 3", line, len(row))
		}
		h := recordHash{size: -1}
		if row[1] != "" {
			algo, digest, ok := strings.Cut(row[1], "=")
			if !ok {
				return nil, fmt.Errorf("line %d: hash %q is not algo=digest", line, row[1])
			}
			h.algo, h.digest = algo, digest
		}
		if row[2] != "" {
			n, err := strconv.ParseInt(row[2], 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("line %d: bad size %q", line, row[2])
			}
			h.size = n
		}
		out[row[0]] = h
	}
}

func newRecordHash(algo string) hash.Hash {
	switch algo {
	case "sha256":
		return sha256.New()
	case "sha384":
		return sha512.New384()
	case "sha512":
		return sha512.New()
	}
	return nil
}

// extract writes one member to dest, checking it against its RECORD entry. A script starting
// with #!python gets the trampoline instead of its first line.
func extract(f *zip.File, rec recordHash, dest string, script bool) error {
	if rec.algo == "" {
		return errors.New("not listed in RECORD with a hash")
	}
	h := newRecordHash(rec.algo)
	if h == nil {
		return fmt.Errorf("RECORD hash algorithm %q is not accepted (sha256, sha384, sha512)", rec.algo)
	}
	rc, err := f.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	mode := fs.FileMode(0o644)
	if raw := f.ExternalAttrs >> 16; raw&0o170000 == 0o100000 && raw&0o111 != 0 { // as pip: S_ISREG and an x bit
		mode = 0o755
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dest, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	cr := &countReader{r: io.TeeReader(io.LimitReader(rc, int64(f.UncompressedSize64)+1), h)}
	var src io.Reader = cr
	if script {
		br := bufio.NewReader(cr)
		head, _ := br.Peek(8)
		if string(head) == "#!python" {
			if _, err := br.ReadString('\n'); err != nil && err != io.EOF {
				out.Close()
				return err
			}
			if _, err := io.WriteString(out, trampoline); err != nil {
				out.Close()
				return err
			}
		}
		src = br
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if cr.n != int64(f.UncompressedSize64) {
		return fmt.Errorf("the zip says %d bytes, it holds %d", f.UncompressedSize64, cr.n)
	}
	if got := base64.RawURLEncoding.EncodeToString(h.Sum(nil)); got != strings.TrimRight(rec.digest, "=") {
		return fmt.Errorf("%s is %s but RECORD says %s", rec.algo, got, rec.digest)
	}
	if rec.size >= 0 && rec.size != cr.n {
		return fmt.Errorf("%d bytes but RECORD says %d", cr.n, rec.size)
	}
	return nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func writeNew(p string, data []byte, mode fs.FileMode, replace bool) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if replace {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// entryScript is one console or gui script of entry_points.txt.
type entryScript struct{ name, module, attr string }

var (
	scriptNameRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.+-]*$`)
	dottedRe     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)
)

// body is the script pip writes for the entry point, after its first line.
func (s entryScript) body() string {
	imp, _, _ := strings.Cut(s.attr, ".")
	return "# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom " + s.module + " import " + imp +
		"\nif __name__ == '__main__':\n    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n    sys.exit(" + s.attr + "())\n"
}

// parseEntryPoints returns the [console_scripts] and [gui_scripts] of an entry_points.txt,
// sorted by name; a script name with a path in it, or a target that is not module:attr, is an
// error.
func parseEntryPoints(data []byte) ([]entryScript, error) {
	byName := map[string]entryScript{}
	section := ""
	for i, raw := range strings.Split(string(data), "\n") {
		l := strings.TrimSpace(raw)
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";") {
			continue
		}
		if strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]") {
			section = strings.TrimSpace(l[1 : len(l)-1])
			continue
		}
		if section != "console_scripts" && section != "gui_scripts" {
			continue
		}
		name, target, ok := strings.Cut(l, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: %q is not name = module:attr", i+1, l)
		}
		name, target = strings.TrimSpace(name), strings.TrimSpace(target)
		if j := strings.Index(target, "["); j >= 0 { // extras
			target = strings.TrimSpace(target[:j])
		}
		mod, attr, ok := strings.Cut(target, ":")
		mod, attr = strings.TrimSpace(mod), strings.TrimSpace(attr)
		if !scriptNameRe.MatchString(name) || name == "." || name == ".." {
			return nil, fmt.Errorf("line %d: script name %q is not a plain file name", i+1, name)
		}
		if !ok || !dottedRe.MatchString(mod) || !dottedRe.MatchString(attr) {
			return nil, fmt.Errorf("line %d: script %s: target %q is not module:attr", i+1, name, target)
		}
		byName[name] = entryScript{name: name, module: mod, attr: attr}
	}
	out := make([]entryScript, 0, len(byName))
	for _, s := range byName {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// Finish writes the installed wheel's RECORD as pip does: every installed file relative to
// site-packages with its sha256 and size, the bytecode files (prefix-relative, as compiled)
// without, RECORD itself without; rows sorted, CSV with CRLF line ends.
func (iw *InstalledWheel) Finish(pycs []string) error {
	type row struct{ path, hash, size string }
	var rows []row
	rel := func(p string) string {
		r, err := filepath.Rel(filepath.FromSlash(iw.site), filepath.FromSlash(p))
		if err != nil {
			return p
		}
		return filepath.ToSlash(r)
	}
	for _, f := range iw.Files {
		// Streamed: a package's largest file (a torch library) can be gigabytes.
		p := filepath.Join(iw.prefix, filepath.FromSlash(f))
		sum, err := filehash.SHA256(p)
		if err != nil {
			return fmt.Errorf("wheel %s: writing RECORD: %w", iw.wheel, err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("wheel %s: writing RECORD: %w", iw.wheel, err)
		}
		rows = append(rows, row{rel(f), "sha256=" + base64.RawURLEncoding.EncodeToString(sum[:]), strconv.FormatInt(fi.Size(), 10)})
	}
	for _, p := range pycs {
		rows = append(rows, row{rel(p), "", ""})
	}
	rows = append(rows, row{rel(iw.DistInfo + "/RECORD"), "", ""})
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].path != rows[j].path {
			return rows[i].path < rows[j].path
		}
		return rows[i].hash < rows[j].hash
	})
	var b strings.Builder
	for _, r := range rows {
		b.WriteString(csvField(r.path) + "," + r.hash + "," + r.size + "\r\n")
	}
	return writeNew(filepath.Join(iw.prefix, filepath.FromSlash(iw.DistInfo), "RECORD"), []byte(b.String()), 0o644, true)
}

// csvField quotes a field as Python's csv module does by default (QUOTE_MINIMAL).
func csvField(s string) string {
	if !strings.ContainsAny(s, ",\"\r\n") {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// pyVersionOf returns "X.Y" of a version such as "3.11.7".
func pyVersionOf(v string) string {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}
