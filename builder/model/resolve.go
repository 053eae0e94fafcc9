package model

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Where a lock's checksum came from (specs.ModelLock.ChecksumFrom).
const (
	FromSpec          = "spec"
	FromSource        = "source"
	FromFirstDownload = "first-download"
)

// Remote is what a source says about its file without downloading it.
type Remote struct {
	// Checksum is the source's own hash of the file (Hugging Face's linked etag, Civitai's
	// SHA256, GCS's MD5); zero when the source publishes none.
	Checksum Checksum
	// Size is the file's size, 0 when unknown.
	Size int64
	// FileName is the file's name: the source's basename, or Civitai's file name.
	FileName string
}

var hfResolvePath = regexp.MustCompile(`^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$`)

// classify turns http(s) URLs of the configured Hugging Face and Civitai endpoints into those
// kinds, so that their metadata and tokens apply.
func (f *Fetcher) classify(src Source) Source {
	if src.Kind != KindHTTP {
		return src
	}
	host := strings.ToLower(src.URL.Host)
	if host == strings.ToLower(f.hfURL.Host) {
		if m := hfResolvePath.FindStringSubmatch(src.URL.Path); m != nil && src.URL.RawQuery == "" {
			rev, _ := url.PathUnescape(m[2])
			src.Kind, src.HFRepo, src.HFRevision, src.HFPath = KindHF, m[1], rev, m[3]
		}
	}
	if host == strings.ToLower(f.civURL.Host) {
		if m := civitaiDownloadPath.FindStringSubmatch(src.URL.Path); m != nil {
			src.Kind, src.CivitaiVersion = KindCivitai, m[1]
		}
	}
	return src
}

// hfResolveURL is the Hugging Face resolve URL of an hf source.
func (f *Fetcher) hfResolveURL(src Source) string {
	return f.hfURL.String() + "/" + src.HFRepo + "/resolve/" + url.PathEscape(src.HFRevision) + "/" + escapePath(src.HFPath)
}

// civitaiDownloadURL is the download URL of a Civitai source: the URL as written, or the
// endpoint's /api/download/models/<id>.
func (f *Fetcher) civitaiDownloadURL(src Source) string {
	if src.URL != nil {
		return src.URL.String()
	}
	u := f.civURL.String() + "/api/download/models/" + src.CivitaiVersion
	if src.CivitaiQuery != "" {
		u += "?" + src.CivitaiQuery
	}
	return u
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// Resolve asks the source for the file's checksum, size and name without downloading it.
// Hugging Face: a HEAD of the resolve URL without following the redirect, reading
// X-Linked-Etag and X-Linked-Size (LFS files; plain git files have no sha256 there). Civitai:
// the model-version API's files[].hashes.SHA256. GCS: the object's MD5. Plain http(s) and local
// files publish nothing: the checksum is left zero.
func (f *Fetcher) Resolve(ctx context.Context, src Source) (Remote, error) {
	src = f.classify(src)
	switch src.Kind {
	case KindHF:
		return f.resolveHF(ctx, src)
	case KindCivitai:
		return f.resolveCivitai(ctx, src)
	case KindGCS:
		if f.opts.GCS == nil {
			return Remote{}, fmt.Errorf("model source %s: no Google Cloud Storage client (credentials are read from GOOGLE_APPLICATION_CREDENTIALS or the metadata server)", src.Redacted())
		}
		attrs, err := f.opts.GCS.Bucket(src.Bucket).Object(src.Object).Attrs(ctx)
		if err != nil {
			return Remote{}, gcsError(ctx, src.Redacted(), err)
		}
		r := Remote{Size: attrs.Size, FileName: src.FileName()}
		if len(attrs.MD5) == 16 {
			r.Checksum = Checksum{Algo: MD5, Hex: fmt.Sprintf("%x", attrs.MD5)}
		}
		return r, nil
	}
	return Remote{FileName: src.FileName()}, nil
}

// withRetry runs one metadata request with the retry policy.
func (f *Fetcher) withRetry(ctx context.Context, red string, do func() (*http.Response, error)) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		resp, err := do()
		var after time.Duration
		if err == nil {
			if resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode < 500 {
				return resp, nil
			}
			after = retryAfter(resp.Header.Get("Retry-After"))
			err = fmt.Errorf("%s", resp.Status)
			resp.Body.Close()
		} else {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if hostNotFound(err) {
				return nil, fmt.Errorf("%s: %w", red, redactErr(err))
			}
			err = redactErr(err)
		}
		if attempt+1 >= f.retry.Attempts {
			return nil, fmt.Errorf("%s: giving up after %d tries: %w", red, attempt+1, err)
		}
		d := f.retry.delay(attempt, after)
		f.warnf("%s: %v; retrying in %s", red, err, d.Round(time.Millisecond))
		if err := sleep(ctx, d); err != nil {
			return nil, err
		}
	}
}

func (f *Fetcher) resolveHF(ctx context.Context, src Source) (Remote, error) {
	u := f.hfResolveURL(src)
	red := src.Redacted()
	resp, err := f.withRetry(ctx, "resolving "+red, func() (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
		if err != nil {
			return nil, err
		}
		return f.noFollow.Do(req)
	})
	if err != nil {
		return Remote{}, err
	}
	resp.Body.Close()
	r := Remote{FileName: path.Base(src.HFPath)}
	switch sc := resp.StatusCode; {
	case sc >= 200 && sc < 400:
	case sc == http.StatusUnauthorized || sc == http.StatusForbidden:
		return Remote{}, fmt.Errorf("resolving %s: %s: the repository is private or gated, or does not exist: %s", red, resp.Status, f.authHint(f.hfURL.Host))
	case sc == http.StatusNotFound:
		return Remote{}, fmt.Errorf("resolving %s: %s: no file %q at revision %q of %s", red, resp.Status, src.HFPath, src.HFRevision, src.HFRepo)
	default:
		return Remote{}, fmt.Errorf("resolving %s: unexpected %s", red, resp.Status)
	}
	if et := strings.Trim(strings.TrimPrefix(resp.Header.Get("X-Linked-Etag"), "W/"), `"`); et != "" {
		if c, err := ParseChecksum("sha256:" + et); err == nil {
			r.Checksum = c
		}
	}
	if s := resp.Header.Get("X-Linked-Size"); s != "" {
		r.Size, _ = strconv.ParseInt(s, 10, 64)
	} else if resp.StatusCode == http.StatusOK && resp.ContentLength > 0 {
		r.Size = resp.ContentLength
	}
	return r, nil
}

// civitaiVersion is the part of Civitai's GET /api/v1/model-versions/<id> answer used here.
type civitaiVersion struct {
	Files []struct {
		Name        string  `json:"name"`
		SizeKB      float64 `json:"sizeKB"`
		Type        string  `json:"type"`
		Primary     bool    `json:"primary"`
		DownloadURL string  `json:"downloadUrl"`
		Hashes      struct {
			SHA256 string `json:"SHA256"`
		} `json:"hashes"`
		Metadata struct {
			Format string `json:"format"`
			Size   string `json:"size"`
			FP     string `json:"fp"`
		} `json:"metadata"`
	} `json:"files"`
}

func (f *Fetcher) resolveCivitai(ctx context.Context, src Source) (Remote, error) {
	red := src.Redacted()
	api := f.civURL.String() + "/api/v1/model-versions/" + src.CivitaiVersion
	resp, err := f.withRetry(ctx, "resolving "+red, func() (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, api, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/json")
		return f.client.Do(req)
	})
	if err != nil {
		return Remote{}, err
	}
	defer resp.Body.Close()
	switch sc := resp.StatusCode; {
	case sc == http.StatusOK:
	case sc == http.StatusUnauthorized || sc == http.StatusForbidden:
		return Remote{}, fmt.Errorf("resolving %s: %s: %s", red, resp.Status, f.authHint(f.civURL.Host))
	case sc == http.StatusNotFound:
		return Remote{}, fmt.Errorf("resolving %s: %s: Civitai has no model version %s", red, resp.Status, src.CivitaiVersion)
	default:
		return Remote{}, fmt.Errorf("resolving %s: Civitai API: unexpected %s", red, resp.Status)
	}
	var v civitaiVersion
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&v); err != nil {
		return Remote{}, fmt.Errorf("resolving %s: reading the Civitai API answer: %w", red, err)
	}
	if len(v.Files) == 0 {
		return Remote{}, fmt.Errorf("resolving %s: Civitai lists no files for model version %s", red, src.CivitaiVersion)
	}
	// The file the download URL serves: the one matching the URL's type/format query, else
	// the primary file, else the first.
	idx := 0
	for i, fl := range v.Files {
		if fl.Primary {
			idx = i
			break
		}
	}
	var q url.Values
	if src.URL != nil {
		q = src.URL.Query()
	} else if src.CivitaiQuery != "" {
		q, _ = url.ParseQuery(src.CivitaiQuery)
	}
	if q != nil {
		for i, fl := range v.Files {
			if (q.Get("type") == "" || strings.EqualFold(q.Get("type"), fl.Type)) &&
				(q.Get("format") == "" || strings.EqualFold(q.Get("format"), fl.Metadata.Format)) &&
				(q.Get("size") == "" || strings.EqualFold(q.Get("size"), fl.Metadata.Size)) &&
				(q.Get("fp") == "" || strings.EqualFold(q.Get("fp"), fl.Metadata.FP)) &&
				(q.Get("type") != "" || q.Get("format") != "" || q.Get("size") != "" || q.Get("fp") != "") {
				idx = i
				break
			}
		}
	}
	fl := v.Files[idx]
	r := Remote{FileName: fl.Name}
	if fl.Hashes.SHA256 != "" {
		c, err := ParseChecksum("sha256:" + fl.Hashes.SHA256)
		if err != nil {
			return Remote{}, fmt.Errorf("resolving %s: Civitai's SHA256 for %s: %w", red, fl.Name, err)
		}
		r.Checksum = c
	}
	return r, nil
}
