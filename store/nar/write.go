package nar

import (
	"bufio"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/runpod-comfy/runpod-comfy/store/nixbase32"
)

// Magic is the first string of every NAR.
const Magic = "nix-archive-1"

var zeros [8]byte

// File is one node of a tree as HashFiles lists it.
type File struct {
	// Path is relative to the root with '/' separators; "" is the root itself.
	Path string `json:"path"`
	// Type is "regular", "executable", "symlink" or "directory".
	Type string `json:"type"`
	// Size is the content length of a regular file.
	Size int64 `json:"size,omitempty"`
	// SHA256 is the lowercase hex sha256 of a regular file's content.
	SHA256 string `json:"sha256,omitempty"`
	// Target is a symlink's target.
	Target string `json:"target,omitempty"`
}

type dumper struct {
	w     *bufio.Writer
	n     int64
	buf   []byte
	files *[]File
	fh    hash.Hash
	jobs  chan *prefetch
	buf2  []byte // second buffer of copyTwoHashes
}

// Small files are read ahead by a few goroutines while the dumper serialises and hashes in
// NAR order, so that system calls and hashing overlap (on many small files the syscalls
// dominate). Files up to prefetchMax bytes are read whole; at most prefetchWindow entries
// ahead per directory.
const (
	prefetchMax     = 64 << 10
	prefetchWindow  = 32
	prefetchWorkers = 3
)

type prefetch struct {
	path string
	ok   bool // a regular file was opened: exec and size are set
	exec bool
	size int64
	data []byte // nil when the file is larger than prefetchMax: read it in order
	err  error
	done chan struct{}
}

// prefetchWorker reads regular files with raw system calls (open, fstat, read, close): on a
// tree of small files the calls, not the hashing, are the cost.
func prefetchWorker(jobs <-chan *prefetch) {
	for j := range jobs {
		j.read()
		close(j.done)
	}
}

func (j *prefetch) read() {
	fd, err := unix.Open(j.path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return // not a plain file after all (or gone): the dumper looks again itself
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return
	}
	j.ok, j.exec, j.size = true, st.Mode&0o100 != 0, st.Size
	if st.Size > prefetchMax {
		return
	}
	buf := make([]byte, st.Size)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			j.err = &fs.PathError{Op: "read", Path: j.path, Err: err}
			return
		}
		if m == 0 {
			break
		}
		n += m
	}
	if n != len(buf) {
		j.err = fmt.Errorf("nar: %s changed while being read (%d of %d bytes)", j.path, n, len(buf))
		return
	}
	j.data = buf
}

func (d *dumper) write(b []byte) error {
	n, err := d.w.Write(b)
	d.n += int64(n)
	return err
}

func (d *dumper) str(s string) error {
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(len(s)))
	if err := d.write(l[:]); err != nil {
		return err
	}
	if _, err := d.w.WriteString(s); err != nil {
		return err
	}
	d.n += int64(len(s))
	return d.pad(int64(len(s)))
}

func (d *dumper) pad(n int64) error {
	if r := n % 8; r != 0 {
		return d.write(zeros[:8-r])
	}
	return nil
}

func (d *dumper) strs(ss ...string) error {
	for _, s := range ss {
		if err := d.str(s); err != nil {
			return err
		}
	}
	return nil
}

// Dump writes the NAR serialisation of path (a regular file, a symlink or a directory) to w.
// Sockets, FIFOs and devices are an error.
func Dump(w io.Writer, path string) error {
	_, err := dump(w, path, nil)
	return err
}

func dump(w io.Writer, path string, files *[]File) (int64, error) {
	d := &dumper{w: bufio.NewWriterSize(w, 64<<10), buf: make([]byte, 1<<20), files: files, jobs: make(chan *prefetch, prefetchWindow)}
	if files != nil {
		d.fh = sha256.New()
	}
	for i := 0; i < prefetchWorkers; i++ {
		go prefetchWorker(d.jobs)
	}
	defer close(d.jobs)
	if err := d.str(Magic); err != nil {
		return 0, err
	}
	if err := d.node(path, "", nil); err != nil {
		return 0, err
	}
	if err := d.w.Flush(); err != nil {
		return 0, err
	}
	return d.n, nil
}

func (d *dumper) node(path, rel string, pre *prefetch) error {
	if pre != nil {
		<-pre.done
		if pre.err != nil {
			return pre.err
		}
		if pre.ok {
			return d.regular(path, rel, pre.size, pre.exec, pre.data)
		}
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("nar: %w", err)
	}
	if fi.Mode().IsRegular() {
		return d.regular(path, rel, fi.Size(), fi.Mode()&0o100 != 0, nil)
	}
	if err := d.strs("(", "type"); err != nil {
		return err
	}
	switch m := fi.Mode(); {
	case m&fs.ModeSymlink != 0:
		target, err := os.Readlink(path)
		if err != nil {
			return fmt.Errorf("nar: %w", err)
		}
		if err := d.strs("symlink", "target", target); err != nil {
			return err
		}
		if d.files != nil {
			*d.files = append(*d.files, File{Path: rel, Type: "symlink", Target: target})
		}
	case m.IsDir():
		if err := d.str("directory"); err != nil {
			return err
		}
		if d.files != nil {
			*d.files = append(*d.files, File{Path: rel, Type: "directory"})
		}
		ents, err := os.ReadDir(path)
		if err != nil {
			return fmt.Errorf("nar: %w", err)
		}
		// os.ReadDir sorts by name, which is byte order, as NAR requires.
		sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
		pres := make([]*prefetch, len(ents))
		submitted := 0
		for i, e := range ents {
			for ; submitted < len(ents) && submitted < i+prefetchWindow; submitted++ {
				if ents[submitted].Type().IsRegular() {
					pres[submitted] = &prefetch{path: filepath.Join(path, ents[submitted].Name()), done: make(chan struct{})}
					d.jobs <- pres[submitted]
				}
			}
			name := e.Name()
			if err := d.strs("entry", "(", "name", name, "node"); err != nil {
				return err
			}
			crel := name
			if rel != "" {
				crel = rel + "/" + name
			}
			err := d.node(filepath.Join(path, name), crel, pres[i])
			pres[i] = nil
			if err != nil {
				for _, p := range pres[i:submitted] { // let the workers finish what was queued
					if p != nil {
						<-p.done
					}
				}
				return err
			}
			if err := d.str(")"); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("nar: %s: unsupported file type %s (only regular files, symlinks and directories)", path, m.Type())
	}
	return d.str(")")
}

// regular writes a regular file node: "(" type regular [executable ""] contents <bytes> ")".
func (d *dumper) regular(path, rel string, size int64, exec bool, data []byte) error {
	if err := d.strs("(", "type", "regular"); err != nil {
		return err
	}
	if exec {
		if err := d.strs("executable", ""); err != nil {
			return err
		}
	}
	if err := d.str("contents"); err != nil {
		return err
	}
	if err := d.contents(path, rel, size, exec, data); err != nil {
		return err
	}
	return d.str(")")
}

func (d *dumper) contents(path, rel string, size int64, exec bool, data []byte) error {
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(size))
	if err := d.write(l[:]); err != nil {
		return err
	}
	var dst io.Writer = d.w
	if d.fh != nil {
		d.fh.Reset()
		dst = io.MultiWriter(d.w, d.fh)
	}
	var n int64
	if data != nil {
		if _, err := dst.Write(data); err != nil {
			return err
		}
		n = int64(len(data))
		d.n += n
	} else {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("nar: %w", err)
		}
		defer f.Close()
		if d.fh != nil && size > prefetchMax {
			n, err = d.copyTwoHashes(f, size)
		} else {
			n, err = io.CopyBuffer(dst, io.LimitReader(f, size), d.buf)
		}
		d.n += n
		if err != nil {
			return fmt.Errorf("nar: reading %s: %w", path, err)
		}
	}
	if n != size {
		return fmt.Errorf("nar: %s changed while being read (%d of %d bytes)", path, n, size)
	}
	if d.files != nil {
		typ := "regular"
		if exec {
			typ = "executable"
		}
		*d.files = append(*d.files, File{Path: rel, Type: typ, Size: size, SHA256: hex.EncodeToString(d.fh.Sum(nil))})
	}
	return d.pad(size)
}

// copyTwoHashes copies a large file into the NAR stream while a second goroutine computes
// the file's own sha256 from the same buffers, so the two hashes use both cores. Two buffers
// alternate; one is never refilled before the file hasher is done with it.
func (d *dumper) copyTwoHashes(f *os.File, size int64) (int64, error) {
	if d.buf2 == nil {
		d.buf2 = make([]byte, len(d.buf))
	}
	bufs := [2][]byte{d.buf, d.buf2}
	work := make(chan []byte, 2)
	ack := make(chan struct{}, 2)
	go func() {
		for b := range work {
			d.fh.Write(b)
			ack <- struct{}{}
		}
	}()
	inflight := 0
	defer func() {
		close(work)
		for ; inflight > 0; inflight-- {
			<-ack
		}
	}()
	var n int64
	for i := 0; n < size; i ^= 1 {
		if inflight == 2 {
			<-ack
			inflight--
		}
		b := bufs[i]
		if left := size - n; left < int64(len(b)) {
			b = b[:left]
		}
		m, err := io.ReadFull(f, b)
		if m > 0 {
			work <- b[:m]
			inflight++
			if _, werr := d.w.Write(b[:m]); werr != nil {
				return n, werr
			}
			n += int64(m)
		}
		if err != nil {
			if err == io.ErrUnexpectedEOF || err == io.EOF {
				return n, nil // short: the caller reports the change of size
			}
			return n, err
		}
	}
	return n, nil
}

// HashString formats a sha256 sum as "sha256:<nix32>".
func HashString(sum []byte) string { return "sha256:" + nixbase32.Encode(sum) }

// Hash returns the NAR hash ("sha256:<nix32>") and the NAR size of path.
func Hash(path string) (narHash string, size int64, err error) {
	h := sha256.New()
	n, err := dump(h, path, nil)
	if err != nil {
		return "", 0, err
	}
	return HashString(h.Sum(nil)), n, nil
}

// HashFiles is Hash that also lists every node of the tree, in NAR order, with the sha256 of
// each regular file's content. Reading happens once; the content is hashed twice.
func HashFiles(path string) (narHash string, size int64, files []File, err error) {
	h := sha256.New()
	files = []File{}
	n, err := dump(h, path, &files)
	if err != nil {
		return "", 0, nil, err
	}
	return HashString(h.Sum(nil)), n, files, nil
}

// FileNarSize returns the NAR size of a single regular file of size bytes: 112 + roundup8(size),
// or 144 + roundup8(size) when executable.
func FileNarSize(size int64, executable bool) int64 {
	n := 112 + (size+7)/8*8
	if executable {
		n += 32
	}
	return n
}

// FileHeader returns the NAR bytes that precede the content of a single regular file of size
// bytes. Hashing FileHeader, the content and FileTrailer gives the NAR hash while streaming.
func FileHeader(size int64, executable bool) []byte {
	var b bytesWriter
	d := &dumper{w: bufio.NewWriter(&b)}
	d.strs(Magic, "(", "type", "regular")
	if executable {
		d.strs("executable", "")
	}
	d.str("contents")
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(size))
	d.write(l[:])
	d.w.Flush()
	return b
}

// FileTrailer returns the NAR bytes that follow the content of a single regular file of size
// bytes: the zero padding and the closing ")".
func FileTrailer(size int64) []byte {
	var b bytesWriter
	d := &dumper{w: bufio.NewWriter(&b)}
	d.pad(size)
	d.str(")")
	d.w.Flush()
	return b
}

type bytesWriter []byte

func (b *bytesWriter) Write(p []byte) (int, error) { *b = append(*b, p...); return len(p), nil }

// FileHasher computes the NAR hash of a single regular file while its content streams
// through Write, so that a file is hashed as it is downloaded or read for another hash, not
// read a second time. It is a hash.Hash over the whole NAR (FileHeader is already in it);
// MarshalBinary and UnmarshalBinary save and restore that state, so a resumed download
// continues the same hash. Finish appends FileTrailer and returns the NAR hash.
type FileHasher struct {
	hash.Hash
	size int64
	exec bool
	n    int64 // content bytes written since NewFileHasher or UnmarshalBinary
	// restored: the state came from UnmarshalBinary, so n does not count the content before
	// it and Finish cannot check the length (the caller vouches for it).
	restored bool
}

// NewFileHasher returns a FileHasher for a regular file of size bytes.
func NewFileHasher(size int64, executable bool) *FileHasher {
	f := &FileHasher{Hash: sha256.New(), size: size, exec: executable}
	f.Hash.Write(FileHeader(size, executable))
	return f
}

// Write hashes content bytes.
func (f *FileHasher) Write(p []byte) (int, error) {
	f.n += int64(len(p))
	return f.Hash.Write(p)
}

// MarshalBinary returns the state of the NAR hash.
func (f *FileHasher) MarshalBinary() ([]byte, error) {
	return f.Hash.(encoding.BinaryMarshaler).MarshalBinary()
}

// UnmarshalBinary restores a state MarshalBinary returned for a file of the same size.
func (f *FileHasher) UnmarshalBinary(b []byte) error {
	f.n, f.restored = 0, true
	return f.Hash.(encoding.BinaryUnmarshaler).UnmarshalBinary(b)
}

// Finish ends the NAR and returns its hash ("sha256:<nix32>") and size. It is an error when
// the content written differs from the announced size. The FileHasher is done afterwards.
func (f *FileHasher) Finish() (narHash string, narSize int64, err error) {
	if !f.restored && f.n != f.size {
		return "", 0, fmt.Errorf("nar: %d content bytes hashed for a file of %d", f.n, f.size)
	}
	f.Hash.Write(FileTrailer(f.size))
	return HashString(f.Hash.Sum(nil)), FileNarSize(f.size, f.exec), nil
}
