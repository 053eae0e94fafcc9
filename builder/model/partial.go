package model

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/runpod-comfy/runpod-comfy/store/nar"
)

// A partial is a download in progress: the bytes received so far in "<key>.part" and a
// checkpoint in "<key>.state" (JSON: offset, announced size, validator and the marshalled
// state of every hash), both in the partial directory. The checkpoint is written every
// CheckpointEvery bytes and when a try fails, so an interrupted download (even by kill -9)
// resumes from the last checkpoint with the hashes continuing where they stopped: the bytes
// already on disk are never read again. "<key>.lock" keeps two processes off one partial.
type partial struct {
	dir, key string
	source   string // redacted, for the checkpoint and messages
	algo     string // content checksum algorithm
	every    int64

	f         *os.File
	offset    int64 // bytes written and hashed
	total     int64 // announced size, -1 when unknown
	validator string
	content   hash.Hash
	nar       *nar.FileHasher // nil when the size was unknown when the download started
	resumed   bool            // started from a checkpoint left by an earlier call
	broken    bool            // a write failed: the file and the hashes disagree
	lastCkpt  int64
	lock      *partialLock
}

// checkpoint is the JSON form of a partial's state file.
type checkpoint struct {
	Version   int    `json:"version"`
	Source    string `json:"source"`
	Algo      string `json:"algo"`
	Offset    int64  `json:"offset"`
	Total     int64  `json:"total"`
	Validator string `json:"validator,omitempty"`
	Content   []byte `json:"content_state"`
	Nar       []byte `json:"nar_state,omitempty"`
}

// partialKey names the partial of one source and expected checksum.
func partialKey(redactedSource string, want Checksum, algo string) string {
	h := sha256.Sum256([]byte(redactedSource + "\n" + want.String() + "\n" + algo))
	return hex.EncodeToString(h[:16])
}

// openPartial opens (or creates) the partial for key, taking its lock, and loads its
// checkpoint when one is usable.
func openPartial(ctx context.Context, dir, key, source, algo string, every int64) (*partial, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating partial download directory: %w", err)
	}
	lk, err := takePartialLock(ctx, filepath.Join(dir, key+".lock"))
	if err != nil {
		return nil, err
	}
	p := &partial{dir: dir, key: key, source: source, algo: algo, every: every, total: -1, lock: lk}
	f, err := os.OpenFile(p.path(".part"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		lk.release()
		return nil, fmt.Errorf("opening partial download: %w", err)
	}
	p.f = f
	if err := p.load(); err != nil {
		// An unusable checkpoint means starting over, which is always correct.
		if err := p.reset(); err != nil {
			p.close()
			return nil, err
		}
	}
	return p, nil
}

func (p *partial) path(ext string) string { return filepath.Join(p.dir, p.key+ext) }

// load restores the checkpoint, truncating the partial file to the checkpointed offset.
func (p *partial) load() error {
	b, err := os.ReadFile(p.path(".state"))
	if err != nil {
		return err
	}
	var c checkpoint
	if err := json.Unmarshal(b, &c); err != nil {
		return err
	}
	if c.Version != 1 || c.Algo != p.algo || c.Offset <= 0 {
		return errors.New("checkpoint does not match")
	}
	fi, err := p.f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() < c.Offset {
		return errors.New("partial file shorter than its checkpoint")
	}
	content, err := newHash(p.algo)
	if err != nil {
		return err
	}
	if err := content.(encoding.BinaryUnmarshaler).UnmarshalBinary(c.Content); err != nil {
		return err
	}
	var narH *nar.FileHasher
	if c.Nar != nil {
		narH = nar.NewFileHasher(c.Total, false)
		if err := narH.UnmarshalBinary(c.Nar); err != nil {
			return err
		}
	}
	if err := p.f.Truncate(c.Offset); err != nil {
		return err
	}
	if _, err := p.f.Seek(c.Offset, io.SeekStart); err != nil {
		return err
	}
	p.offset, p.total, p.validator, p.content, p.nar = c.Offset, c.Total, c.Validator, content, narH
	p.resumed, p.lastCkpt = true, c.Offset
	return nil
}

// reset empties the partial: the next try starts from byte 0.
func (p *partial) reset() error {
	os.Remove(p.path(".state"))
	if err := p.f.Truncate(0); err != nil {
		return fmt.Errorf("resetting partial download: %w", err)
	}
	if _, err := p.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("resetting partial download: %w", err)
	}
	content, err := newHash(p.algo)
	if err != nil {
		return err
	}
	p.offset, p.total, p.validator, p.content, p.nar = 0, -1, "", content, nil
	p.resumed, p.lastCkpt = false, 0
	return nil
}

// begin records the announced size and validator of a download starting at byte 0; with a
// known size the NAR hash runs beside the content hash.
func (p *partial) begin(total int64, validator string) {
	p.total, p.validator = total, validator
	if total >= 0 {
		p.nar = nar.NewFileHasher(total, false)
	}
}

// save writes the checkpoint by rename, without fsync: neither the checkpoint nor the partial
// file is forced to disk (an fsync here would flush the partial file too, on ext4, and cap the
// download at the disk's speed). After a power loss a checkpoint may be lost (the download
// restarts) or ahead of the bytes on disk (the final checksum fails and the download restarts
// from zero once).
func (p *partial) save() error {
	if p.offset == 0 {
		return nil
	}
	c := checkpoint{Version: 1, Source: p.source, Algo: p.algo, Offset: p.offset, Total: p.total, Validator: p.validator}
	var err error
	if c.Content, err = p.content.(encoding.BinaryMarshaler).MarshalBinary(); err != nil {
		return err
	}
	if p.nar != nil {
		if c.Nar, err = p.nar.MarshalBinary(); err != nil {
			return err
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	tmp := p.path(".state.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("writing download checkpoint: %w", err)
	}
	if err := os.Rename(tmp, p.path(".state")); err != nil {
		return fmt.Errorf("writing download checkpoint: %w", err)
	}
	p.lastCkpt = p.offset
	return nil
}

// close releases the file and the lock, keeping the partial for a later resume.
func (p *partial) close() {
	if p.f != nil {
		p.f.Close()
		p.f = nil
	}
	p.lock.release()
}

// discard removes the partial and its checkpoint.
func (p *partial) discard() {
	if p.f != nil {
		p.f.Close()
		p.f = nil
	}
	os.Remove(p.path(".part"))
	os.Remove(p.path(".state"))
	os.Remove(p.path(".state.tmp"))
	p.lock.release()
}

// chunkSize is the unit of the copy pipeline: small enough that a chunk is still in the CPU's
// cache when the hashes and the file write read it (1 MiB chunks measured half as fast), with
// about 2 MiB in flight.
const chunkSize = 256 << 10

// progressTotal is the size a progress bar counts towards: the announced size, else the
// expected one (0 when neither is known).
func (p *partial) progressTotal(want Want) int64 {
	if p.total >= 0 {
		return p.total
	}
	return want.Size
}

// absorb appends buf to the file and feeds it to every hash: the file write and the hashes
// run at once, each on its own goroutine (the write into the page cache costs about as much
// CPU as a hash). It checkpoints every p.every bytes. A failed write leaves the partial
// broken: the hashes saw bytes the file may not hold.
func (p *partial) absorb(buf []byte) error {
	var (
		werr error
		hw   sync.WaitGroup
	)
	hw.Add(1)
	go func() { defer hw.Done(); _, werr = p.f.Write(buf) }()
	if p.nar != nil {
		hw.Add(1)
		go func() { defer hw.Done(); p.nar.Write(buf) }()
	}
	p.content.Write(buf)
	hw.Wait()
	if werr != nil {
		p.broken = true
		return fmt.Errorf("writing partial download: %w", werr)
	}
	p.offset += int64(len(buf))
	if p.offset-p.lastCkpt >= p.every {
		return p.save()
	}
	return nil
}

// copyFrom appends r to the partial, hashing every byte in the same pass: one goroutine reads
// from the network while the previous chunk is absorbed (written to the file and fed to every
// hash at once). It returns the bytes appended and the first error; on return the partial's
// offset and hashes agree with the file.
func (p *partial) copyFrom(ctx context.Context, r io.Reader, onBytes func(offset int64)) (int64, error) {
	nbuf := max(4, (2<<20)/chunkSize) // about 2 MiB in flight
	free := make(chan []byte, nbuf)
	for range nbuf {
		free <- make([]byte, chunkSize)
	}
	full := make(chan []byte, nbuf-1)
	var (
		werr    error
		failed  atomic.Bool
		written int64
		wg      sync.WaitGroup
	)
	wg.Add(1)
	go func() { // consumer: ends when full is closed
		defer wg.Done()
		for buf := range full {
			if werr == nil {
				before := p.offset
				werr = p.absorb(buf)
				written += p.offset - before
				if werr != nil {
					failed.Store(true)
				} else if onBytes != nil {
					onBytes(p.offset)
				}
			}
			free <- buf[:cap(buf)]
		}
	}()
	var rerr error
	for rerr == nil && !failed.Load() {
		if err := ctx.Err(); err != nil {
			rerr = err
			break
		}
		buf := <-free
		n, err := fill(r, buf)
		if n > 0 {
			full <- buf[:n]
		} else {
			free <- buf
		}
		if err != nil {
			rerr = err
		}
	}
	close(full)
	wg.Wait()
	if werr != nil {
		return written, werr
	}
	if rerr == io.EOF {
		rerr = nil
	}
	return written, rerr
}

// fill reads into buf until it is full or r fails; io.EOF means the body ended cleanly.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// partialLock is an O_EXCL lock file on one partial, refreshed while held; a lock of a dead
// process on this host, or one not refreshed for lockStale, is broken.
type partialLock struct {
	path string
	stop chan struct{}
	done chan struct{}
}

const (
	lockRefresh = 20 * time.Second
	lockStale   = 2 * time.Minute
)

func takePartialLock(ctx context.Context, path string) (*partialLock, error) {
	host, _ := os.Hostname()
	me := host + " " + strconv.Itoa(os.Getpid())
	for {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			f.WriteString(me + "\n")
			f.Close()
			l := &partialLock{path: path, stop: make(chan struct{}), done: make(chan struct{})}
			go l.refresh()
			return l, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("locking partial download: %w", err)
		}
		if lockIsStale(path, host) {
			// Rename away first so that only one contender breaks it.
			tomb := fmt.Sprintf("%s.broken-%d-%d", path, os.Getpid(), time.Now().UnixNano())
			if os.Rename(path, tomb) == nil {
				os.Remove(tomb)
			}
			continue
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

func lockIsStale(path, host string) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false // gone: retry at once
	}
	if time.Since(fi.ModTime()) > lockStale {
		return true
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	h, pidText, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
	if !ok || h != host {
		return false
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil {
		return true
	}
	return !processAlive(pid)
}

func (l *partialLock) refresh() {
	defer close(l.done)
	t := time.NewTicker(lockRefresh)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case now := <-t.C:
			os.Chtimes(l.path, now, now)
		}
	}
}

func (l *partialLock) release() {
	if l == nil || l.stop == nil {
		return
	}
	close(l.stop)
	<-l.done
	l.stop = nil
	os.Remove(l.path)
}
