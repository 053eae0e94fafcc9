package model

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runpod-comfy/runpod-comfy/internal/progress"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

// Parallel range downloads.
//
// A file is downloaded over several connections when its server proves that it serves
// ranges: the first request of a try asks for "bytes=<offset>-" and the answer is a 206 whose
// Content-Range starts there and names the file's size, with a strong ETag (or a
// Last-Modified) to pin the file by. The rest of the file is then cut into pieces of
// pieceSize bytes, claimed in order by workers, each asking for its piece with
// "Range: bytes=a-b" and "If-Range: <validator>" (the first worker takes its first piece
// from the first answer's body). Each piece lands in a buffer of a pool shared by the
// Fetcher's downloads (rangeMemory in all); the hash front (the partial's offset) absorbs the
// pieces in order as the gap before them fills: written to the partial file and fed to the
// content hash and the NAR hash from the buffer, so nothing is read back. The partial file
// stays a prefix of the file, so a checkpoint and a resume work as for one stream; the
// pieces ahead of the front are lost on a crash (at most rangeMemory bytes).
//
// The number of connections adapts: a download starts with startConnections and, every
// tuneEvery, grows while the throughput grows by more than a tenth; when a step brought no
// gain it goes back to the best count and stays there. Every connection past the first comes
// from the Fetcher's budget (Options.ConnectionBudget), shared by all its downloads, and is
// taken only when free: several downloads at once never exceed the budget.
//
// A server that answers a piece with anything but the exact range asked for (a 200, another
// Content-Range, another length, more bytes than the range, no validator) is not trusted with
// ranges again in this download: it continues over one connection from the front. A piece
// whose validator or size changed restarts the download from byte 0. A short body is retried
// from where it stopped, with the Fetcher's retry policy.

const (
	// DefaultConnections is the default cap on the connections one file is downloaded over.
	DefaultConnections = 8
	// MaxConnections is the largest cap Options.Connections may set.
	MaxConnections = specs.MaxDownloadConnections
	// startConnections is how many connections a ranged download starts with.
	startConnections = 4
	// defaultPieceSize is the size of one range request.
	defaultPieceSize = 4 << 20
	// rangeMemory bounds the bytes held ahead of the hash front, over all the downloads of
	// a Fetcher.
	rangeMemory = 64 << 20
	// tuneEvery is how often the connection count is reconsidered.
	tuneEvery = 500 * time.Millisecond
)

// noRangesError is a server that does not serve ranges as it claims; the download goes on
// over one connection.
type noRangesError struct{ reason string }

func (e *noRangesError) Error() string {
	return "the server does not serve ranges reliably: " + e.reason
}

// changedError is a file that changed at the source while it was downloaded (another
// validator or size): the download starts again from byte 0.
type changedError struct{ reason string }

func (e *changedError) Error() string        { return "the file changed at the source: " + e.reason }
func (e *changedError) Is(target error) bool { return target == errRestart }

// bufPool is the pool of piece buffers of a Fetcher: at most n buffers of size bytes exist.
type bufPool struct {
	size int64
	free chan []byte
	mu   sync.Mutex
	made int
	n    int
}

func newBufPool(size int64, n int) *bufPool {
	return &bufPool{size: size, n: n, free: make(chan []byte, n)}
}

// get returns a buffer, waiting for one when all n are in use.
func (bp *bufPool) get(ctx context.Context) ([]byte, error) {
	select {
	case b := <-bp.free:
		return b, nil
	default:
	}
	bp.mu.Lock()
	if bp.made < bp.n {
		bp.made++
		bp.mu.Unlock()
		return make([]byte, bp.size), nil
	}
	bp.mu.Unlock()
	select {
	case b := <-bp.free:
		return b, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func (bp *bufPool) put(b []byte) { bp.free <- b[:cap(b)] }

// connBudget is the Fetcher's budget of connections, shared by its downloads.
type connBudget chan struct{}

func (c connBudget) tryAcquire() bool {
	select {
	case c <- struct{}{}:
		return true
	default:
		return false
	}
}

func (c connBudget) release() { <-c }

// parallelOK reports whether the answer o to the first request of a try lets the rest of
// the file be fetched in ranges: a 206 from the partial's offset to the end of a file of
// known size, pinned by a validator, with more than two pieces left. A 200 with the whole file
// and "Accept-Ranges: bytes" (some servers answer "bytes=0-" so, as it covers the file) is
// taken at its word too: its first piece request is then the proof, and a server that does
// not honour it falls back to one connection.
func (f *Fetcher) parallelOK(p *partial, o *opened) bool {
	whole := o.ranged || (o.acceptRanges && o.start == 0 && o.length == o.total)
	if whole && !o.ranged {
		o.end = o.total
	}
	return whole && o.again != nil && o.start == p.offset && o.total > 0 && o.end == o.total &&
		(o.length < 0 || o.length == o.total-o.start) &&
		p.validator != "" && o.validator == p.validator && p.total == o.total &&
		o.total-o.start > 2*f.pieceSize
}

// piece is a filled buffer: the bytes of the file from start on.
type piece struct {
	start int64
	buf   []byte
}

// rangeRun is one ranged try of a download.
type rangeRun struct {
	f         *Fetcher
	open      opener
	red       string
	total     int64
	validator string

	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan piece
	wg     sync.WaitGroup
	recv   atomic.Int64 // bytes received by the workers

	mu      sync.Mutex
	next    int64 // next offset to claim
	workers int   // running
	target  int   // wanted
}

// receiveRanges fetches the rest of the file in ranges, starting with the body of o (the
// answer to "bytes=<offset>-", which parallelOK accepted), and absorbs the pieces in order
// into p.
func (f *Fetcher) receiveRanges(ctx context.Context, p *partial, o *opened, red string, task *progress.Task) error {
	rctx, cancel := context.WithCancelCause(ctx)
	r := &rangeRun{f: f, open: o.again, red: red, total: o.total, validator: p.validator,
		ctx: rctx, cancel: cancel, done: make(chan piece, f.pool.n), next: p.offset}
	first := *o
	first.body = &onceCloser{ReadCloser: o.body}
	o.body = first.body // download closes it again, harmlessly
	// The first answer was requested with ctx, not rctx: end its read when the run is cancelled
	// (another piece failed), or a stalled first connection would hold the run forever.
	stop := context.AfterFunc(rctx, func() { first.body.Close() })
	defer stop()
	// The first piece is the first answer's: claimed here, before any other worker runs.
	buf, err := f.pool.get(rctx)
	if err != nil {
		cancel(nil)
		return err
	}
	r.target, r.workers = 1, 1
	fs, fe, _ := r.claim()
	r.wg.Add(1)
	go r.worker(&first, false, &piece{start: fs, buf: buf[:fe-fs]})
	r.grow(min(startConnections, f.perFile), task)

	start := p.offset
	pending := map[int64][]byte{}
	tick := time.NewTicker(tuneEvery)
	tn := tuner{cap: f.perFile, lastT: time.Now()}
	for err == nil && p.offset < r.total {
		select {
		case pc := <-r.done:
			pending[pc.start] = pc.buf
		case now := <-tick.C:
			if task != nil {
				task.SetBytes(min(start+r.recv.Load(), r.total), r.total)
			}
			if n := tn.step(now, r.recv.Load(), r.current()); n != r.current() {
				if n > r.current() {
					r.grow(n, task)
				} else {
					r.shrink(n, task)
				}
			}
			continue
		case <-rctx.Done():
			err = context.Cause(rctx)
			continue
		}
		for {
			buf, ok := pending[p.offset]
			if !ok {
				break
			}
			delete(pending, p.offset)
			for b := buf; len(b) > 0 && err == nil; {
				n := min(len(b), chunkSize)
				err = p.absorb(b[:n])
				b = b[n:]
			}
			f.pool.put(buf)
			if err != nil {
				break
			}
			if task != nil {
				task.SetBytes(min(start+r.recv.Load(), r.total), r.total)
			}
		}
	}
	tick.Stop()
	cancel(errStopped)
	r.wg.Wait()
	close(r.done)
	for pc := range r.done {
		f.pool.put(pc.buf)
	}
	for _, buf := range pending {
		f.pool.put(buf)
	}
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

var errStopped = errors.New("ranged download stopped")

// current is the wanted connection count.
func (r *rangeRun) current() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.target
}

// grow raises the wanted count to n, starting workers with connections from the budget while
// it has some.
func (r *rangeRun) grow(n int, task *progress.Task) {
	r.mu.Lock()
	for r.target < n && r.next < r.total && r.f.budget.tryAcquire() {
		r.target++
		r.spawnLocked(nil, true)
	}
	t := r.target
	r.mu.Unlock()
	if task != nil {
		task.Status(fmt.Sprintf("fetching %s over %d connections", r.red, t))
	}
}

// shrink lowers the wanted count; workers above it stop after their piece.
func (r *rangeRun) shrink(n int, task *progress.Task) {
	r.mu.Lock()
	r.target = max(1, n)
	t := r.target
	r.mu.Unlock()
	if task != nil {
		task.Status(fmt.Sprintf("fetching %s over %d connections", r.red, t))
	}
}

func (r *rangeRun) spawnLocked(first *opened, token bool) {
	r.workers++
	r.wg.Add(1)
	go r.worker(first, token, nil)
}

// claim takes the next piece, or reports that the worker should stop (nothing left, or more
// workers than wanted).
func (r *rangeRun) claim() (start, end int64, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next >= r.total || r.workers > r.target {
		r.workers--
		return 0, 0, false
	}
	start = r.next
	end = min(start+r.f.pieceSize, r.total)
	r.next = end
	return start, end, true
}

// worker fetches pieces until none is left, starting with claimed when it is not nil.
// token: it holds a connection of the budget.
func (r *rangeRun) worker(first *opened, token bool, claimed *piece) {
	defer r.wg.Done()
	if token {
		defer r.f.budget.release()
	}
	defer func() {
		if first != nil {
			first.body.Close()
		}
	}()
	for {
		var start, end int64
		var b []byte
		if claimed != nil {
			start, b, claimed = claimed.start, claimed.buf, nil
			end = start + int64(len(b))
		} else {
			buf, err := r.f.pool.get(r.ctx)
			if err != nil {
				r.mu.Lock()
				r.workers--
				r.mu.Unlock()
				return
			}
			var ok bool
			if start, end, ok = r.claim(); !ok {
				r.f.pool.put(buf)
				return
			}
			b = buf[:end-start]
		}
		if err := r.fetchPiece(start, end, b, &first); err != nil {
			r.f.pool.put(b)
			r.mu.Lock()
			r.workers--
			r.mu.Unlock()
			r.cancel(err)
			return
		}
		r.done <- piece{start, b} // never blocks: done holds as many pieces as the pool has buffers
	}
}

// fetchPiece fills buf with the bytes [start, end) of the file, from *first when that body
// starts there, else with range requests, retrying a short body from where it stopped.
func (r *rangeRun) fetchPiece(start, end int64, buf []byte, first **opened) error {
	got, fails := 0, 0
	for got < len(buf) {
		at := start + int64(got)
		var o *opened
		if *first != nil && (*first).start == at {
			o, *first = *first, nil
		} else {
			if *first != nil {
				(*first).body.Close()
				*first = nil
			}
			var err error
			o, err = r.open(r.ctx, span{start: at, end: end}, r.validator)
			if err == nil {
				if err = r.check(o, at, end); err != nil {
					o.body.Close()
					return err
				}
			}
			if err != nil {
				if r.ctx.Err() != nil {
					return context.Cause(r.ctx)
				}
				var re *retryable
				var nr *noRangesError
				if errors.Is(err, errRestart) || errors.As(err, &nr) {
					return err
				}
				if !errors.As(err, &re) {
					// Not worth retrying here (a refused or expired CDN link): the download
					// loop asks the source again.
					return &retryable{err: err}
				}
				if fails++; fails >= r.f.retry.Attempts {
					return err
				}
				if err := sleep(r.ctx, r.f.retry.delay(fails-1, re.after)); err != nil {
					return context.Cause(r.ctx)
				}
				continue
			}
		}
		n, err := io.ReadFull(o.body, buf[got:])
		got += n
		r.recv.Add(int64(n))
		if err == nil && o.end == end && o.length < 0 {
			// No announced length: the range must end where asked.
			var one [1]byte
			if m, _ := o.body.Read(one[:]); m > 0 {
				o.body.Close()
				return &noRangesError{fmt.Sprintf("it sent more than the %d bytes of range %d-%d", end-at, at, end-1)}
			}
		}
		o.body.Close()
		if err != nil {
			if r.ctx.Err() != nil {
				return context.Cause(r.ctx)
			}
			if n > 0 {
				fails = 0
			}
			if fails++; fails >= r.f.retry.Attempts {
				return &retryable{err: fmt.Errorf("range %d-%d: connection lost after byte %d: %w", start, end-1, start+int64(got), err)}
			}
			if err := sleep(r.ctx, r.f.retry.delay(fails-1, 0)); err != nil {
				return context.Cause(r.ctx)
			}
		}
	}
	return nil
}

// check accepts the answer o to a request for [at, end) only when it is exactly that range of
// the same file.
func (r *rangeRun) check(o *opened, at, end int64) error {
	if !o.ranged {
		if o.validator != "" && o.validator != r.validator {
			return &changedError{fmt.Sprintf("validator %s, was %s", o.validator, r.validator)}
		}
		return &noRangesError{fmt.Sprintf("it answered the range %d-%d with the whole file", at, end-1)}
	}
	if o.validator == "" {
		return &noRangesError{fmt.Sprintf("its answer to the range %d-%d has no validator", at, end-1)}
	}
	if o.validator != r.validator {
		return &changedError{fmt.Sprintf("validator %s, was %s", o.validator, r.validator)}
	}
	if o.total != r.total {
		return &changedError{fmt.Sprintf("size %d, was %d", o.total, r.total)}
	}
	if o.start != at || o.end != end {
		return &noRangesError{fmt.Sprintf("asked for bytes %d-%d, it sent %d-%d", at, end-1, o.start, o.end-1)}
	}
	if o.length >= 0 && o.length != end-at {
		return &noRangesError{fmt.Sprintf("it announced %d bytes for the %d bytes of range %d-%d", o.length, end-at, at, end-1)}
	}
	return nil
}

// tuner decides the connection count from the throughput: it grows the count while a step
// raises the throughput by more than a tenth, and otherwise settles on the best count seen.
// The first tick after a change is not measured (new connections are still starting).
type tuner struct {
	cap      int
	best     float64
	bestN    int
	lastRecv int64
	lastT    time.Time
	warm     bool // the last tick started a clean measurement at the current count
	settled  bool
}

// step takes a tick at now with recv bytes received so far at count n, and returns the count
// wanted from now on.
func (t *tuner) step(now time.Time, recv int64, n int) int {
	dt := now.Sub(t.lastT).Seconds()
	rate := float64(recv-t.lastRecv) / dt
	t.lastRecv, t.lastT = recv, now
	if t.settled || dt <= 0 {
		return n
	}
	if !t.warm {
		t.warm = true
		return n
	}
	t.warm = false
	switch {
	case t.bestN == 0 || rate > t.best*1.1:
		t.best, t.bestN = rate, n
		if n >= t.cap {
			t.settled = true
			return n
		}
		return min(t.cap, n*2)
	default:
		t.settled = true
		if rate < t.best*0.95 {
			return t.bestN
		}
		return n
	}
}

// onceCloser closes its body once.
type onceCloser struct {
	io.ReadCloser
	once sync.Once
	err  error
}

func (c *onceCloser) Close() error {
	c.once.Do(func() { c.err = c.ReadCloser.Close() })
	return c.err
}
