// Package rawfile creates files with raw system calls (open, write, close): no fsync and no
// poller registration, which os.OpenFile tries for every regular file. Exporting a git tree
// and restoring a NAR create thousands of small files, where that cost shows.
package rawfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// open creates p, which must not exist, for writing with mode perm (less the umask). A file
// made read-only this way can still be written through the returned descriptor.
func open(p string, perm uint32) (int, error) {
	fd, err := unix.Open(p, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return fd, nil
}

// WriteFile creates p with mode perm and contents b.
func WriteFile(p string, perm uint32, b []byte) error {
	fd, err := open(p, perm)
	if err != nil {
		return err
	}
	if err := writeAll(fd, b); err != nil {
		unix.Close(fd)
		return &os.PathError{Op: "write", Path: p, Err: err}
	}
	return closeFile(fd, p)
}

// CopyN creates p with mode perm and the next size bytes of r, read through buf. A short r
// fails with an error wrapping io.ErrUnexpectedEOF (or io.EOF when r gave nothing).
func CopyN(p string, perm uint32, r io.Reader, size int64, buf []byte) error {
	fd, err := open(p, perm)
	if err != nil {
		return err
	}
	for size > 0 {
		chunk := buf
		if int64(len(chunk)) > size {
			chunk = chunk[:size]
		}
		n, rerr := io.ReadFull(r, chunk)
		if n > 0 {
			if werr := writeAll(fd, chunk[:n]); werr != nil {
				unix.Close(fd)
				return &os.PathError{Op: "write", Path: p, Err: werr}
			}
			size -= int64(n)
		}
		if rerr != nil {
			unix.Close(fd)
			return fmt.Errorf("%s: %w", p, rerr)
		}
	}
	return closeFile(fd, p)
}

// CopyFile creates dst, which must not exist, with mode perm and the bytes of the regular
// file src, as src's size was when it was opened. On failure dst is removed. Like the rest of
// this package it does not fsync: callers that need durability sync dst (or its whole tree)
// themselves.
func CopyFile(dst, src string, perm uint32) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("copying %s: not a regular file", src)
	}
	if err := CopyN(dst, perm, in, fi.Size(), make([]byte, min(fi.Size(), 1<<20)+1)); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			os.Remove(dst)
		}
		return err
	}
	return nil
}

func closeFile(fd int, p string) error {
	if err := unix.Close(fd); err != nil {
		return &os.PathError{Op: "close", Path: p, Err: err}
	}
	return nil
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		b = b[n:]
	}
	return nil
}
