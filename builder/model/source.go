package model

import (
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/specs"
)

// Kinds of model sources.
const (
	KindHTTP    = "http"    // http:// and https:// URLs
	KindHF      = "hf"      // hf://owner/repo/path/in/repo[@revision]
	KindCivitai = "civitai" // civitai://<model-version-id> and civitai.com download URLs
	KindFile    = "file"    // file:// URLs and local paths
	KindGCS     = "gs"      // gs://bucket/object
)

// Source is a parsed model source. Raw is the text as written in the spec, which may carry
// credentials: it is used to fetch, and never logged or locked (use Redacted).
type Source struct {
	Raw  string
	Kind string

	// URL is the http(s) URL for KindHTTP, and the civitai.com download URL when a Civitai
	// source was written as one.
	URL *url.URL
	// HF fields: the repository "owner/name", the path inside it and the revision ("main"
	// when the source names none).
	HFRepo, HFPath, HFRevision string
	// CivitaiVersion is the Civitai model-version id.
	CivitaiVersion string
	// CivitaiQuery is the query of a civitai:// source (type, format, size, fp select the
	// file of the version), passed on to the download URL.
	CivitaiQuery string
	// Path is the absolute local path for KindFile.
	Path string
	// Bucket and Object name a GCS object for KindGCS.
	Bucket, Object string
}

var (
	civitaiDownloadPath = regexp.MustCompile(`^/api/download/models/([0-9]+)/?$`)
)

// ParseSource reads a model source. A relative local path is taken relative to baseDir (the
// directory of the spec file, or the working directory of the command).
func ParseSource(raw, baseDir string) (Source, error) {
	s := Source{Raw: raw}
	if strings.TrimSpace(raw) == "" {
		return s, fmt.Errorf("empty model source")
	}
	if !strings.Contains(raw, "://") {
		p := raw
		if !filepath.IsAbs(p) {
			p = filepath.Join(baseDir, p)
		}
		s.Kind, s.Path = KindFile, filepath.Clean(p)
		return s, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return s, fmt.Errorf("model source %s: %w", Redact(raw), err)
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
		s.URL = u
		if m := civitaiDownloadPath.FindStringSubmatch(u.Path); m != nil && isCivitaiHost(u.Hostname()) {
			s.Kind, s.CivitaiVersion = KindCivitai, m[1]
			return s, nil
		}
		s.Kind = KindHTTP
		if u.Host == "" {
			return s, fmt.Errorf("model source %s: no host", Redact(raw))
		}
	case "hf":
		// hf://owner/repo/path/in/repo[@revision]; url.Parse puts owner in Host.
		rest := strings.TrimPrefix(raw[len(u.Scheme)+3:], "/")
		rev := "main"
		if i := strings.LastIndex(rest, "@"); i >= 0 && !strings.Contains(rest[i:], "/") {
			rest, rev = rest[:i], rest[i+1:]
			if rev == "" {
				return s, fmt.Errorf("model source %s: empty revision after @", Redact(raw))
			}
		}
		parts := strings.SplitN(rest, "/", 3)
		if len(parts) < 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" || strings.HasSuffix(parts[2], "/") {
			return s, fmt.Errorf("model source %s: want hf://owner/repo/path/in/repo[@revision]", Redact(raw))
		}
		s.Kind, s.HFRepo, s.HFPath, s.HFRevision = KindHF, parts[0]+"/"+parts[1], parts[2], rev
	case "civitai":
		// Every form the seed tool accepted: civitai://<id>, civitai://models/<id>,
		// civitai://api/download/models/<id>, with an optional ?type=...&format=... query.
		id, q, err := specs.ParseCivitaiSource(raw)
		if err != nil {
			return s, fmt.Errorf("model source %s: %v", Redact(raw), err)
		}
		s.Kind, s.CivitaiVersion, s.CivitaiQuery = KindCivitai, id, q
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return s, fmt.Errorf("model source %s: file URLs name a local path (file:///path)", Redact(raw))
		}
		if !filepath.IsAbs(u.Path) {
			return s, fmt.Errorf("model source %s: file URL path is not absolute", Redact(raw))
		}
		s.Kind, s.Path = KindFile, filepath.Clean(u.Path)
	case "gs":
		obj := strings.TrimPrefix(u.Path, "/")
		if u.Host == "" || obj == "" || strings.HasSuffix(obj, "/") {
			return s, fmt.Errorf("model source %s: want gs://bucket/object", Redact(raw))
		}
		s.Kind, s.Bucket, s.Object = KindGCS, u.Host, obj
	default:
		return s, fmt.Errorf("model source %s: unsupported scheme %q (want http, https, hf, civitai, file, gs or a local path)", Redact(raw), u.Scheme)
	}
	return s, nil
}

// FileName is the file name the source names: the last element of its URL path, HF path,
// object name or local path. It is empty for civitai://<id>, whose file name comes from the
// Civitai API at resolve time.
func (s Source) FileName() string {
	switch s.Kind {
	case KindHTTP:
		return path.Base(s.URL.Path)
	case KindHF:
		return path.Base(s.HFPath)
	case KindGCS:
		return path.Base(s.Object)
	case KindFile:
		return filepath.Base(s.Path)
	}
	return ""
}

// Redacted is the source with credentials removed, safe for logs and locks.
func (s Source) Redacted() string { return Redact(s.Raw) }

// credentialParams are query parameters that carry credentials in download URLs: tokens,
// API keys and the signatures of pre-signed URLs.
var credentialParams = []string{"token", "api_key", "apikey", "key", "access_token", "auth", "password", "sig", "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token", "x-goog-signature", "x-goog-credential", "googleaccessid"}

// Redact removes credentials from a source: the user information of a URL ("user:pass@") and
// query parameters that carry tokens, keys or signatures. Anything that is not a URL is
// returned unchanged.
func Redact(raw string) string {
	if !strings.Contains(raw, "://") {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	u.User = nil
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			for _, c := range credentialParams {
				if strings.EqualFold(k, c) {
					q.Del(k)
				}
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

func isCivitaiHost(h string) bool {
	h = strings.ToLower(h)
	return h == "civitai.com" || strings.HasSuffix(h, ".civitai.com")
}
