package tree

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompareLines(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	write := func(dir, name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(a, "same.txt", "x\n")
	write(b, "same.txt", "x\n")
	write(a, "t.txt", "one\ntwo\nthree\n")
	write(b, "t.txt", "one\n2\nthree\nfour\n")
	write(a, "bin.dat", "a\x00b")
	write(b, "bin.dat", "a\x00c")
	write(a, "gone", "")
	os.Symlink("t.txt", filepath.Join(a, "l"))
	os.Symlink("same.txt", filepath.Join(b, "l"))
	d, err := Compare(a, b)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, x := range d {
		got = append(got, x.Path+":"+x.Change)
	}
	if strings.Join(got, " ") != "bin.dat:content gone:only-in-store l:content t.txt:content" {
		t.Fatalf("differences %v", got)
	}
	if len(d[0].Lines) != 0 {
		t.Errorf("binary file got line differences: %+v", d[0].Lines)
	}
	lines := d[3].Lines
	if len(lines) != 2 || lines[0] != (LineDiff{2, "two", "2"}) || lines[1] != (LineDiff{4, "", "four"}) {
		t.Errorf("line differences %+v", lines)
	}
}
