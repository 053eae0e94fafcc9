package nar

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Type is the type of a NAR node.
type Type string

// The node types of a NAR.
const (
	TypeRegular   Type = "regular"
	TypeSymlink   Type = "symlink"
	TypeDirectory Type = "directory"
)

// Limits the Reader enforces.
const (
	MaxNameLen   = 255
	MaxTargetLen = 4095
	MaxDepth     = 256
)

// Header is one node of a NAR.
type Header struct {
	// Path is absolute inside the archive: "/" for the root, then "/a", "/a/b".
	Path       string
	Type       Type
	Size       int64 // content length of a regular file
	Executable bool
	LinkTarget string
}

// ErrFormat is wrapped by every error about malformed NAR input.
var ErrFormat = errors.New("malformed NAR")

type frame struct {
	path string
	prev string
}

// Reader reads a NAR node by node. Next returns each node's Header in NAR order; for a regular
// file, Read returns its content. It rejects names that are empty, ".", "..", hold '/' or NUL,
// are longer than 255 bytes, or are not strictly after the previous name in the directory.
type Reader struct {
	r         *bufio.Reader
	started   bool
	done      bool
	stack     []frame
	remaining int64 // unread content of the current regular file
	inFile    bool
	fileSize  int64
	err       error
	scratch   []byte // backing array of readBytes
}

// NewReader returns a Reader reading a NAR from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10)}
}

func (r *Reader) fail(format string, args ...any) error {
	r.err = fmt.Errorf("%w: "+format, append([]any{ErrFormat}, args...)...)
	return r.err
}

func (r *Reader) readStr(max int, what string) (string, error) {
	b, err := r.readBytes(max, what, false)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// readBytes reads one padded string into r.scratch, valid until the next call. When quote is
// set, what is a token, quoted in error messages (only then, so that no call allocates).
func (r *Reader) readBytes(max int, what string, quote bool) ([]byte, error) {
	var l [8]byte
	if _, err := io.ReadFull(r.r, l[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, r.fail("unexpected end reading %s", describe(what, quote))
		}
		r.err = err
		return nil, err
	}
	n := binary.LittleEndian.Uint64(l[:])
	if n > uint64(max) {
		return nil, r.fail("%s of %d bytes is longer than %d", describe(what, quote), n, max)
	}
	padded := int((n + 7) / 8 * 8)
	if cap(r.scratch) < padded {
		r.scratch = make([]byte, padded)
	}
	b := r.scratch[:padded]
	if _, err := io.ReadFull(r.r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, r.fail("unexpected end reading %s", describe(what, quote))
		}
		r.err = err
		return nil, err
	}
	for _, c := range b[n:] {
		if c != 0 {
			return nil, r.fail("non-zero padding after %s", describe(what, quote))
		}
	}
	return b[:n], nil
}

func describe(what string, quote bool) string {
	if quote {
		return strconv.Quote(what)
	}
	return what
}

func (r *Reader) expect(tokens ...string) error {
	for _, t := range tokens {
		b, err := r.readBytes(64, t, true)
		if err != nil {
			return err
		}
		if string(b) != t {
			return r.fail("expected %q, found %q", t, b)
		}
	}
	return nil
}

// Next advances to the next node and returns its header; io.EOF after the last one.
func (r *Reader) Next() (*Header, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.inFile {
		if _, err := io.CopyN(io.Discard, r, r.remaining); err != nil {
			return nil, err
		}
		if err := r.endFile(); err != nil {
			return nil, err
		}
	}
	if !r.started {
		r.started = true
		if err := r.expect(Magic); err != nil {
			return nil, err
		}
		return r.node("/")
	}
	for {
		if len(r.stack) == 0 {
			if !r.done {
				r.done = true
				if _, err := r.r.ReadByte(); err != io.EOF {
					return nil, r.fail("trailing data after the root node")
				}
			}
			r.err = io.EOF
			return nil, io.EOF
		}
		top := &r.stack[len(r.stack)-1]
		tok, err := r.readBytes(64, "directory entry", false)
		if err != nil {
			return nil, err
		}
		switch string(tok) {
		case ")":
			r.stack = r.stack[:len(r.stack)-1]
			if err := r.closeNode(); err != nil {
				return nil, err
			}
		case "entry":
			if err := r.expect("(", "name"); err != nil {
				return nil, err
			}
			name, err := r.readStr(MaxNameLen, "entry name")
			if err != nil {
				return nil, err
			}
			if err := checkName(name); err != nil {
				return nil, r.fail("in %s: %v", top.path, err)
			}
			if top.prev != "" && name <= top.prev {
				return nil, r.fail("in %s: entry %q is not after %q (duplicate or out of order)", top.path, name, top.prev)
			}
			top.prev = name
			if err := r.expect("node"); err != nil {
				return nil, err
			}
			p := top.path + "/" + name
			if top.path == "/" {
				p = "/" + name
			}
			return r.node(p)
		default:
			return nil, r.fail("in %s: expected \"entry\" or \")\", found %q", top.path, tok)
		}
	}
}

func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("empty entry name")
	case name == "." || name == "..":
		return fmt.Errorf("entry name %q not allowed", name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("entry name %q holds '/' or NUL", name)
	}
	return nil
}

// closeNode is called after a node's closing ")": inside a directory, the entry's ")" follows.
func (r *Reader) closeNode() error {
	if len(r.stack) == 0 {
		return nil
	}
	return r.expect(")")
}

func (r *Reader) node(path string) (*Header, error) {
	if len(r.stack) >= MaxDepth {
		return nil, r.fail("%s: deeper than %d directories", path, MaxDepth)
	}
	if err := r.expect("(", "type"); err != nil {
		return nil, err
	}
	t, err := r.readStr(64, "node type")
	if err != nil {
		return nil, err
	}
	h := &Header{Path: path, Type: Type(t)}
	switch Type(t) {
	case TypeRegular:
		tok, err := r.readStr(64, "regular file field")
		if err != nil {
			return nil, err
		}
		if tok == "executable" {
			if err := r.expect(""); err != nil {
				return nil, err
			}
			h.Executable = true
			if tok, err = r.readStr(64, "regular file field"); err != nil {
				return nil, err
			}
		}
		if tok != "contents" {
			return nil, r.fail("%s: expected \"contents\", found %q", path, tok)
		}
		var l [8]byte
		if _, err := io.ReadFull(r.r, l[:]); err != nil {
			return nil, r.fail("%s: unexpected end reading the content length", path)
		}
		n := binary.LittleEndian.Uint64(l[:])
		if n > 1<<62 {
			return nil, r.fail("%s: content length %d too large", path, n)
		}
		h.Size = int64(n)
		r.inFile, r.remaining, r.fileSize = true, h.Size, h.Size
		return h, nil
	case TypeSymlink:
		if err := r.expect("target"); err != nil {
			return nil, err
		}
		target, err := r.readStr(MaxTargetLen, "symlink target")
		if err != nil {
			return nil, err
		}
		if target == "" || strings.ContainsRune(target, 0) {
			return nil, r.fail("%s: symlink target is empty or holds NUL", path)
		}
		h.LinkTarget = target
		if err := r.expect(")"); err != nil {
			return nil, err
		}
		if err := r.closeNode(); err != nil {
			return nil, err
		}
		return h, nil
	case TypeDirectory:
		r.stack = append(r.stack, frame{path: path})
		return h, nil
	default:
		return nil, r.fail("%s: unknown node type %q", path, t)
	}
}

// Read reads the content of the current regular file.
func (r *Reader) Read(p []byte) (int, error) {
	if !r.inFile {
		return 0, io.EOF
	}
	if r.remaining == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.remaining {
		p = p[:r.remaining]
	}
	n, err := r.r.Read(p)
	r.remaining -= int64(n)
	if err == io.EOF {
		if r.remaining > 0 {
			return n, r.fail("unexpected end inside file content")
		}
		err = nil
	}
	return n, err
}

func (r *Reader) endFile() error {
	r.inFile = false
	if pad := r.fileSize % 8; pad != 0 {
		var b [8]byte
		if _, err := io.ReadFull(r.r, b[:8-pad]); err != nil {
			return r.fail("unexpected end reading padding")
		}
		for _, c := range b[:8-pad] {
			if c != 0 {
				return r.fail("non-zero padding after file content")
			}
		}
	}
	if err := r.expect(")"); err != nil {
		return err
	}
	return r.closeNode()
}
