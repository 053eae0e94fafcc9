package cache

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
)

// SecretKey is an ed25519 signing key with its name, written "name:base64(seed ‖ public)" as
// nix-store --generate-binary-cache-key does.
type SecretKey struct {
	Name string
	Key  ed25519.PrivateKey
}

// PublicKey is an ed25519 verification key with its name, written "name:base64(public)".
type PublicKey struct {
	Name string
	Key  ed25519.PublicKey
}

// Errors of signature verification; test with errors.Is.
var (
	ErrUnsigned     = errors.New("no signature by a trusted key")
	ErrBadSignature = errors.New("signature does not verify")
)

// GenerateKey makes a new key pair named name, reading randomness from rand (nil means
// crypto/rand).
func GenerateKey(name string, rand io.Reader) (SecretKey, PublicKey, error) {
	if err := checkKeyName(name); err != nil {
		return SecretKey{}, PublicKey{}, err
	}
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return SecretKey{}, PublicKey{}, fmt.Errorf("generating key %s: %w", name, err)
	}
	return SecretKey{Name: name, Key: priv}, PublicKey{Name: name, Key: pub}, nil
}

func checkKeyName(name string) error {
	if name == "" || strings.ContainsAny(name, ": \t\n") {
		return fmt.Errorf("key name %q must be non-empty without ':' or spaces", name)
	}
	return nil
}

// String returns the key in Nix's "name:base64" form.
func (k SecretKey) String() string { return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Key) }

// String returns the key in Nix's "name:base64" form.
func (k PublicKey) String() string { return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Key) }

// Public returns the public half of k.
func (k SecretKey) Public() PublicKey {
	return PublicKey{Name: k.Name, Key: k.Key.Public().(ed25519.PublicKey)}
}

func parseNamedKey(s, what string, size int) (string, []byte, error) {
	s = strings.TrimSpace(s)
	name, b64, ok := strings.Cut(s, ":")
	if !ok {
		return "", nil, fmt.Errorf("%s: want NAME:BASE64", what)
	}
	if err := checkKeyName(name); err != nil {
		return "", nil, fmt.Errorf("%s: %w", what, err)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", nil, fmt.Errorf("%s %s: bad base64: %w", what, name, err)
	}
	if len(raw) != size {
		return "", nil, fmt.Errorf("%s %s: %d bytes, want %d", what, name, len(raw), size)
	}
	return name, raw, nil
}

// ParseSecretKey reads a secret key in Nix's "name:base64" form (64 bytes: seed ‖ public).
func ParseSecretKey(s string) (SecretKey, error) {
	name, raw, err := parseNamedKey(s, "secret key", ed25519.PrivateKeySize)
	if err != nil {
		return SecretKey{}, err
	}
	k := SecretKey{Name: name, Key: ed25519.PrivateKey(raw)}
	// The public half is stored beside the seed: it must match the seed.
	if !k.Key.Public().(ed25519.PublicKey).Equal(ed25519.NewKeyFromSeed(raw[:32]).Public()) {
		return SecretKey{}, fmt.Errorf("secret key %s: public half does not match the seed", name)
	}
	return k, nil
}

// ParsePublicKey reads a public key in Nix's "name:base64" form (32 bytes).
func ParsePublicKey(s string) (PublicKey, error) {
	name, raw, err := parseNamedKey(s, "public key", ed25519.PublicKeySize)
	if err != nil {
		return PublicKey{}, err
	}
	return PublicKey{Name: name, Key: ed25519.PublicKey(raw)}, nil
}

// SignFingerprint returns the signature of fp as "name:base64(sig)".
func (k SecretKey) SignFingerprint(fp string) string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(ed25519.Sign(k.Key, []byte(fp)))
}

// VerifyFingerprint checks one "name:base64" signature of fp against keys. It returns
// ErrUnsigned when no key has the signature's name, ErrBadSignature when one does but the
// signature does not verify.
func VerifyFingerprint(fp, sig string, keys []PublicKey) error {
	name, b64, ok := strings.Cut(sig, ":")
	if !ok {
		return fmt.Errorf("signature %q: want NAME:BASE64: %w", sig, ErrBadSignature)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return fmt.Errorf("signature by %s is malformed: %w", name, ErrBadSignature)
	}
	found := false
	for _, k := range keys {
		if k.Name != name {
			continue
		}
		found = true
		if ed25519.Verify(k.Key, []byte(fp), raw) {
			return nil
		}
	}
	if found {
		return fmt.Errorf("signature by %s: %w", name, ErrBadSignature)
	}
	return fmt.Errorf("signed only by untrusted key %s: %w", name, ErrUnsigned)
}

// Sign adds k's signature to n, replacing an earlier signature by a key of the same name.
func (n *NarInfo) Sign(k SecretKey) error {
	fp, err := n.Fingerprint()
	if err != nil {
		return err
	}
	sigs := n.Sigs[:0:0]
	for _, s := range n.Sigs {
		if !strings.HasPrefix(s, k.Name+":") {
			sigs = append(sigs, s)
		}
	}
	n.Sigs = append(sigs, k.SignFingerprint(fp))
	return nil
}

// Verify checks that at least one signature of n verifies against keys. A signature by a
// trusted key name that does not verify is an error even if another one verifies: it means
// the narinfo was altered (Nix accepts any one valid signature; we are stricter because a
// failing signature by a key we trust is evidence of tampering).
func (n *NarInfo) Verify(keys []PublicKey) error {
	fp, err := n.Fingerprint()
	if err != nil {
		return err
	}
	if len(n.Sigs) == 0 {
		return fmt.Errorf("%s has no signature: %w", n.BaseName(), ErrUnsigned)
	}
	var ok bool
	var untrusted []string
	for _, s := range n.Sigs {
		err := VerifyFingerprint(fp, s, keys)
		switch {
		case err == nil:
			ok = true
		case errors.Is(err, ErrUnsigned):
			name, _, _ := strings.Cut(s, ":")
			untrusted = append(untrusted, name)
		default:
			return fmt.Errorf("%s: %w", n.BaseName(), err)
		}
	}
	if !ok {
		return fmt.Errorf("%s is signed only by untrusted keys %s: %w", n.BaseName(), strings.Join(untrusted, ", "), ErrUnsigned)
	}
	return nil
}
