package store

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/store/nar"
)

// ContentAddressError is an object whose content is not what its fixed fingerprint names: a
// file whose sha256 (or md5) differs from the one in "runpod-comfy/1:fixed:<algo>:<hex>:<name>".
type ContentAddressError struct {
	Path      Path
	Algo      string
	Want, Got string
}

func (e *ContentAddressError) Error() string {
	if e.Got == "" {
		return fmt.Sprintf("%s: content address %s:%s: the object is not a single regular file", e.Path, e.Algo, e.Want)
	}
	return fmt.Sprintf("%s: content is %s:%s, but its store path is addressed by %s:%s", e.Path, e.Algo, e.Got, e.Algo, e.Want)
}

// fixedAddr is the parsed content address of a fixed fingerprint.
type fixedAddr struct{ algo, hex string }

// parseFixed returns the content address of a fixed fingerprint of p
// ("runpod-comfy/1:fixed:<algo>:<hex>:<name>"), and whether fp is one. It is an error when fp
// is a fixed fingerprint that does not hash to p's digest or names an unknown algorithm.
func parseFixed(p Path, fp string) (fixedAddr, bool, error) {
	rest, ok := strings.CutPrefix(fp, FingerprintScheme+":fixed:")
	if !ok {
		return fixedAddr{}, false, nil
	}
	if DigestOf(fp) != p.Digest() {
		return fixedAddr{}, true, fmt.Errorf("%s: fingerprint %q is not this path's", p, fp)
	}
	algo, rest, _ := strings.Cut(rest, ":")
	hx, _, _ := strings.Cut(rest, ":")
	if NewContentHash(algo) == nil {
		return fixedAddr{}, true, fmt.Errorf("%s: fingerprint %q: unknown hash algorithm %q", p, fp, algo)
	}
	return fixedAddr{algo, hx}, true, nil
}

// NewContentHash returns a fresh hash for a fixed object's content algorithm ("sha256" or
// "md5", as in FixedFingerprint), or nil for an algorithm the store does not know.
func NewContentHash(algo string) hash.Hash {
	switch algo {
	case "sha256":
		return sha256.New()
	case "md5":
		return md5.New()
	}
	return nil
}

// fixedFingerprintOf finds the fixed fingerprint of a registered object from its metadata: the
// derivation's "fixed" field, else one made from a "fixed:<algo>:<hex>" CA. Only a
// fingerprint that hashes to the object's digest counts (metadata from a cache is not signed;
// the digest is). It reports whether the metadata claims a fixed content address at all.
func fixedFingerprintOf(m *Meta) (fp string, claimed bool) {
	var d struct {
		Fixed string `json:"fixed"`
	}
	if len(m.Derivation) > 0 && json.Unmarshal(m.Derivation, &d) == nil && strings.HasPrefix(d.Fixed, FingerprintScheme+":fixed:") {
		claimed = true
		if DigestOf(d.Fixed) == m.Path.Digest() {
			return d.Fixed, true
		}
	}
	if ca, ok := strings.CutPrefix(m.CA, "fixed:"); ok && !strings.HasPrefix(ca, "r:") {
		claimed = true
		if algo, hx, ok := strings.Cut(ca, ":"); ok {
			if f := FixedFingerprint(algo, hx, m.Path.Name()); DigestOf(f) == m.Path.Digest() {
				return f, true
			}
		}
	}
	return "", claimed
}

// hashFixedFile reads the single regular file at path once and returns its NAR hash and size
// and its content hash (hex) in algo.
func hashFixedFile(path, algo string) (narHash string, narSize int64, content string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", 0, "", err
	}
	if !fi.Mode().IsRegular() {
		return "", 0, "", errors.New("not a regular file")
	}
	exec := fi.Mode()&0o100 != 0
	narH, contentH := nar.NewFileHasher(fi.Size(), exec), NewContentHash(algo)
	n, err := io.Copy(io.MultiWriter(narH, contentH), f)
	if err != nil {
		return "", 0, "", err
	}
	if n != fi.Size() {
		return "", 0, "", fmt.Errorf("%s changed while it was read", path)
	}
	narHash, narSize, err = narH.Finish()
	if err != nil {
		return "", 0, "", err
	}
	return narHash, narSize, hex.EncodeToString(contentH.Sum(nil)), nil
}

// modelAddressed reads the single regular file at path once and returns its NAR hash and
// whether its sha256 or md5, as a fixed fingerprint with p's name, gives p's digest: the
// check for a model whose metadata names no content address (metadata a cache wrote).
func modelAddressed(p Path, path string) (narHash string, ok bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", false, err
	}
	exec := fi.Mode()&0o100 != 0
	narH, sh, mh := nar.NewFileHasher(fi.Size(), exec), sha256.New(), md5.New()
	n, err := io.Copy(io.MultiWriter(narH, sh, mh), f)
	if err != nil {
		return "", false, err
	}
	if n != fi.Size() {
		return "", false, fmt.Errorf("%s changed while it was read", path)
	}
	narHash, _, err = narH.Finish()
	if err != nil {
		return "", false, err
	}
	for algo, h := range map[string]hash.Hash{"sha256": sh, "md5": mh} {
		if DigestOf(FixedFingerprint(algo, hex.EncodeToString(h.Sum(nil)), p.Name())) == p.Digest() {
			ok = true
		}
	}
	return narHash, ok, nil
}

// hashAddressed hashes the object at out like hashObject and, when addr is set, checks that it
// is a single regular file with that content hash, reading it once.
func hashAddressed(p Path, out string, addr fixedAddr) (string, int64, []nar.File, error) {
	fi, err := os.Lstat(out)
	if err != nil {
		return "", 0, nil, err
	}
	if !fi.Mode().IsRegular() {
		return "", 0, nil, &ContentAddressError{Path: p, Algo: addr.algo, Want: addr.hex}
	}
	narHash, narSize, got, err := hashFixedFile(out, addr.algo)
	if err != nil {
		return "", 0, nil, err
	}
	if got != addr.hex {
		return "", 0, nil, &ContentAddressError{Path: p, Algo: addr.algo, Want: addr.hex, Got: got}
	}
	return narHash, narSize, nil, nil
}
