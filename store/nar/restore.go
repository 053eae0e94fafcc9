package nar

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/runpod-comfy/runpod-comfy/internal/rawfile"
)

// Restore tuning: regular files up to smallFile bytes are read into a pooled buffer by the
// parser and written by one of restoreWriters goroutines; larger ones are written by the parser
// itself. At most maxInFlight bytes of file contents wait for or are in a writer.
const (
	restoreWriters = 4
	smallFile      = 1 << 20
	maxInFlight    = 16 << 20
	copyBufSize    = 1 << 20
)

// fileJob is one regular file for a writer: its absolute path, mode and whole contents.
type fileJob struct {
	path string
	perm uint32
	buf  *[]byte // pooled; len is the content length
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// Restore unpacks the NAR read from r at dst, which must not exist. Files get mode 0644, or
// 0755 when executable; directories 0755 (both less the umask). The NAR is parsed in order on
// the calling goroutine, which creates directories and symlinks and writes large files; small
// files are handed with their contents to a few writer goroutines, as creating a file costs
// more than reading it. Restore returns after every write has finished; the first error stops
// the rest. On error, dst may hold a partial tree: callers restore into a staging path. Nothing
// is synced: the caller syncs the finished tree.
func Restore(r io.Reader, dst string) error {
	w := newRestorer()
	perr := w.parse(NewReader(r), dst)
	if perr != nil && !errors.Is(perr, errStopped) {
		w.stop(perr) // the writers skip what is still queued
	}
	werr := w.wait()
	if perr != nil && !errors.Is(perr, errStopped) {
		return fmt.Errorf("restoring NAR: %w", perr)
	}
	if werr != nil {
		return fmt.Errorf("restoring NAR: %w", werr)
	}
	return nil
}

// errStopped is the parser's error when it stopped because a writer failed.
var errStopped = errors.New("stopped after a write failed")

type restorer struct {
	jobs chan fileJob
	wg   sync.WaitGroup

	mu       sync.Mutex
	cond     *sync.Cond // signalled when inFlight falls or err is set
	inFlight int
	err      error // first writer error
}

func newRestorer() *restorer {
	w := &restorer{jobs: make(chan fileJob, maxInFlight/(64<<10))}
	w.cond = sync.NewCond(&w.mu)
	w.wg.Add(restoreWriters)
	for range restoreWriters {
		go w.writer()
	}
	return w
}

// wait closes the queue and waits for the writers; it returns the first writer error.
func (w *restorer) wait() error {
	close(w.jobs)
	w.wg.Wait()
	return w.err
}

func (w *restorer) writer() {
	defer w.wg.Done()
	for j := range w.jobs {
		w.mu.Lock()
		failed := w.err != nil
		w.mu.Unlock()
		var err error
		if !failed {
			err = rawfile.WriteFile(j.path, j.perm, *j.buf)
		}
		n := len(*j.buf)
		*j.buf = (*j.buf)[:0]
		bufPool.Put(j.buf)
		w.mu.Lock()
		w.inFlight -= n
		if err != nil && w.err == nil {
			w.err = err
		}
		w.cond.Broadcast()
		w.mu.Unlock()
	}
}

// reserve waits until n more bytes may be in flight; it fails once a writer has failed.
func (w *restorer) reserve(n int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.err == nil && w.inFlight > 0 && w.inFlight+n > maxInFlight {
		w.cond.Wait()
	}
	if w.err != nil {
		return errStopped
	}
	w.inFlight += n
	return nil
}

// stop makes the writers skip the jobs still queued.
func (w *restorer) stop(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.cond.Broadcast()
	w.mu.Unlock()
}

// failed reports whether a writer has failed.
func (w *restorer) failed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err != nil
}

func (w *restorer) parse(nr *Reader, dst string) error {
	var copyBuf []byte
	for {
		h, err := nr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		p := dst
		if h.Path != "/" {
			p = dst + h.Path // h.Path is "/a/b" built from checked names
		}
		switch h.Type {
		case TypeDirectory:
			if w.failed() {
				return errStopped
			}
			if err := unix.Mkdir(p, 0o755); err != nil {
				return &os.PathError{Op: "mkdir", Path: p, Err: err}
			}
		case TypeSymlink:
			if err := unix.Symlink(h.LinkTarget, p); err != nil {
				return &os.LinkError{Op: "symlink", Old: h.LinkTarget, New: p, Err: err}
			}
		case TypeRegular:
			perm := uint32(0o644)
			if h.Executable {
				perm = 0o755
			}
			if h.Size > smallFile {
				if copyBuf == nil {
					copyBuf = make([]byte, copyBufSize)
				}
				if err := rawfile.CopyN(p, perm, nr, h.Size, copyBuf); err != nil {
					return err
				}
				continue
			}
			n := int(h.Size)
			if err := w.reserve(n); err != nil {
				return err
			}
			bp := bufPool.Get().(*[]byte)
			if cap(*bp) < n {
				*bp = make([]byte, n)
			}
			*bp = (*bp)[:n]
			if _, err := io.ReadFull(nr, *bp); err != nil {
				*bp = (*bp)[:0]
				bufPool.Put(bp)
				w.mu.Lock()
				w.inFlight -= n
				w.mu.Unlock()
				return fmt.Errorf("%s: %w", h.Path, err)
			}
			w.jobs <- fileJob{path: p, perm: perm, buf: bp}
		}
	}
}
