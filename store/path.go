package store

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxNameLen is the longest allowed store path name.
const MaxNameLen = 211

// FingerprintScheme is the scheme word and version that prefixes every Fingerprint. Changing
// the way fingerprints are formed means a new scheme version, so old and new paths never collide.
const FingerprintScheme = "runpod-comfy/1"

// Path is a store path's base name, "<digest>-<name>": what ROOT/store/ holds. It never
// contains the store directory, so it names the same object wherever the volume is mounted.
// The zero Path is invalid.
type Path struct {
	digest Digest
	name   string
}

// ParsePath parses "<32 nix32 chars>-<name>". A leading store directory is not accepted: use
// the base name.
func ParsePath(s string) (Path, error) {
	if len(s) < DigestLen+2 || s[DigestLen] != '-' {
		return Path{}, fmt.Errorf("parsing store path %q: want <32-char digest>-<name>", s)
	}
	d, err := ParseDigest(s[:DigestLen])
	if err != nil {
		return Path{}, fmt.Errorf("parsing store path %q: %w", s, err)
	}
	name := s[DigestLen+1:]
	if err := ValidateName(name); err != nil {
		return Path{}, fmt.Errorf("parsing store path %q: %w", s, err)
	}
	return Path{digest: d, name: name}, nil
}

// MustParsePath is ParsePath for constants in tests and examples; it panics on bad input.
func MustParsePath(s string) Path {
	p, err := ParsePath(s)
	if err != nil {
		panic(err)
	}
	return p
}

// NewPath makes a Path from a digest and a name.
func NewPath(d Digest, name string) (Path, error) {
	if err := ValidateName(name); err != nil {
		return Path{}, err
	}
	return Path{digest: d, name: name}, nil
}

// PathFor returns the store path of an object with the given fingerprint and name:
// nix32(xorfold20(sha256(fingerprint))) + "-" + name.
func PathFor(fingerprint, name string) (Path, error) {
	if err := ValidateName(name); err != nil {
		return Path{}, fmt.Errorf("store path for %q: %w", fingerprint, err)
	}
	return Path{digest: DigestOf(fingerprint), name: name}, nil
}

// String returns "<digest>-<name>".
func (p Path) String() string {
	if p.IsZero() {
		return ""
	}
	return p.digest.String() + "-" + p.name
}

// Digest returns the hash part.
func (p Path) Digest() Digest { return p.digest }

// Name returns the name part.
func (p Path) Name() string { return p.name }

// IsZero reports whether p is the zero Path.
func (p Path) IsZero() bool { return p.name == "" }

// MarshalText implements encoding.TextMarshaler (JSON: the base name string).
func (p Path) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Path) UnmarshalText(b []byte) error {
	v, err := ParsePath(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// ValidateName checks a store path name: 1-211 characters of [A-Za-z0-9+-._?=], not "." or
// "..", not starting with ".-" or "..-".
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("invalid store name: empty")
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("invalid store name %q: longer than %d characters", name, MaxNameLen)
	}
	if name == "." || name == ".." || strings.HasPrefix(name, ".-") || strings.HasPrefix(name, "..-") {
		return fmt.Errorf("invalid store name %q: reserved", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("+-._?=", c) >= 0:
		default:
			return fmt.Errorf("invalid store name %q: character %q not allowed (use A-Z a-z 0-9 + - . _ ? =)", name, c)
		}
	}
	return nil
}

// SanitizeName maps any string to a valid store name: disallowed characters become '_', a
// reserved or empty result becomes "_"+name, and it is cut to MaxNameLen. Builders use it for
// names taken from user input (file names, node names).
func SanitizeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("+-._?=", c) >= 0:
		default:
			b[i] = '_'
		}
	}
	out := string(b)
	if ValidateName(out) != nil {
		out = "_" + out
	}
	if len(out) > MaxNameLen {
		out = out[:MaxNameLen]
	}
	return out
}

// FixedFingerprint is the fingerprint of a fixed-output object addressed by the hash of its
// content (models): "runpod-comfy/1:fixed:<algo>:<lowercase hex>:<name>". The name is the
// basename of the source, so a renamed target reuses the same object.
func FixedFingerprint(algo, hexDigest, name string) string {
	return FingerprintScheme + ":fixed:" + strings.ToLower(algo) + ":" + strings.ToLower(hexDigest) + ":" + name
}

// GitFingerprint is the fingerprint of a git source tree at a commit (without .git):
// "runpod-comfy/1:git:<lowercase commit>:<submodules true|false>:<name>". The NAR hash is
// recorded in the metadata and checked when the object is made again.
func GitFingerprint(commit string, submodules bool, name string) string {
	return FingerprintScheme + ":git:" + strings.ToLower(commit) + ":" + strconv.FormatBool(submodules) + ":" + name
}

// ArchiveFingerprint is the fingerprint of a tree unpacked from an archive (a Comfy Registry
// node): "runpod-comfy/1:archive:<unpack>:sha256:<lowercase hex>:<name>", where unpack names
// the unpacking logic and its version (e.g. "zip-1") and the hex is the archive's sha256. The
// NAR hash is recorded in the lock and checked when the object is made again, as for git.
func ArchiveFingerprint(unpack, sha256Hex, name string) string {
	return FingerprintScheme + ":archive:" + unpack + ":sha256:" + strings.ToLower(sha256Hex) + ":" + name
}

// DrvFingerprint is the fingerprint of an input-addressed object (python, venv, root):
// "runpod-comfy/1:drv:<lowercase sha256 hex of the canonical derivation JSON>:<name>".
func DrvFingerprint(drvSHA256Hex, name string) string {
	return FingerprintScheme + ":drv:" + strings.ToLower(drvSHA256Hex) + ":" + name
}
