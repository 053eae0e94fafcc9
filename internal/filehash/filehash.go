// Package filehash hashes whole files.
package filehash

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
)

// SHA256 returns the sha256 of the file at path.
func SHA256(path string) ([32]byte, error) {
	var sum [32]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// SHA256Hex returns the sha256 of the file at path as 64 lowercase hex digits.
func SHA256Hex(path string) (string, error) {
	sum, err := SHA256(path)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(sum[:]), nil
}
