package cache

import "fmt"

const nix32Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

// nix32 encodes b in Nix's base-32 (reversed order, no padding).
func nix32(b []byte) string {
	n := (len(b)*8-1)/5 + 1
	out := make([]byte, 0, n)
	for k := n - 1; k >= 0; k-- {
		bit := k * 5
		i, j := bit/8, uint(bit%8)
		c := b[i] >> j
		if i+1 < len(b) {
			c |= b[i+1] << (8 - j)
		}
		out = append(out, nix32Alphabet[c&0x1f])
	}
	return string(out)
}

// sha256String formats a sha256 sum as "sha256:<nix32>", the form narinfo files use.
func sha256String(sum []byte) string { return "sha256:" + nix32(sum) }

// validSHA256 checks that s is "sha256:<52 nix32 chars>".
func validSHA256(s string) error {
	const p = "sha256:"
	if len(s) != len(p)+52 || s[:len(p)] != p {
		return fmt.Errorf("%q is not sha256:<52 nix32 characters>", s)
	}
	for i := len(p); i < len(s); i++ {
		if !isNix32(s[i]) {
			return fmt.Errorf("%q: character %q is not nix32", s, s[i])
		}
	}
	return nil
}

func isNix32(c byte) bool {
	for i := 0; i < len(nix32Alphabet); i++ {
		if nix32Alphabet[i] == c {
			return true
		}
	}
	return false
}
