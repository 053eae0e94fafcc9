// Package nixbase32 is Nix's base-32 encoding ("nix32"): the alphabet
// 0123456789abcdfghijklmnpqrsvwxyz (no e, o, u, t), least significant 5-bit group last, so the
// first character comes from the last input bytes, and no padding.
package nixbase32

import (
	"errors"
	"fmt"
)

// Alphabet is the nix32 alphabet.
const Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

// EncodedLen returns the length of the encoding of n bytes: (8n-1)/5+1.
func EncodedLen(n int) int {
	if n == 0 {
		return 0
	}
	return (n*8-1)/5 + 1
}

// Encode returns the nix32 text of b.
func Encode(b []byte) string {
	n := EncodedLen(len(b))
	out := make([]byte, 0, n)
	for k := n - 1; k >= 0; k-- {
		bit := k * 5
		i, j := bit/8, uint(bit%8)
		c := b[i] >> j
		if i+1 < len(b) {
			c |= b[i+1] << (8 - j)
		}
		out = append(out, Alphabet[c&0x1f])
	}
	return string(out)
}

var decodeMap = func() (m [256]int8) {
	for i := range m {
		m[i] = -1
	}
	for i := 0; i < len(Alphabet); i++ {
		m[Alphabet[i]] = int8(i)
	}
	return m
}()

// ErrExcessBits reports a leading character that carries bits beyond the decoded length.
var ErrExcessBits = errors.New("nix32: leading character carries bits beyond the byte length")

// Decode decodes s into n bytes. It rejects a wrong length, characters outside the alphabet
// and a leading character carrying bits beyond n bytes (go-nix rejects "zz" and "c0").
func Decode(s string, n int) ([]byte, error) {
	if len(s) != EncodedLen(n) {
		return nil, fmt.Errorf("nix32: want %d characters for %d bytes, have %d", EncodedLen(n), n, len(s))
	}
	out := make([]byte, n)
	for k := 0; k < len(s); k++ {
		c := s[len(s)-1-k]
		v := decodeMap[c]
		if v < 0 {
			return nil, fmt.Errorf("nix32: invalid character %q", c)
		}
		bit := k * 5
		i, j := bit/8, uint(bit%8)
		out[i] |= byte(int(v) << j)
		carry := byte(int(v) >> (8 - j))
		if i+1 < n {
			out[i+1] |= carry
		} else if carry != 0 {
			return nil, ErrExcessBits
		}
	}
	return out, nil
}
