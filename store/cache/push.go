package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"

	"github.com/runpod-comfy/runpod-comfy/store"
	"github.com/runpod-comfy/runpod-comfy/store/nar"
)

// DefaultZstdLevel is the zstd level of pushed NARs: klauspost's SpeedDefault (about zstd
// -3). Measured on a venv-like tree (docs/benchmarks.md), it compresses nearly as well as
// SpeedBetterCompression at about twice the speed, and decompression speed barely depends on
// the level.
const DefaultZstdLevel = zstd.SpeedDefault

// KindModel is the Meta.Kind of model objects, pushed uncompressed so range reads keep working
// (and weights do not compress).
const KindModel = "model"

// PushOptions tune Push.
type PushOptions struct {
	// SignKey signs every narinfo pushed; nil pushes unsigned narinfos.
	SignKey *SecretKey
	// Jobs is the number of objects uploaded at once (default 4).
	Jobs int
	// Level is the zstd level (default DefaultZstdLevel).
	Level zstd.EncoderLevel
	// Progress, if set, is called once per object of the closure when it is pushed or
	// skipped; calls are serialised.
	Progress func(PushEvent)
}

// PushEvent reports one object of a push.
type PushEvent struct {
	Path        store.Path
	Skipped     bool  // the cache had it already
	NarSize     int64 // NAR bytes
	FileSize    int64 // bytes uploaded (compressed NAR); 0 when skipped
	Compression string
	Done, Total int // objects finished so far, objects in the closure
}

// PushResult sums up a push.
type PushResult struct {
	Pushed    int   `json:"pushed"`
	Skipped   int   `json:"skipped"`    // already in the cache
	NarBytes  int64 `json:"nar_bytes"`  // NAR bytes of the pushed objects
	FileBytes int64 `json:"file_bytes"` // bytes uploaded for them
}

// Push uploads the closure of paths from st to the cache b, skipping objects whose narinfo
// the cache has. NARs are uploaded in parallel; an object's narinfo is written only after its
// NAR and the narinfos of all its references, so a reader never sees a narinfo whose NAR or
// references are missing, even if the push is killed. The NAR is re-hashed while it is
// uploaded and must match the object's metadata (a corrupt local object is never published).
func Push(ctx context.Context, st *store.Store, b Backend, paths []store.Path, opts PushOptions) (*PushResult, error) {
	if opts.Jobs <= 0 {
		opts.Jobs = 4
	}
	if opts.Level == 0 {
		opts.Level = DefaultZstdLevel
	}
	closure, err := st.Closure(paths...)
	if err != nil {
		return nil, fmt.Errorf("pushing to %s: %w", b.URL(), err)
	}
	metas := make(map[store.Path]*store.Meta, len(closure))
	for _, p := range closure {
		m, err := st.Meta(p)
		if err != nil {
			return nil, fmt.Errorf("pushing to %s: %w", b.URL(), err)
		}
		metas[p] = m
	}
	if err := ensureCacheInfo(ctx, b); err != nil {
		return nil, err
	}

	res := &PushResult{}
	var mu sync.Mutex
	report := func(ev PushEvent) {
		mu.Lock()
		defer mu.Unlock()
		if ev.Skipped {
			res.Skipped++
		} else {
			res.Pushed++
			res.NarBytes += ev.NarSize
			res.FileBytes += ev.FileSize
		}
		ev.Done, ev.Total = res.Pushed+res.Skipped, len(closure)
		if opts.Progress != nil {
			opts.Progress(ev)
		}
	}

	done := make(map[store.Path]chan struct{}, len(closure))
	for _, p := range closure {
		done[p] = make(chan struct{})
	}
	sem := make(chan struct{}, opts.Jobs)
	g, gctx := errgroup.WithContext(ctx)
	for _, p := range closure {
		m := metas[p]
		g.Go(func() error {
			ev, err := pushOne(gctx, st, b, m, opts, sem, done)
			if err != nil {
				return fmt.Errorf("pushing %s to %s: %w", p, b.URL(), err)
			}
			close(done[p])
			report(ev)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return res, err
	}
	return res, nil
}

func narInfoKey(p store.Path) string { return p.Digest().String() + ".narinfo" }

func pushOne(ctx context.Context, st *store.Store, b Backend, m *store.Meta, opts PushOptions, sem chan struct{}, done map[store.Path]chan struct{}) (PushEvent, error) {
	ev := PushEvent{Path: m.Path, NarSize: m.NarSize}
	have, err := b.Exists(ctx, narInfoKey(m.Path))
	if err != nil {
		return ev, err
	}
	if have {
		ev.Skipped = true
		return ev, nil
	}
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return ev, ctx.Err()
	}
	ni, err := uploadNAR(ctx, st, b, m, opts.Level)
	<-sem
	if err != nil {
		return ev, err
	}
	// The narinfo waits for every reference's narinfo (the closure invariant).
	for _, r := range m.References {
		if r == m.Path {
			continue
		}
		select {
		case <-done[r]:
		case <-ctx.Done():
			return ev, ctx.Err()
		}
	}
	if opts.SignKey != nil {
		if err := ni.Sign(*opts.SignKey); err != nil {
			return ev, err
		}
	}
	text, err := ni.MarshalText()
	if err != nil {
		return ev, err
	}
	if _, err := putBytes(ctx, b, narInfoKey(m.Path), text); err != nil {
		return ev, err
	}
	ev.FileSize, ev.Compression = ni.FileSize, ni.Compression
	return ev, nil
}

// NarInfoFor returns the narinfo of m without the file fields (URL, compression, file hash
// and size) and without signatures.
func NarInfoFor(m *store.Meta) *NarInfo {
	return &NarInfo{
		StorePath:  StoreDir + "/" + m.Path.String(),
		NarHash:    m.NarHash,
		NarSize:    m.NarSize,
		References: append([]store.Path(nil), m.References...),
		CA:         m.CA,
		Kind:       m.Kind,
		Derivation: m.Derivation,
	}
}

// countHash is a writer that hashes and counts what goes through it.
type countHash struct {
	h hash.Hash
	n int64
}

func newCountHash() *countHash { return &countHash{h: sha256.New()} }

func (c *countHash) Write(p []byte) (int, error) {
	c.h.Write(p)
	c.n += int64(len(p))
	return len(p), nil
}

func (c *countHash) String() string { return sha256String(c.h.Sum(nil)) }

// uploadNAR dumps m's object, compresses it unless it is a model, and commits it under
// nar/<file hash>.nar[.zst] once its NAR hash is checked against the metadata.
func uploadNAR(ctx context.Context, st *store.Store, b Backend, m *store.Meta, level zstd.EncoderLevel) (*NarInfo, error) {
	ni := NarInfoFor(m)
	u, err := b.Create(ctx)
	if err != nil {
		return nil, err
	}
	defer u.Abort()
	narH, fileH := newCountHash(), newCountHash()
	fileW := io.MultiWriter(u, fileH)
	ext := ".nar"
	if m.Kind == KindModel {
		ni.Compression = CompressionNone
		if err := nar.Dump(io.MultiWriter(fileW, narH), st.Abs(m.Path)); err != nil {
			return nil, fmt.Errorf("reading the object: %w", err)
		}
	} else {
		ni.Compression = CompressionZstd
		ext = ".nar.zst"
		enc, err := newFrameWriter(fileW, level, runtime.GOMAXPROCS(0))
		if err != nil {
			return nil, err
		}
		if err := nar.Dump(io.MultiWriter(enc, narH), st.Abs(m.Path)); err != nil {
			enc.Close()
			return nil, fmt.Errorf("reading the object: %w", err)
		}
		if err := enc.Close(); err != nil {
			return nil, fmt.Errorf("compressing: %w", err)
		}
	}
	if got := narH.String(); got != m.NarHash || narH.n != m.NarSize {
		return nil, fmt.Errorf("object in the local store is corrupt: NAR hash %s (%d bytes), metadata says %s (%d bytes); run store verify", got, narH.n, m.NarHash, m.NarSize)
	}
	ni.FileHash, ni.FileSize = fileH.String(), fileH.n
	ni.URL = "nar/" + ni.FileHash[len("sha256:"):] + ext
	if _, err := u.Commit(ctx, ni.URL); err != nil {
		return nil, err
	}
	return ni, nil
}

// ensureCacheInfo writes nix-cache-info when the cache has none, and refuses a cache made
// for another store dir.
func ensureCacheInfo(ctx context.Context, b Backend) error {
	_, err := readCacheInfo(ctx, b)
	if err == nil || !errors.Is(err, errNoCacheInfo) {
		return err
	}
	text, _ := CacheInfo{StoreDir: StoreDir, WantMassQuery: true, Priority: 40}.MarshalText()
	_, err = putBytes(ctx, b, "nix-cache-info", text)
	return err
}

var errNoCacheInfo = errors.New("no nix-cache-info: not a binary cache (push to it first)")

func readCacheInfo(ctx context.Context, b Backend) (CacheInfo, error) {
	data, err := getAll(ctx, b, "nix-cache-info", 64<<10)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return CacheInfo{}, fmt.Errorf("%s: %w", b.URL(), errNoCacheInfo)
		}
		return CacheInfo{}, err
	}
	ci, err := ParseCacheInfo(data, b.URL()+"/nix-cache-info")
	if err != nil {
		return ci, err
	}
	if ci.StoreDir != StoreDir {
		return ci, fmt.Errorf("%s/nix-cache-info: StoreDir %s is not runpod-comfy's %s", b.URL(), ci.StoreDir, StoreDir)
	}
	return ci, nil
}
