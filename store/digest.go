package store

import (
	"crypto/sha256"
	"fmt"

	"github.com/runpod-comfy/runpod-comfy/store/nixbase32"
)

// DigestSize is the size in bytes of a Digest: the XOR-fold of a sha256 to 20 bytes.
const DigestSize = 20

// DigestLen is the length of a Digest's nix32 text form.
const DigestLen = 32

// Digest is the hash part of a store path: the XOR-fold to 20 bytes of the sha256 of the
// object's Fingerprint. Its text form is 32 nix32 characters.
type Digest [DigestSize]byte

// String returns the digest in nix32 (32 characters).
func (d Digest) String() string { return Nix32(d[:]) }

// MarshalText implements encoding.TextMarshaler.
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Digest) UnmarshalText(b []byte) error {
	v, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ParseDigest parses the 32-character nix32 form of a Digest.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if len(s) != DigestLen {
		return d, fmt.Errorf("parsing digest %q: want %d nix32 characters, have %d", s, DigestLen, len(s))
	}
	b, err := ParseNix32(s, DigestSize)
	if err != nil {
		return d, fmt.Errorf("parsing digest %q: %w", s, err)
	}
	copy(d[:], b)
	return d, nil
}

// DigestOf returns the digest of a fingerprint: nix32-able XOR-fold of its sha256.
func DigestOf(fingerprint string) Digest {
	return Fold20(sha256.Sum256([]byte(fingerprint)))
}

// Fold20 XOR-folds a sha256 to 20 bytes: out[i%20] ^= in[i]. It is a fold, not a truncation.
func Fold20(h [32]byte) (d Digest) {
	for i, x := range h {
		d[i%DigestSize] ^= x
	}
	return d
}

// Nix32 encodes b in Nix's base-32 (see package nixbase32).
func Nix32(b []byte) string { return nixbase32.Encode(b) }

// ParseNix32 decodes a nix32 string of n bytes (see package nixbase32).
func ParseNix32(s string, n int) ([]byte, error) { return nixbase32.Decode(s, n) }
