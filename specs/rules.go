package specs

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/runpod-comfy/runpod-comfy/internal/layout"
	"github.com/runpod-comfy/runpod-comfy/internal/netguard"
	"github.com/runpod-comfy/runpod-comfy/internal/semver"
)

// IsFullCommit reports whether s is a full git object id: 40 (SHA-1) or 64 (SHA-256) hex digits.
func IsFullCommit(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	return isHex(s)
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// IsAbbreviatedCommit reports whether s looks like an abbreviated commit: 7 to 39 hex digits.
func IsAbbreviatedCommit(s string) bool {
	return len(s) >= 7 && len(s) < 40 && isHex(s)
}

// CheckChecksum reports whether s is a checksum of the accepted form, "sha256:<64 hex>" or
// "md5:<32 hex>" (hex in either case).
func CheckChecksum(s string) error {
	algo, hexDigest, ok := strings.Cut(s, ":")
	if !ok {
		if isHex(s) && (len(s) == 64 || len(s) == 32) {
			return fmt.Errorf("checksum %q has no algorithm: write it as \"sha256:<64 hex>\" or \"md5:<32 hex>\"", s)
		}
		return fmt.Errorf("checksum %q is not of the form \"sha256:<64 hex>\" or \"md5:<32 hex>\"", s)
	}
	want := map[string]int{"sha256": 64, "md5": 32}[algo]
	if want == 0 {
		return fmt.Errorf("checksum %q: algorithm %q is not accepted (sha256 or md5)", s, algo)
	}
	if len(hexDigest) != want || !isHex(hexDigest) {
		return fmt.Errorf("checksum %q: %s needs %d hex digits, got %q", s, algo, want, hexDigest)
	}
	return nil
}

// CheckVersionID reports whether id can name a version; the rule is layout.CheckVersionID,
// shared with the builder, the store's roots and the runner.
func CheckVersionID(id string) error { return layout.CheckVersionID(id) }

var nodeNameRe = regexp.MustCompile(`^[A-Za-z0-9+\-._?=]+$`)

// CheckNodeName reports whether name can be a custom node's directory: one path element made
// of the characters a store path name allows ([A-Za-z0-9+-._?=]).
func CheckNodeName(name string) error {
	switch {
	case name == "":
		return errors.New("node name is empty")
	case name == "." || name == "..":
		return fmt.Errorf("node name %q is not a directory name", name)
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("node name %q starts with a dot (hidden directories are not loaded by ComfyUI)", name)
	case len(name) > 180:
		return fmt.Errorf("node name %q is longer than 180 characters", name)
	case !nodeNameRe.MatchString(name):
		return fmt.Errorf("node name %q may hold only letters, digits and + - . _ ? = (it names a store object)", name)
	}
	return nil
}

var scpLikeRe = regexp.MustCompile(`^(?:[A-Za-z0-9._-]+@)?([A-Za-z0-9.-]+):([^/].*)?$`)

// CheckGitURL reports whether u is a git URL runpod-comfy fetches: https://, ssh:// or the
// scp-like user@host:path form, file://, or an absolute local path (the same as file://).
// Plain http:// is accepted only for loopback hosts (local test servers). Credentials in the
// URL are refused so that they never reach a lock or a log.
func CheckGitURL(u string) error {
	const accepted = "use https://, ssh:// (or git@host:path), file:// or an absolute path"
	if u == "" {
		return errors.New("git URL is empty")
	}
	if err := CheckText(u); err != nil {
		// Not shown: it may hold credentials.
		return fmt.Errorf("git URL %w (not shown: it may hold credentials)", err)
	}
	if strings.TrimSpace(u) != u {
		return fmt.Errorf("git URL %q has leading or trailing spaces", u)
	}
	if strings.HasPrefix(u, "/") {
		return nil
	}
	if !strings.Contains(u, "://") {
		if m := scpLikeRe.FindStringSubmatch(u); m != nil && m[2] != "" && (strings.Contains(u[:len(u)-len(m[2])], "@") || strings.Contains(m[1], ".") || m[1] == "localhost") {
			return nil
		}
		return fmt.Errorf("git URL %q is neither a URL nor an absolute path: %s", u, accepted)
	}
	p, err := url.Parse(u)
	if err != nil {
		// Neither the URL nor url.Error (which quotes it) is shown: it may hold a token.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("git URL does not parse (not shown: it may hold credentials): %v", err)
	}
	if _, has := p.User.Password(); has {
		return fmt.Errorf("git URL %q carries a password: remove it (https remotes get $GIT_TOKEN, ssh ones the ssh agent)", redactURL(p))
	}
	if p.User != nil && (p.Scheme == "https" || p.Scheme == "http") {
		// https://<token>@host/... is how tokens are often written.
		return fmt.Errorf("git URL %q carries a user name, which may be a token: remove it (https remotes get $GIT_TOKEN)", redactURL(p))
	}
	switch p.Scheme {
	case "https", "ssh":
		if p.Host == "" {
			return fmt.Errorf("git URL %q has no host", u)
		}
		if p.Path == "" || p.Path == "/" {
			return fmt.Errorf("git URL %q has no repository path", u)
		}
		return nil
	case "file":
		if p.Host != "" && p.Host != "localhost" {
			return fmt.Errorf("git URL %q: a file URL needs an absolute path (file:///path)", u)
		}
		if p.Path == "" {
			return fmt.Errorf("git URL %q has no path", u)
		}
		return nil
	case "http":
		if h := p.Hostname(); h == "localhost" || h == "127.0.0.1" || h == "::1" {
			return nil
		}
		return fmt.Errorf("git URL %q uses plain http, which is accepted only on loopback: use https://", u)
	default:
		return fmt.Errorf("git URL %q: scheme %q is not accepted: %s", u, p.Scheme, accepted)
	}
}

// redactURL hides the password of p, or its user name when there is no password (a token
// written as the user).
func redactURL(p *url.URL) string {
	q := *p
	if q.User != nil {
		if _, has := q.User.Password(); has {
			q.User = url.UserPassword(q.User.Username(), "xxxxx")
		} else {
			q.User = url.User("xxxxx")
		}
	}
	return q.String()
}

// NodeNameFromRepo is the directory name a custom node gets when its spec names none: the
// last path element of the repository URL without a ".git" suffix.
func NodeNameFromRepo(repo string) string {
	s := strings.TrimRight(repo, "/")
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
		if j := strings.IndexByte(s, '/'); j >= 0 {
			s = s[j:]
		} else {
			s = ""
		}
	} else if m := scpLikeRe.FindStringSubmatch(s); m != nil && !strings.HasPrefix(s, "/") {
		s = m[2]
	}
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimRight(s, "/")
	base := path.Base(s)
	if base == "." || base == "/" {
		return ""
	}
	return strings.TrimSuffix(base, ".git")
}

// ModelTarget is where m goes, as a clean slash-separated path under the runtime root's
// models/ directory, e.g. "checkpoints/sd_xl_base_1.0.safetensors".
//
// With target_subdir the path is target_subdir/<file name>. With target_path it is the cleaned
// target_path, where a leading $MODELS_DIR/ or $COMFY_HOME/models/ (also written ${...}) is
// removed; a target_path ending in "/" names a directory and gets the file name appended. The
// file name is m.Name when set, else the last path segment of the source URL without its
// query. A target escaping models/ (through "..", or absolute anywhere else) is an error.
func ModelTarget(m Model) (string, error) {
	for _, f := range []struct{ name, v string }{{"target_subdir", m.TargetSubdir}, {"target_path", m.TargetPath}, {"name", m.Name}} {
		if err := CheckText(f.v); err != nil {
			return "", fmt.Errorf("%s %q %w", f.name, f.v, err)
		}
	}
	if m.TargetSubdir != "" && m.TargetPath != "" {
		return "", errors.New("target_subdir and target_path are both set: use one")
	}
	fileName := func() (string, error) {
		if m.Name != "" {
			if strings.ContainsAny(m.Name, `/\`) || m.Name == "." || m.Name == ".." {
				return "", fmt.Errorf("name %q must be a file name, not a path", m.Name)
			}
			return m.Name, nil
		}
		n := SourceFileName(m.Source)
		if n == "" {
			return "", fmt.Errorf("source %q has no file name: set name", m.Source)
		}
		return n, nil
	}
	var target string
	switch {
	case m.TargetPath != "":
		rel, err := modelsRelative(m.TargetPath)
		if err != nil {
			return "", fmt.Errorf("target_path %w", err)
		}
		if strings.HasSuffix(m.TargetPath, "/") || rel == "" {
			n, err := fileName()
			if err != nil {
				return "", err
			}
			rel = path.Join(rel, n)
		}
		// Beside a target_path naming the file itself, name is a label (the seed tool used
		// it only in messages), as an HCL model block's label is.
		target = rel
	case m.TargetSubdir != "":
		rel, err := modelsRelative(m.TargetSubdir)
		if err != nil {
			return "", fmt.Errorf("target_subdir %w", err)
		}
		n, err := fileName()
		if err != nil {
			return "", err
		}
		target = path.Join(rel, n)
	default:
		return "", errors.New("no target_subdir or target_path: say where the model goes under models/ (e.g. target_subdir = \"checkpoints\")")
	}
	if target == "" || target == "." {
		return "", errors.New("target is the models directory itself")
	}
	return target, nil
}

// modelsRelative turns a target_path or target_subdir into a clean path relative to models/.
func modelsRelative(p string) (string, error) {
	orig := p
	p = strings.ReplaceAll(p, `\`, "/")
	rest, found := CutModelsPrefix(p)
	if found {
		p = rest
	} else if strings.HasPrefix(p, "$") {
		return "", fmt.Errorf("%q starts with an unknown variable: only $MODELS_DIR and $COMFY_HOME/models are understood", orig)
	} else if strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%q is absolute and escapes the models directory", orig)
	}
	if p == "" {
		return "", nil
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return "", fmt.Errorf("%q escapes the models directory", orig)
		}
	}
	c := path.Clean(p)
	if c == "." {
		return "", nil
	}
	return c, nil
}

// CutModelsPrefix removes a leading $MODELS_DIR or $COMFY_HOME/models (also written with
// braces) from p and reports whether it found one. What remains has no leading slash.
func CutModelsPrefix(p string) (string, bool) {
	for _, pre := range []string{"$MODELS_DIR", "${MODELS_DIR}", "$COMFY_HOME/models", "${COMFY_HOME}/models"} {
		if p == pre {
			return "", true
		}
		if strings.HasPrefix(p, pre+"/") {
			return strings.TrimLeft(p[len(pre):], "/"), true
		}
	}
	return p, false
}

// TargetPathNamesFile reports whether target_path names the model's file itself (rather than
// a directory: it ends in "/" or is $MODELS_DIR alone).
func TargetPathNamesFile(tp string) bool {
	if strings.HasSuffix(tp, "/") || strings.HasSuffix(tp, `\`) {
		return false
	}
	rel, err := modelsRelative(tp)
	return err == nil && rel != ""
}

// BareChecksumAlgo returns the algorithm a checksum written without one stands for, as the
// seed tool read it: 64 hex digits are sha256 and 32 are md5. It returns "" for anything
// else (a checksum with an algorithm, or not hex).
func BareChecksumAlgo(s string) string {
	if strings.Contains(s, ":") || !isHex(s) {
		return ""
	}
	switch len(s) {
	case 64:
		return "sha256"
	case 32:
		return "md5"
	}
	return ""
}

var civitaiVersionRe = regexp.MustCompile(`^[0-9]{1,20}$`)

// ParseCivitaiSource reads a civitai:// model source in every form the seed tool accepted:
// civitai://<id>, civitai://models/<id>, civitai://api/download/models/<id> and
// civitai://download/models/<id>, each also with three slashes (civitai:///models/<id>) and a
// trailing slash, and with a query (?type=Model&format=SafeTensor) that selects the file of the
// model version. <id> is the model-version id (the seed downloaded every form from
// /api/download/models/<id>). It returns the id and the raw query.
func ParseCivitaiSource(raw string) (versionID, query string, err error) {
	rest, ok := cutScheme(raw, "civitai")
	if !ok {
		return "", "", fmt.Errorf("%q is not a civitai:// source", raw)
	}
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest, query = rest[:i], rest[i+1:]
		if _, err := url.ParseQuery(query); err != nil {
			return "", "", fmt.Errorf("civitai source: query %q: %v", query, err)
		}
	}
	p := strings.Trim(rest, "/")
	for _, pre := range []string{"api/download/models/", "download/models/", "models/", ""} {
		if id, ok := strings.CutPrefix(p, pre); ok && civitaiVersionRe.MatchString(id) {
			return id, query, nil
		}
	}
	return "", "", fmt.Errorf("civitai source %q: want civitai://<model-version-id>, civitai://models/<id> or civitai://api/download/models/<id> (digits, optionally ?type=...&format=...)", netguard.RedactURL(raw))
}

// CheckCivitaiSource checks a model source of the civitai:// scheme (any other source passes).
func CheckCivitaiSource(raw string) error {
	if _, ok := cutScheme(raw, "civitai"); !ok {
		return nil
	}
	_, _, err := ParseCivitaiSource(raw)
	return err
}

func cutScheme(raw, scheme string) (string, bool) {
	if len(raw) < len(scheme)+3 || !strings.EqualFold(raw[:len(scheme)], scheme) || raw[len(scheme):len(scheme)+3] != "://" {
		return "", false
	}
	return raw[len(scheme)+3:], true
}

// SourceFileName is the last path segment of a model source without query or fragment, or ""
// when it has none. hf://owner/repo/path@rev drops the @rev.
func SourceFileName(source string) string {
	if _, ok := cutScheme(source, "civitai"); ok {
		return "" // the file name comes from the Civitai API
	}
	s := source
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	if strings.HasPrefix(s, "hf://") {
		if i := strings.LastIndexByte(s, '@'); i > strings.LastIndexByte(s, '/') {
			s = s[:i]
		}
	}
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		j := strings.IndexByte(rest, '/')
		if j < 0 {
			return ""
		}
		s = rest[j:]
	}
	if strings.HasSuffix(s, "/") {
		return ""
	}
	base := path.Base(s)
	if base == "." || base == "/" || base == "" {
		return ""
	}
	if u, err := url.PathUnescape(base); err == nil {
		base = u
	}
	return base
}

// IsRegistry reports whether the node comes from the Comfy Registry rather than git.
func (n CustomNode) IsRegistry() bool { return n.Registry != "" }

// Label names the node for messages: its registry id@version request, else its name, e.g.
// `custom node "comfyui-impact-pack@^8.8.0"`.
func (n CustomNode) Label() string {
	if n.IsRegistry() {
		return fmt.Sprintf("custom node %q (registry %s@%s)", n.Name, n.Registry, n.Version)
	}
	return fmt.Sprintf("custom node %q", n.Name)
}

// MaxRegistryIDLen is one more than the longest registry id: the registry wants ids shorter
// than 100 characters (docs.comfy.org, registry specifications, "name").
const MaxRegistryIDLen = 100

// CheckRegistryID applies the Comfy Registry's rules for a node id (the name in the node's
// pyproject.toml): fewer than 100 characters; letters, digits, '-', '_' and '.'; starting
// with a letter; no two special characters in a row. Ids compare case-insensitively; lang
// writes them in lowercase, as ComfyUI-Manager does.
func CheckRegistryID(id string) error {
	switch {
	case id == "":
		return errors.New("registry id is empty")
	case len(id) >= MaxRegistryIDLen:
		return fmt.Errorf("registry id %q is %d characters: the registry's ids are shorter than %d", id[:40]+"...", len(id), MaxRegistryIDLen)
	}
	if err := CheckText(id); err != nil {
		return fmt.Errorf("registry id %q %w", id, err)
	}
	special := func(c byte) bool { return c == '-' || c == '_' || c == '.' }
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9':
			if i == 0 {
				return fmt.Errorf("registry id %q starts with a digit: registry ids start with a letter", id)
			}
		case special(c):
			if i == 0 {
				return fmt.Errorf("registry id %q starts with %q: registry ids start with a letter", id, c)
			}
			if special(id[i-1]) {
				return fmt.Errorf("registry id %q has two special characters in a row (%q): the registry does not allow it", id, id[i-1:i+1])
			}
		default:
			return fmt.Errorf("registry id %q holds %q: registry ids hold only letters, digits, '-', '_' and '.'", id, c)
		}
	}
	return nil
}

// CheckRegistryVersion checks a registry node's version request: an exact semantic version
// ("8.8.1"), "latest", or a range ("^8.8.0", "~8.8.0", ">=8.8.0, <9.0.0", "8.*").
func CheckRegistryVersion(v string) error {
	_, err := semver.ParseRequest(v)
	return err
}

// WantsRequirements reports whether ComfyUI's requirements.txt is installed (the default).
func (c Comfy) WantsRequirements() bool {
	return c.InstallRequirements == nil || *c.InstallRequirements
}

// WantsRequirements reports whether the node's requirements.txt is installed (the default).
func (n CustomNode) WantsRequirements() bool {
	return n.InstallRequirements == nil || *n.InstallRequirements
}

// CheckText refuses what no name, path, URL or other text field of a spec may hold: bytes
// that are not UTF-8 and control characters (C0 including tab and newline, DEL, C1). A
// newline in a target_subdir written into extra_model_paths.yaml, for one, would add a
// section of the spec's choosing. The error reads after the field's name and value.
func CheckText(s string) error {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			return fmt.Errorf("is not valid UTF-8 (byte %d)", i)
		case r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f:
			return fmt.Errorf("holds the control character %U at byte %d", r, i)
		}
		i += n
	}
	return nil
}

// TargetsConflict reports whether two model targets (clean paths under models/) cannot both
// exist: they are equal, or one is a directory above the other (a file at "a" and another at
// "a/b" would need "a" to be both a file and a directory).
func TargetsConflict(a, b string) bool {
	return a == b || strings.HasPrefix(b, a+"/") || strings.HasPrefix(a, b+"/")
}

var pythonVersionRe = regexp.MustCompile(`^3(\.[0-9]+){1,2}$`)

// CheckPythonVersion checks python.version: a Python 3 version such as "3.11" or "3.11.9" (the
// builder runs python3.<minor>).
func CheckPythonVersion(v string) error {
	if !pythonVersionRe.MatchString(v) {
		return fmt.Errorf("%q is not a Python version such as \"3.11\" (3.<minor> or 3.<minor>.<patch>)", v)
	}
	return nil
}
