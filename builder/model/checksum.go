package model

import (
	"encoding/hex"
	"fmt"
	"hash"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/store"
)

// Hash algorithms a model checksum may use.
const (
	SHA256 = "sha256"
	MD5    = "md5"
)

// Checksum is a model file's content hash: an algorithm and the lowercase hex digest. Its
// text form is "sha256:<64 hex>" or "md5:<32 hex>", as in a spec and a lock.
type Checksum struct {
	Algo string
	Hex  string
}

// ParseChecksum reads "sha256:<hex>" or "md5:<hex>". A bare 64-digit hex string is taken as
// sha256, the default algorithm.
func ParseChecksum(s string) (Checksum, error) {
	s = strings.TrimSpace(s)
	algo, digest, ok := strings.Cut(s, ":")
	if !ok {
		algo, digest = SHA256, s
	}
	algo = strings.ToLower(algo)
	digest = strings.ToLower(digest)
	var want int
	switch algo {
	case SHA256:
		want = 64
	case MD5:
		want = 32
	default:
		return Checksum{}, fmt.Errorf("checksum %q: unknown algorithm %q (want sha256:<hex> or md5:<hex>)", s, algo)
	}
	if len(digest) != want {
		return Checksum{}, fmt.Errorf("checksum %q: a %s digest has %d hex digits, not %d", s, algo, want, len(digest))
	}
	if _, err := hex.DecodeString(digest); err != nil {
		return Checksum{}, fmt.Errorf("checksum %q: not hexadecimal", s)
	}
	return Checksum{Algo: algo, Hex: digest}, nil
}

// IsZero reports whether c is unknown.
func (c Checksum) IsZero() bool { return c.Algo == "" }

// String returns "<algo>:<hex>", or "" for the zero Checksum.
func (c Checksum) String() string {
	if c.IsZero() {
		return ""
	}
	return c.Algo + ":" + c.Hex
}

// newHash returns a fresh hash for algo; the store owns the algorithms of fixed objects.
func newHash(algo string) (hash.Hash, error) {
	if h := store.NewContentHash(algo); h != nil {
		return h, nil
	}
	return nil, fmt.Errorf("unknown checksum algorithm %q", algo)
}
