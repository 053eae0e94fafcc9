package nar

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFileHasherEqualsHash: streaming a file's content through FileHasher gives what Hash
// gives by serialising the file, for sizes around the 8-byte padding and for executables,
// also when the state is saved and restored in the middle (a resumed download).
func TestFileHasherEqualsHash(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		data []byte
		exec bool
	}{
		{"empty", nil, false},
		{"small", []byte("Hello, World!\n"), false},
		{"aligned", []byte("01234567"), false},
		{"aligned-large", bytes.Repeat([]byte("abcdefgh"), 4096), false},
		{"unaligned", bytes.Repeat([]byte("x"), 1<<16+3), false},
		{"exec-empty", nil, true},
		{"exec-unaligned", []byte("#!/bin/sh\nexit 0\n"), true},
		{"exec-aligned", []byte("#!/bin/\n"), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, c.name)
			mode := os.FileMode(0o644)
			if c.exec {
				mode = 0o755
			}
			if err := os.WriteFile(path, c.data, mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			want, wantSize, err := Hash(path)
			if err != nil {
				t.Fatal(err)
			}
			size := int64(len(c.data))
			f := NewFileHasher(size, c.exec)
			f.Write(c.data)
			got, gotSize, err := f.Finish()
			if err != nil || got != want || gotSize != wantSize {
				t.Fatalf("FileHasher %s %d (%v), Hash %s %d", got, gotSize, err, want, wantSize)
			}
			if FileNarSize(size, c.exec) != wantSize {
				t.Fatalf("FileNarSize %d, NAR is %d bytes", FileNarSize(size, c.exec), wantSize)
			}

			half := len(c.data) / 2
			first := NewFileHasher(size, c.exec)
			first.Write(c.data[:half])
			state, err := first.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			resumed := NewFileHasher(size, c.exec)
			if err := resumed.UnmarshalBinary(state); err != nil {
				t.Fatal(err)
			}
			resumed.Write(c.data[half:])
			if got, gotSize, err := resumed.Finish(); err != nil || got != want || gotSize != wantSize {
				t.Fatalf("resumed FileHasher %s %d (%v), Hash %s %d", got, gotSize, err, want, wantSize)
			}
		})
	}
}

// TestFileHasherVector: the NAR of "Hello, World!\n" as Nix computes it.
func TestFileHasherVector(t *testing.T) {
	f := NewFileHasher(14, false)
	f.Write([]byte("Hello, World!\n"))
	h, n, err := f.Finish()
	if err != nil || n != 128 || !strings.HasPrefix(h, "sha256:") {
		t.Fatalf("%s %d %v", h, n, err)
	}
	// sha256 c070aed9...bb76 in hex is this in Nix's base32.
	if h != HashString(mustHex(t, "c070aed9366c5b1ccf6c35187d7bcd0d5d3f5633794031753ad6b05a75edbb76")) {
		t.Fatalf("NAR hash %s", h)
	}
}

// TestFileHasherLength: content shorter or longer than announced is an error, not a hash of
// a NAR that no file has.
func TestFileHasherLength(t *testing.T) {
	for _, n := range []int{13, 15} {
		f := NewFileHasher(14, false)
		f.Write(bytes.Repeat([]byte("a"), n))
		if _, _, err := f.Finish(); err == nil {
			t.Errorf("%d bytes for a 14-byte file: no error", n)
		}
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
