package inputfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadRefusesLargerFiles(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	// A sparse file of 1 GiB: reading it whole would take a gigabyte of memory.
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = Read(p, 1<<20)
	var tl *TooLargeError
	if !errors.As(err, &tl) || !strings.Contains(err.Error(), "larger than 1048576 bytes") {
		t.Fatalf("want TooLargeError, got %v", err)
	}
	os.WriteFile(p, []byte("12345"), 0o644)
	if b, err := Read(p, 5); err != nil || string(b) != "12345" {
		t.Fatalf("a file of exactly the limit: %q %v", b, err)
	}
	if _, err := ReadAll(strings.NewReader("123456"), "standard input", 5); !errors.As(err, &tl) {
		t.Fatalf("want TooLargeError, got %v", err)
	}
}
