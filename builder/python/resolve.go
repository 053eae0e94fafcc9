package python

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/internal/filehash"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

// ResolveOptions are the inputs of one resolution.
type ResolveOptions struct {
	Interpreter  *Interpreter
	Requirements *Requirements
	// IndexURL, ExtraIndexURLs and FindLinks are the spec's python fields. FindLinks entries
	// are URLs or absolute folder paths.
	IndexURL       string
	ExtraIndexURLs []string
	FindLinks      []string
	// SystemSitePackages resolves against the interpreter's own site-packages: what is installed
	// there is kept (each becomes a constraint name===version) and is not locked.
	SystemSitePackages bool
	// Offline resolves from the local FindLinks folders only.
	Offline bool
	// CacheDir is the wheel cache (ROOT/cache/runpod-comfy/pip); pip's HTTP cache goes in
	// CacheDir/http. Empty disables pip's cache.
	CacheDir string
	// Env is added to the minimal environment pip runs with (e.g. HTTPS_PROXY,
	// SSL_CERT_FILE). Nothing else of the caller's environment reaches pip.
	Env []string
}

// Resolve resolves the requirements together with pip (install --dry-run --ignore-installed
// --report) and returns the lock's python section: every package pinned to one file with its
// sha256 and the requirement lines that asked for it. A resolution that fails is a
// *ResolutionError saying which node (file and line) asked for what.
func Resolve(ctx context.Context, opts ResolveOptions) (*specs.PythonLock, error) {
	in := opts.Interpreter
	if in == nil {
		return nil, errors.New("resolving Python requirements: no interpreter")
	}
	lock := &specs.PythonLock{Interpreter: in.PythonIdentity, Installer: in.Pip, Packages: []specs.PackageLock{}}
	if opts.SystemSitePackages {
		lock.SystemSitePackages = append([]specs.Distribution{}, in.SitePackages...)
	}
	reqs := opts.Requirements
	if reqs == nil {
		reqs = &Requirements{}
	}
	if len(reqs.Requires) == 0 {
		return lock, nil
	}
	if err := checkPip(in); err != nil {
		return nil, fmt.Errorf("resolving Python requirements: %w", err)
	}

	tmp, err := os.MkdirTemp("", "runpod-comfy-resolve-")
	if err != nil {
		return nil, fmt.Errorf("resolving Python requirements: %w", err)
	}
	defer os.RemoveAll(tmp)

	var reqFile, consFile bytes.Buffer
	for _, r := range reqs.Requires {
		reqFile.WriteString(r.Text + "\n")
	}
	constraints := append([]Requirement{}, reqs.Constraints...)
	if opts.SystemSitePackages {
		for _, d := range in.SitePackages {
			constraints = append(constraints, Requirement{Text: d.Name + "===" + d.Version, Name: d.Name, Origin: Origin{File: fileSitePackages}})
		}
	}
	for _, c := range constraints {
		consFile.WriteString(c.Text + "\n")
	}
	reqPath, consPath := filepath.Join(tmp, "requirements.txt"), filepath.Join(tmp, "constraints.txt")
	if err := os.WriteFile(reqPath, reqFile.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("resolving Python requirements: %w", err)
	}
	if err := os.WriteFile(consPath, consFile.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("resolving Python requirements: %w", err)
	}
	report := filepath.Join(tmp, "report.json")
	args := []string{"-s", "-m", "pip", "install", "--dry-run", "--report", report,
		"--no-input", "--progress-bar", "off", "--disable-pip-version-check",
		"-r", reqPath, "-c", consPath}
	if !opts.SystemSitePackages {
		args = append(args, "--ignore-installed")
	}
	if opts.CacheDir != "" {
		args = append(args, "--cache-dir", filepath.Join(opts.CacheDir, "http"))
	} else {
		args = append(args, "--no-cache-dir")
	}
	if opts.Offline {
		args = append(args, "--no-index")
	} else {
		if opts.IndexURL != "" {
			args = append(args, "--index-url", opts.IndexURL)
		}
		for _, u := range append(append([]string{}, opts.ExtraIndexURLs...), reqs.ExtraIndexURLs...) {
			args = append(args, "--extra-index-url", u)
		}
	}
	for _, f := range append(append([]string{}, opts.FindLinks...), reqs.FindLinks...) {
		if opts.Offline && isRemote(f) {
			continue
		}
		args = append(args, "--find-links", f)
	}
	cmd := exec.CommandContext(ctx, in.Path, args...)
	cmd.Env = childEnv(tmp, opts.Env)
	cmd.Dir = tmp
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, explain(out.String(), reqs.Requires, constraints, reqPath, consPath)
	}
	data, err := os.ReadFile(report)
	if err != nil {
		return nil, fmt.Errorf("reading pip's report: %w", err)
	}
	pkgs, installer, err := readReport(data, reqs.Requires)
	if err != nil {
		return nil, err
	}
	lock.Packages = pkgs
	if installer != "" {
		lock.Installer = installer
	}
	return lock, nil
}

// checkPip fails unless the interpreter has pip 22.3 or newer (install --report, --python).
func checkPip(in *Interpreter) error {
	if in.Pip == "" {
		return fmt.Errorf("%s has no pip (pip 22.3 or newer is needed)", in.Path)
	}
	var major, minor int
	if _, err := fmt.Sscanf(in.Pip, "pip %d.%d", &major, &minor); err == nil && (major < 22 || major == 22 && minor < 3) {
		return fmt.Errorf("%s has %s: pip 22.3 or newer is needed (upgrade it in the base image)", in.Path, in.Pip)
	}
	return nil
}

func isRemote(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// childEnv is the whole environment of pip and python children: nothing of the caller's but
// what it passes in extra.
func childEnv(home string, extra []string) []string {
	env := []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"HOME=" + home,
		"LC_ALL=C.UTF-8",
		"TZ=UTC",
		"PIP_CONFIG_FILE=" + os.DevNull,
		"PIP_DISABLE_PIP_VERSION_CHECK=1",
		"PIP_NO_INPUT=1",
		"PYTHONNOUSERSITE=1",
		"PYTHONDONTWRITEBYTECODE=1",
	}
	return append(env, extra...)
}

type pipReport struct {
	PipVersion string `json:"pip_version"`
	Install    []struct {
		DownloadInfo struct {
			URL         string `json:"url"`
			ArchiveInfo *struct {
				Hash   string            `json:"hash"`
				Hashes map[string]string `json:"hashes"`
			} `json:"archive_info"`
			VCSInfo *json.RawMessage `json:"vcs_info"`
			DirInfo *json.RawMessage `json:"dir_info"`
		} `json:"download_info"`
		Metadata struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"metadata"`
	} `json:"install"`
}

func readReport(data []byte, requires []Requirement) ([]specs.PackageLock, string, error) {
	var rep pipReport
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, "", fmt.Errorf("reading pip's report: %w", err)
	}
	byName := map[string][]string{}
	for _, r := range requires {
		byName[r.Name] = appendNew(byName[r.Name], r.Origin.String())
	}
	var pkgs []specs.PackageLock
	for _, it := range rep.Install {
		name := Normalize(it.Metadata.Name)
		di := it.DownloadInfo
		who := strings.Join(byName[name], ", ")
		if who == "" {
			who = "a dependency"
		}
		if di.ArchiveInfo == nil {
			return nil, "", fmt.Errorf("%s %s (asked for by %s) comes from a directory or VCS checkout (%s): only files with a sha256 can be locked", name, it.Metadata.Version, who, redactURL(di.URL))
		}
		sha := di.ArchiveInfo.Hashes["sha256"]
		if sha == "" {
			if algo, v, ok := strings.Cut(di.ArchiveInfo.Hash, "="); ok && algo == "sha256" {
				sha = v
			}
		}
		u, err := url.Parse(di.URL)
		if err != nil {
			return nil, "", fmt.Errorf("reading pip's report: %s: bad URL: %w", name, err)
		}
		u.User, u.Fragment, u.RawFragment = nil, "", ""
		if sha == "" && u.Scheme == "file" {
			if sha, err = filehash.SHA256Hex(u.Path); err != nil {
				return nil, "", fmt.Errorf("hashing %s: %w", u.Path, err)
			}
		}
		if !sha256Re.MatchString(sha) {
			return nil, "", fmt.Errorf("%s %s (asked for by %s): the index gave no sha256 for %s", name, it.Metadata.Version, who, u.String())
		}
		pkgs = append(pkgs, specs.PackageLock{
			Name:        name,
			Version:     it.Metadata.Version,
			URL:         u.String(),
			Filename:    path.Base(u.Path),
			SHA256:      sha,
			RequestedBy: byName[name],
		})
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
	installer := ""
	if rep.PipVersion != "" {
		installer = "pip " + rep.PipVersion
	}
	return pkgs, installer, nil
}

var sha256Re = regexp.MustCompile(`^[0-9a-f]{64}$`)

// redactURL removes any user and password from a URL.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	u.User = nil
	return u.String()
}

// Want is one party's requirement in a conflict.
type Want struct {
	// Origin is who wrote the requirement (for a dependency: who asked for the package
	// that depends on it).
	Origin Origin
	// Requirement is the requirement as written, e.g. "numpy<2".
	Requirement string
	// Via is set when the requirement is a dependency: "alpha 1.0 depends on numpy<2".
	Via string
	// Constraint is true for a constraint (spec python.constraints or site-packages).
	Constraint bool
}

// Conflict is the set of wants on one project that cannot all hold.
type Conflict struct {
	Name  string
	Wants []Want
}

// Missing is a requirement no available file satisfies.
type Missing struct {
	Requirement string
	// Available lists the versions pip found, as pip printed them.
	Available string
	Wants     []Want
}

// ResolutionError is a failed resolution explained by who asked for what.
type ResolutionError struct {
	Conflicts []Conflict
	Missing   []Missing
	// Installer is the installer's own error lines, with references to the combined
	// requirements file replaced by the file and line they came from.
	Installer []string
}

func (e *ResolutionError) Error() string {
	var b strings.Builder
	b.WriteString("resolving Python requirements failed")
	if len(e.Conflicts) > 0 {
		b.WriteString(": requirements conflict")
	}
	for _, c := range e.Conflicts {
		fmt.Fprintf(&b, "\n  %s:", c.Name)
		for _, w := range c.Wants {
			b.WriteString("\n    " + w.String())
		}
	}
	for _, m := range e.Missing {
		fmt.Fprintf(&b, "\n  no file satisfies %s", m.Requirement)
		if m.Available != "" {
			fmt.Fprintf(&b, " (versions found: %s)", m.Available)
		}
		for _, w := range m.Wants {
			b.WriteString("\n    " + w.String())
		}
	}
	if len(e.Installer) > 0 {
		b.WriteString("\n  pip said:")
		for _, l := range e.Installer {
			b.WriteString("\n    " + l)
		}
	}
	return b.String()
}

// IndexUnreachableError is a resolution that failed because pip could not reach a package
// index: what pip found missing is missing because of the network, not because no such
// file exists.
type IndexUnreachableError struct {
	// Pip are pip's own network errors (at most three, object addresses and credentials
	// removed).
	Pip []string
	// Resolution is the failure pip reported after the network errors.
	Resolution *ResolutionError
}

func (e *IndexUnreachableError) Error() string {
	var b strings.Builder
	b.WriteString("resolving Python requirements failed: pip could not reach the package index")
	for _, l := range e.Pip {
		b.WriteString("\n  pip: " + l)
	}
	var names []string
	for _, m := range e.Resolution.Missing {
		names = append(names, m.Requirement)
	}
	if len(names) > 0 {
		fmt.Fprintf(&b, "\n  so it found no file for %s (the index was not read: this does not mean there is none)", strings.Join(names, ", "))
	}
	b.WriteString("\n  ways out: check the network, a proxy (HTTPS_PROXY) or python.index_url;" +
		" give a folder of wheels with python.find_links;" +
		" copy a wheel cache (ROOT/cache/runpod-comfy/pip) filled on a machine with network;" +
		" or build with --offline (options.offline), which resolves from python.find_links only")
	return b.String()
}

// Unwrap returns the resolution failure pip reported.
func (e *IndexUnreachableError) Unwrap() error { return e.Resolution }

var (
	// networkSigns are what pip (urllib3, requests) prints when it cannot reach an index.
	networkSigns = []string{
		"after connection broken by", "Could not fetch URL", "Failed to establish a new connection",
		"Max retries exceeded", "NewConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
		"ProxyError", "SSLError", "Temporary failure in name resolution", "Name or service not known",
		"Connection refused", "Network is unreachable",
	}
	objectAddr = regexp.MustCompile(`<[^<>]* object at 0x[0-9a-fA-F]+>:? ?`)
	urlCreds   = regexp.MustCompile(`://[^/\s:@]+(:[^/\s@]*)?@`)
)

// networkLine returns pip's output line cleaned when it reports a network failure, else "".
func networkLine(line string) string {
	for _, sign := range networkSigns {
		if strings.Contains(line, sign) {
			line = objectAddr.ReplaceAllString(line, "")
			line = urlCreds.ReplaceAllString(line, "://")
			if len(line) > 400 {
				line = line[:400] + "..."
			}
			return line
		}
	}
	return ""
}

// String is one line of the report: `node "A" wants numpy<2 (custom_nodes/A/requirements.txt:3)`.
func (w Want) String() string {
	verb := "wants"
	if w.Constraint {
		verb = "constrains to"
		if w.Origin.File == fileSitePackages {
			verb = "has"
		}
	}
	s := fmt.Sprintf("%s %s %s", w.Origin.Who(), verb, w.Requirement)
	if w.Origin.File != fileSitePackages && w.Origin.File != fileDependency {
		s += " (" + w.Origin.String() + ")"
	}
	if w.Via != "" {
		s += ", and " + w.Via
	}
	return s
}

var (
	userRequestedRe = regexp.MustCompile(`^The user requested (\(constraint\) )?(.+)$`)
	dependsOnRe     = regexp.MustCompile(`^(\S+) (\S+) depends on (.+)$`)
	notFoundRe      = regexp.MustCompile(`Could not find a version that satisfies the requirement (.+?)(?: \(from versions: (.*)\))?$`)
	noMatchRe       = regexp.MustCompile(`No matching distribution found for (.+)$`)
	reqNameRe       = regexp.MustCompile(`^([A-Za-z0-9][A-Za-z0-9._-]*)`)
)

// explain turns pip's failed output into a ResolutionError.
func explain(output string, requires, constraints []Requirement, reqPath, consPath string) error {
	lineRef := regexp.MustCompile(`-([rc]) ` + regexp.QuoteMeta(filepath.Dir(reqPath)) + `/(requirements|constraints)\.txt \(line (\d+)\)`)
	rewrite := func(s string) string {
		return lineRef.ReplaceAllStringFunc(s, func(m string) string {
			sub := lineRef.FindStringSubmatch(m)
			n, _ := strconv.Atoi(sub[3])
			list := requires
			if sub[2] == "constraints" {
				list = constraints
			}
			if n >= 1 && n <= len(list) {
				return list[n-1].Origin.String()
			}
			return m
		})
	}
	nameOf := func(req string) string {
		return Normalize(reqNameRe.FindString(strings.TrimSpace(req)))
	}
	direct := func(name string) []Want {
		var ws []Want
		for _, r := range requires {
			if r.Name == name {
				ws = append(ws, Want{Origin: r.Origin, Requirement: r.Text})
			}
		}
		return ws
	}
	constrained := func(name string) []Want {
		var ws []Want
		for _, r := range constraints {
			if r.Name == name {
				ws = append(ws, Want{Origin: r.Origin, Requirement: r.Text, Constraint: true})
			}
		}
		return ws
	}
	e := &ResolutionError{}
	conflicts := map[string]*Conflict{}
	var order []string
	add := func(name string, ws ...Want) {
		c := conflicts[name]
		if c == nil {
			c = &Conflict{Name: name}
			conflicts[name] = c
			order = append(order, name)
		}
	next:
		for _, w := range ws {
			for _, have := range c.Wants {
				if have == w {
					continue next
				}
			}
			c.Wants = append(c.Wants, w)
		}
	}
	inCause := false
	var network []string
	for _, raw := range strings.Split(output, "\n") {
		line := strings.TrimSpace(raw)
		if n := networkLine(line); n != "" && !slices.Contains(network, n) && len(network) < 3 {
			network = append(network, n)
		}
		if strings.HasPrefix(line, "The conflict is caused by:") {
			inCause = true
			continue
		}
		if inCause {
			if line == "" || strings.HasPrefix(line, "To fix this") {
				inCause = false
				continue
			}
			if m := userRequestedRe.FindStringSubmatch(line); m != nil {
				name := nameOf(m[2])
				if m[1] != "" {
					add(name, constrained(name)...)
				} else {
					add(name, direct(name)...)
				}
				continue
			}
			if m := dependsOnRe.FindStringSubmatch(line); m != nil {
				name, parent := nameOf(m[3]), nameOf(m[1])
				via := fmt.Sprintf("%s %s depends on %s", m[1], m[2], m[3])
				ws := direct(parent)
				if len(ws) == 0 {
					ws = []Want{{Origin: Origin{File: fileDependency}, Requirement: m[1]}}
				}
				for i := range ws {
					ws[i].Via = via
				}
				add(name, ws...)
			}
			continue
		}
		if strings.HasPrefix(line, "ERROR:") {
			msg := rewrite(strings.TrimSpace(strings.TrimPrefix(line, "ERROR:")))
			if strings.HasPrefix(msg, "ResolutionImpossible") {
				continue
			}
			e.Installer = append(e.Installer, msg)
			if m := notFoundRe.FindStringSubmatch(msg); m != nil {
				name := nameOf(m[1])
				ws := append(direct(name), constrained(name)...)
				if len(ws) == 0 {
					ws = []Want{{Origin: Origin{File: fileDependency}, Requirement: m[1]}}
				}
				e.Missing = append(e.Missing, Missing{Requirement: m[1], Available: m[2], Wants: ws})
			} else if m := noMatchRe.FindStringSubmatch(msg); m != nil && len(e.Missing) == 0 {
				name := nameOf(m[1])
				e.Missing = append(e.Missing, Missing{Requirement: m[1], Wants: append(direct(name), constrained(name)...)})
			}
		}
	}
	for _, name := range order {
		e.Conflicts = append(e.Conflicts, *conflicts[name])
	}
	if len(network) > 0 && len(e.Conflicts) == 0 {
		return &IndexUnreachableError{Pip: network, Resolution: e}
	}
	if len(e.Installer) == 0 {
		// No ERROR line: keep the last lines of the output so the cause is not lost.
		lines := strings.Split(strings.TrimSpace(output), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		for _, l := range lines {
			e.Installer = append(e.Installer, rewrite(l))
		}
	}
	return e
}
