// Package inputfile reads files given as input (locks, workflows, test inputs, snapshots)
// with a size limit, so that a file of any size cannot make a command read it all into
// memory. The limits are the callers'; each is far above what such a file holds.
package inputfile

import (
	"fmt"
	"io"
	"os"
)

// Limits of the inputs read through this package.
const (
	// MaxLock is the size of a lock file (a lock of a thousand Python packages is ~1 MiB).
	MaxLock = 16 << 20
	// MaxWorkflow is the size of a workflow or job input file, as the worker's HTTP API
	// accepts.
	MaxWorkflow = 20 << 20
	// MaxSnapshot is the size of a ComfyUI-Manager snapshot.
	MaxSnapshot = 16 << 20
	// MaxKey is the size of a key file.
	MaxKey = 1 << 20
)

// TooLargeError is a file larger than its limit.
type TooLargeError struct {
	Name string // the file (or "standard input")
	Max  int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s is larger than %d bytes (%d MiB), the most accepted", e.Name, e.Max, e.Max>>20)
}

// Read reads the file at path, at most max bytes; a longer file is a *TooLargeError.
func Read(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadAll(f, path, max)
}

// ReadAll reads r, named name in errors, at most max bytes; more is a *TooLargeError.
func ReadAll(r io.Reader, name string, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, &TooLargeError{Name: name, Max: max}
	}
	return b, nil
}
