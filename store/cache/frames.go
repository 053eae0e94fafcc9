package cache

import (
	"errors"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// frameSize is the uncompressed size of each zstd frame of a pushed NAR. Frames are
// compressed independently, on all cores; at 8 MiB (SpeedDefault's window) the ratio is the
// same as one frame's. A zstd stream of several frames decompresses as one (zstd -d and Nix
// read it too).
const frameSize = 8 << 20

// frameWriter compresses what is written to it as a sequence of independent zstd frames,
// up to `parallel` at once, and writes them to w in order. Close flushes and waits: it is the
// end of every goroutine frameWriter starts.
type frameWriter struct {
	w       io.Writer
	enc     *zstd.Encoder
	buf     []byte
	pending chan chan []byte // compressed frames, in order
	done    chan struct{}    // closed when the writing goroutine has ended

	mu     sync.Mutex
	err    error
	closed bool
}

func newFrameWriter(w io.Writer, level zstd.EncoderLevel, parallel int) (*frameWriter, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(parallel))
	if err != nil {
		return nil, err
	}
	f := &frameWriter{w: w, enc: enc, buf: make([]byte, 0, frameSize),
		pending: make(chan chan []byte, parallel), done: make(chan struct{})}
	go f.writeLoop()
	return f, nil
}

func (f *frameWriter) writeLoop() {
	defer close(f.done)
	for res := range f.pending {
		frame := <-res
		if f.failed() != nil {
			continue // keep draining so compressors never block
		}
		if _, err := f.w.Write(frame); err != nil {
			f.fail(err)
		}
	}
}

func (f *frameWriter) failed() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *frameWriter) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

// flush hands the buffered bytes to a compressor goroutine.
func (f *frameWriter) flush() {
	if len(f.buf) == 0 {
		return
	}
	src := f.buf
	f.buf = make([]byte, 0, frameSize)
	res := make(chan []byte, 1)
	f.pending <- res // blocks while `parallel` frames are in flight
	go func() { res <- f.enc.EncodeAll(src, nil) }()
}

func (f *frameWriter) Write(p []byte) (int, error) {
	if f.closed {
		return 0, errors.New("write after close")
	}
	n := 0
	for len(p) > 0 {
		if err := f.failed(); err != nil {
			return n, err
		}
		k := min(len(p), frameSize-len(f.buf))
		f.buf = append(f.buf, p[:k]...)
		p, n = p[k:], n+k
		if len(f.buf) == frameSize {
			f.flush()
		}
	}
	return n, nil
}

// Close compresses the rest, waits for every frame to be written and returns the first error.
func (f *frameWriter) Close() error {
	if f.closed {
		return f.failed()
	}
	f.closed = true
	if f.failed() == nil {
		f.flush()
	}
	close(f.pending)
	<-f.done
	f.enc.Close()
	return f.failed()
}
