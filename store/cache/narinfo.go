package cache

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/store"
)

// StoreDir is the logical store dir of every narinfo StorePath and of nix-cache-info. The
// runpod-comfy store is relocatable (it is mounted at /workspace on pods and /runpod-volume on
// serverless) and no fingerprint contains a store dir, so this fixed name only makes the
// narinfo a valid Nix narinfo; objects are matched by their base name.
const StoreDir = "/runpod-comfy/store"

// Compression values of a narinfo.
const (
	CompressionNone = "none"
	CompressionZstd = "zstd"
)

// NarInfo is the description of one object in a cache (Nix's .narinfo file).
type NarInfo struct {
	StorePath   string       // full path: StoreDir + "/" + "<digest>-<name>"
	URL         string       // relative to the cache: nar/<nix32 file sha256>.nar[.zst]
	Compression string       // "none" or "zstd" (missing means bzip2 in Nix, which we refuse)
	FileHash    string       // sha256:<nix32> of the file at URL
	FileSize    int64        // size of the file at URL
	NarHash     string       // sha256:<nix32> of the NAR serialisation
	NarSize     int64        // size of the NAR serialisation
	References  []store.Path // sorted, self-reference included
	Deriver     string       // base name of the deriver, "" for none
	Sigs        []string     // "keyname:base64" ed25519 signatures of Fingerprint()
	CA          string       // content address, "" for input-addressed objects; written as X-CA when not in Nix's form

	// Kind and Derivation are runpod-comfy's own keys (X-Kind, X-Derivation; Nix ignores
	// unknown keys). They are informational: signatures do not cover them.
	Kind       string
	Derivation json.RawMessage
}

// BaseName returns "<digest>-<name>", the StorePath without its directory.
func (n *NarInfo) BaseName() string { return path.Base(n.StorePath) }

// MarshalText writes the narinfo with keys in Nix's order.
func (n *NarInfo) MarshalText() ([]byte, error) {
	var b bytes.Buffer
	kv := func(k, v string) { fmt.Fprintf(&b, "%s: %s\n", k, v) }
	kv("StorePath", n.StorePath)
	kv("URL", n.URL)
	kv("Compression", n.Compression)
	if n.FileHash != "" {
		kv("FileHash", n.FileHash)
		kv("FileSize", strconv.FormatInt(n.FileSize, 10))
	}
	kv("NarHash", n.NarHash)
	kv("NarSize", strconv.FormatInt(n.NarSize, 10))
	refs := make([]string, len(n.References))
	for i, r := range n.References {
		refs[i] = r.String()
	}
	kv("References", strings.Join(refs, " "))
	if n.Deriver != "" {
		kv("Deriver", n.Deriver)
	}
	for _, s := range n.Sigs {
		kv("Sig", s)
	}
	if n.CA != "" {
		// Nix refuses a narinfo whose CA is not "text:" or "fixed:" (git sources record
		// "git:<commit>"): such a content address goes under our own key instead.
		if isNixCA(n.CA) {
			kv("CA", n.CA)
		} else {
			kv("X-CA", n.CA)
		}
	}
	if n.Kind != "" {
		kv("X-Kind", n.Kind)
	}
	if len(n.Derivation) > 0 {
		var c bytes.Buffer
		if err := json.Compact(&c, n.Derivation); err != nil {
			return nil, fmt.Errorf("narinfo %s: derivation: %w", n.StorePath, err)
		}
		kv("X-Derivation", c.String())
	}
	return b.Bytes(), nil
}

// isNixCA reports whether ca has one of the content-address prefixes Nix parses.
func isNixCA(ca string) bool {
	return strings.HasPrefix(ca, "text:") || strings.HasPrefix(ca, "fixed:")
}

// ParseNarInfo reads a narinfo; name (the file or URL it came from) prefixes every error.
// Unknown keys are ignored, as Nix does. It checks that the required keys are present and
// well formed.
func ParseNarInfo(data []byte, name string) (*NarInfo, error) {
	n := &NarInfo{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if text == "" {
			continue
		}
		k, v, ok := strings.Cut(text, ": ")
		if !ok {
			if strings.HasSuffix(text, ":") { // "References:" with nothing after it
				k, v = strings.TrimSuffix(text, ":"), ""
			} else {
				return nil, fmt.Errorf("%s:%d: not a \"Key: value\" line", name, line)
			}
		}
		if seen[k] && k != "Sig" {
			return nil, fmt.Errorf("%s:%d: key %s repeated", name, line, k)
		}
		seen[k] = true
		var err error
		switch k {
		case "StorePath":
			n.StorePath = v
		case "URL":
			n.URL = v
		case "Compression":
			n.Compression = v
		case "FileHash":
			n.FileHash = v
		case "FileSize":
			n.FileSize, err = strconv.ParseInt(v, 10, 64)
		case "NarHash":
			n.NarHash = v
		case "NarSize":
			n.NarSize, err = strconv.ParseInt(v, 10, 64)
		case "References":
			for _, f := range strings.Fields(v) {
				r, perr := store.ParsePath(f)
				if perr != nil {
					return nil, fmt.Errorf("%s:%d: reference %q: %w", name, line, f, perr)
				}
				n.References = append(n.References, r)
			}
		case "Deriver":
			if v != "unknown-deriver" {
				n.Deriver = v
			}
		case "Sig":
			n.Sigs = append(n.Sigs, v)
		case "CA", "X-CA":
			if n.CA != "" {
				err = fmt.Errorf("both CA and X-CA are set")
			}
			n.CA = v
		case "X-Kind":
			n.Kind = v
		case "X-Derivation":
			if !json.Valid([]byte(v)) {
				err = fmt.Errorf("not valid JSON")
			}
			n.Derivation = json.RawMessage(v)
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %w", name, line, k, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if n.Compression == "" {
		n.Compression = "bzip2" // Nix's default when the key is missing
	}
	if err := n.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return n, nil
}

// check validates the fields a reader relies on.
func (n *NarInfo) check() error {
	switch {
	case n.StorePath == "":
		return fmt.Errorf("missing StorePath")
	case !strings.HasPrefix(n.StorePath, "/") || path.Clean(n.StorePath) != n.StorePath || path.Dir(n.StorePath) == "/":
		return fmt.Errorf("StorePath %q is not an absolute path in a store dir", n.StorePath)
	case n.URL == "":
		return fmt.Errorf("missing URL")
	case strings.HasPrefix(n.URL, "/") || strings.Contains(n.URL, "..") || strings.Contains(n.URL, "://"):
		return fmt.Errorf("URL %q is not a relative path inside the cache", n.URL)
	case n.NarHash == "":
		return fmt.Errorf("missing NarHash")
	case n.NarSize <= 0:
		return fmt.Errorf("NarSize must be positive, got %d", n.NarSize)
	case n.FileSize < 0:
		return fmt.Errorf("FileSize must not be negative, got %d", n.FileSize)
	}
	if err := validSHA256(n.NarHash); err != nil {
		return fmt.Errorf("NarHash: %w", err)
	}
	if n.FileHash != "" {
		if err := validSHA256(n.FileHash); err != nil {
			return fmt.Errorf("FileHash: %w", err)
		}
	}
	return nil
}

// Fingerprint returns the string a signature covers:
// "1;<StorePath>;<NarHash>;<NarSize>;<sorted full reference paths, comma-separated>".
func (n *NarInfo) Fingerprint() (string, error) {
	if n.NarSize == 0 {
		return "", fmt.Errorf("narinfo %s: NarSize 0 cannot be signed", n.StorePath)
	}
	if err := validSHA256(n.NarHash); err != nil {
		return "", fmt.Errorf("narinfo %s: NarHash: %w", n.StorePath, err)
	}
	dir := path.Dir(n.StorePath)
	refs := make([]string, len(n.References))
	for i, r := range n.References {
		refs[i] = dir + "/" + r.String()
	}
	sort.Strings(refs)
	return "1;" + n.StorePath + ";" + n.NarHash + ";" + strconv.FormatInt(n.NarSize, 10) + ";" + strings.Join(refs, ","), nil
}

// CacheInfo is the content of a cache's nix-cache-info file.
type CacheInfo struct {
	StoreDir      string
	WantMassQuery bool
	Priority      int
}

// MarshalText writes nix-cache-info.
func (c CacheInfo) MarshalText() ([]byte, error) {
	mq := 0
	if c.WantMassQuery {
		mq = 1
	}
	return fmt.Appendf(nil, "StoreDir: %s\nWantMassQuery: %d\nPriority: %d\n", c.StoreDir, mq, c.Priority), nil
}

// ParseCacheInfo reads nix-cache-info; name prefixes errors.
func ParseCacheInfo(data []byte, name string) (CacheInfo, error) {
	var c CacheInfo
	for i, l := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			return c, fmt.Errorf("%s:%d: not a \"Key: value\" line", name, i+1)
		}
		v = strings.TrimSpace(v)
		switch k {
		case "StoreDir":
			c.StoreDir = v
		case "WantMassQuery":
			c.WantMassQuery = v == "1"
		case "Priority":
			p, err := strconv.Atoi(v)
			if err != nil {
				return c, fmt.Errorf("%s:%d: Priority: %w", name, i+1, err)
			}
			c.Priority = p
		}
	}
	if c.StoreDir == "" {
		return c, fmt.Errorf("%s: missing StoreDir", name)
	}
	return c, nil
}
