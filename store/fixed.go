package store

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

// HashContent reads the regular file at path once and returns its content hash (hex) in algo
// ("sha256" or "md5", as in FixedFingerprint) and its size, stopping with ctx's error when
// ctx ends. builder/model checks model files with it, so the store is the one owner of how a
// fixed object's content is hashed.
func HashContent(ctx context.Context, path, algo string) (hex string, size int64, err error) {
	h, err := hashFile(ctx, path, false, algo)
	if err != nil {
		return "", 0, err
	}
	return h.content[0], h.size, nil
}

// fileHashes are the hashes of one regular file read once.
type fileHashes struct {
	size    int64
	narHash string // "sha256:<nix32>", when asked for
	narSize int64
	content []string // hex, one per algorithm asked for, in order
}

// hashFile reads the regular file at path once through a content hash for each of algos and,
// when withNar, the NAR hasher. It fails when the file's size changes while it is read and
// stops with ctx's error when ctx ends.
func hashFile(ctx context.Context, path string, withNar bool, algos ...string) (fileHashes, error) {
	var out fileHashes
	f, err := os.Open(path)
	if err != nil {
		return out, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return out, err
	}
	if !fi.Mode().IsRegular() {
		return out, fmt.Errorf("%s: not a regular file", path)
	}
	var ws []io.Writer
	hs := make([]hash.Hash, len(algos))
	for i, algo := range algos {
		if hs[i] = NewContentHash(algo); hs[i] == nil {
			return out, fmt.Errorf("unknown checksum algorithm %q", algo)
		}
		ws = append(ws, hs[i])
	}
	var narH *nar.FileHasher
	if withNar {
		narH = nar.NewFileHasher(fi.Size(), fi.Mode()&0o100 != 0)
		ws = append(ws, narH)
	}
	w := io.MultiWriter(ws...)
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		n, rerr := f.Read(buf)
		if n > 0 {
			w.Write(buf[:n]) // hashes never fail
			out.size += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return out, fmt.Errorf("hashing %s: %w", path, rerr)
		}
	}
	if out.size != fi.Size() {
		return out, fmt.Errorf("%s changed while it was read", path)
	}
	if withNar {
		if out.narHash, out.narSize, err = narH.Finish(); err != nil {
			return out, err
		}
	}
	for _, h := range hs {
		out.content = append(out.content, hex.EncodeToString(h.Sum(nil)))
	}
	return out, nil
}

// modelAddressed reads the single regular file at path once and returns its NAR hash and
// whether its sha256 or md5, as a fixed fingerprint with p's name, gives p's digest: the
// check for a model whose metadata names no content address (metadata a cache wrote).
func modelAddressed(ctx context.Context, p Path, path string) (narHash string, ok bool, err error) {
	algos := []string{"sha256", "md5"}
	h, err := hashFile(ctx, path, true, algos...)
	if err != nil {
		return "", false, err
	}
	for i, algo := range algos {
		if DigestOf(FixedFingerprint(algo, h.content[i], p.Name())) == p.Digest() {
			ok = true
		}
	}
	return h.narHash, ok, nil
}

// hashAddressed hashes the object at out like hashObject and, when addr is set, checks that it
// is a single regular file with that content hash, reading it once.
func hashAddressed(ctx context.Context, p Path, out string, addr fixedAddr) (string, int64, []nar.File, error) {
	fi, err := os.Lstat(out)
	if err != nil {
		return "", 0, nil, err
	}
	if !fi.Mode().IsRegular() {
		return "", 0, nil, &ContentAddressError{Path: p, Algo: addr.algo, Want: addr.hex}
	}
	h, err := hashFile(ctx, out, true, addr.algo)
	if err != nil {
		return "", 0, nil, err
	}
	if h.content[0] != addr.hex {
		return "", 0, nil, &ContentAddressError{Path: p, Algo: addr.algo, Want: addr.hex, Got: h.content[0]}
	}
	return h.narHash, h.narSize, nil, nil
}
