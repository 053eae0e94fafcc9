package model

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/runpod-comfy/runpod-comfy/builder/drv"
	"github.com/runpod-comfy/runpod-comfy/internal/atomicfile"
	"github.com/runpod-comfy/runpod-comfy/internal/progress"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	Store   *store.Store
	Fetcher *Fetcher
	Spec    *specs.Spec
	Lock    *specs.Lock
	// ModelsDir, when set, is an external models directory (of a ComfyUI install not run by
	// runpod-comfy): each model is checked at ModelsDir/<target> and placed there by atomic
	// replace when missing. Empty means checking the store objects.
	ModelsDir string
	// Overwrite replaces a file in ModelsDir whose hash is wrong with the right bytes (from
	// the store when it holds them, else from the source); without it a mismatch is an error.
	Overwrite bool
	// Jobs is how many models are checked or fetched at once (default 4).
	Jobs     int
	Progress *progress.Display
}

// Statuses of a verified model.
const (
	StatusOK       = "ok"       // present with the right hash
	StatusFetched  = "fetched"  // was missing; downloaded from the source
	StatusCopied   = "copied"   // was missing from ModelsDir; copied from the store
	StatusReplaced = "replaced" // had the wrong hash; replaced (Overwrite)
	StatusMismatch = "mismatch" // has the wrong hash (error)
	StatusFailed   = "failed"   // could not be checked or fetched (error)
)

// VerifyStatus is the outcome for one model.
type VerifyStatus struct {
	Target    string `json:"target"`
	Path      string `json:"path"` // the file checked: the store object or ModelsDir/<target>
	StorePath string `json:"store_path"`
	Checksum  string `json:"checksum"`
	Status    string `json:"status"`
	// Found is the hash found when it differed.
	Found   string `json:"found,omitempty"`
	Problem string `json:"problem,omitempty"`
}

// VerifyError is a Verify that found models with the wrong hash or could not fetch some.
type VerifyError struct{ Bad []VerifyStatus }

func (e *VerifyError) Error() string {
	if len(e.Bad) == 1 {
		return fmt.Sprintf("model %s: %s", e.Bad[0].Target, e.Bad[0].Problem)
	}
	return fmt.Sprintf("%d models failed verification (first: %s: %s)", len(e.Bad), e.Bad[0].Target, e.Bad[0].Problem)
}

// Verify checks that every model of opts.Lock is present with the right hash, in the store or
// in opts.ModelsDir, and fetches what is missing. It reads each present file once (that is
// the check); fetched files are hashed while they stream. It returns one status per model in
// lock order, and a *VerifyError when any model is wrong or could not be fetched.
func Verify(ctx context.Context, opts VerifyOptions) ([]VerifyStatus, error) {
	if opts.Lock == nil || opts.Store == nil || opts.Fetcher == nil {
		return nil, errors.New("verify models: lock, store and fetcher are required")
	}
	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = 4
	}
	out := make([]VerifyStatus, len(opts.Lock.Models))
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	for i, ml := range opts.Lock.Models {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				out[i] = VerifyStatus{Target: ml.Target, Status: StatusFailed, Problem: ctx.Err().Error()}
				return
			}
			defer func() { <-sem }()
			out[i] = verifyOne(ctx, opts, ml)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return out, err
	}
	var bad []VerifyStatus
	for _, st := range out {
		if st.Status == StatusMismatch || st.Status == StatusFailed {
			bad = append(bad, st)
		}
	}
	if len(bad) > 0 {
		return out, &VerifyError{Bad: bad}
	}
	return out, nil
}

func verifyOne(ctx context.Context, opts VerifyOptions, ml specs.ModelLock) VerifyStatus {
	st := VerifyStatus{Target: ml.Target, Checksum: ml.Checksum}
	fail := func(err error) VerifyStatus {
		st.Status, st.Problem = StatusFailed, err.Error()
		return st
	}
	var pos specs.Pos
	if opts.Spec != nil {
		if m, ok := SpecModel(opts.Spec, ml.Target); ok {
			pos = m.Pos
		}
	}
	d, err := Derivation(ml, pos)
	if err != nil {
		return fail(err)
	}
	st.StorePath = d.Path.String()
	want, _ := ParseChecksum(ml.Checksum)
	task := opts.Progress.Start("model " + ml.Target)
	defer func() {
		switch st.Status {
		case StatusMismatch, StatusFailed:
			task.Done("", errors.New(st.Problem))
		default:
			task.Done(st.Status, nil)
		}
	}()
	obj := opts.Store.Abs(d.Path)
	if opts.ModelsDir == "" {
		st.Path = obj
		if opts.Store.Valid(d.Path) {
			task.Status("hashing")
			got, _, err := hashFile(ctx, obj, want.Algo)
			if err != nil {
				return fail(err)
			}
			if got != want {
				st.Status, st.Found = StatusMismatch, got.String()
				st.Problem = fmt.Sprintf("the store object %s holds %s, the lock says %s: repair it with `runpod-comfy store verify --repair`", d.Path, got, want)
				return st
			}
			st.Status = StatusOK
			return st
		}
		if err := fetchIntoStore(ctx, opts, d, ml, task); err != nil {
			return fail(err)
		}
		st.Status = StatusFetched
		return st
	}

	dst := filepath.Join(opts.ModelsDir, filepath.FromSlash(ml.Target))
	st.Path = dst
	replacing := false
	if fi, err := os.Stat(dst); err == nil {
		if !fi.Mode().IsRegular() {
			return fail(fmt.Errorf("%s is not a regular file", dst))
		}
		task.Status("hashing")
		got, _, err := hashFile(ctx, dst, want.Algo)
		if err != nil {
			return fail(err)
		}
		if got == want {
			st.Status = StatusOK
			return st
		}
		st.Found = got.String()
		if !opts.Overwrite {
			st.Status = StatusMismatch
			st.Problem = fmt.Sprintf("%s holds %s, the lock says %s (use --overwrite to replace it with the right bytes)", dst, got, want)
			return st
		}
		replacing = true
	} else if !errors.Is(err, os.ErrNotExist) {
		return fail(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fail(err)
	}
	tmpDir, err := os.MkdirTemp(filepath.Dir(dst), ".runpod-comfy-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, filepath.Base(dst))
	status := StatusFetched
	if opts.Store.Valid(d.Path) {
		task.Status("copying from the store")
		got, err := copyHashed(ctx, obj, tmp, want.Algo)
		if err != nil {
			return fail(err)
		}
		if got != want {
			return fail(fmt.Errorf("the store object %s holds %s, not %s: repair it with `runpod-comfy store verify --repair`", d.Path, got, want))
		}
		status = StatusCopied
	} else {
		src, err := ParseSource(sourceFor(opts.Spec, ml), BaseDir(opts.Spec))
		if err != nil {
			return fail(err)
		}
		task.Status("fetching " + src.Redacted())
		if _, err := opts.Fetcher.Fetch(ctx, src, Want{Checksum: want, Size: ml.Size}, tmp, task); err != nil {
			var mm *MismatchError
			if errors.As(err, &mm) {
				mm.Pos = pos // the status names the target
			}
			return fail(err)
		}
	}
	if err := syncFile(tmp, 0o644); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fail(err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(dst)); err != nil {
		return fail(err)
	}
	if replacing {
		status = StatusReplaced
	}
	st.Status = status
	return st
}

// sourceFor is the source of a locked model as written in the spec (credentials included),
// else the lock's redacted one.
func sourceFor(spec *specs.Spec, ml specs.ModelLock) string {
	if spec != nil {
		if m, ok := SpecModel(spec, ml.Target); ok && Redact(m.Source) == ml.Source {
			return m.Source
		}
	}
	return ml.Source
}

// fetchIntoStore makes d valid in the store, downloading it.
func fetchIntoStore(ctx context.Context, opts VerifyOptions, d *drv.Derivation, ml specs.ModelLock, task *progress.Task) error {
	b := &Builder{fetcher: opts.Fetcher, raw: map[string]string{}, baseDir: BaseDir(opts.Spec)}
	if opts.Spec != nil {
		for _, m := range opts.Spec.Models {
			b.raw[Redact(m.Source)] = m.Source
		}
	}
	bc := &drv.BuildContext{Store: opts.Store, Task: task}
	_, err := opts.Store.AddKnown(ctx, d.Path, store.AddOptions{Kind: d.Kind, Derivation: d.CanonicalJSON(), CA: d.Fixed.CA},
		func(ctx context.Context, out string) (store.KnownNar, error) {
			err := b.Build(ctx, bc, d, out)
			return bc.KnownNar, err
		})
	return err
}

// hashFile hashes a file with algo (store.HashContent: the store owns the content
// algorithms of fixed objects), stopping when ctx ends.
func hashFile(ctx context.Context, path, algo string) (Checksum, int64, error) {
	hx, n, err := store.HashContent(ctx, path, algo)
	if err != nil {
		return Checksum{}, 0, err
	}
	return Checksum{Algo: algo, Hex: hx}, n, nil
}

// copyHashed copies src to a new file dst, hashing in the same pass, and fsyncs it.
func copyHashed(ctx context.Context, src, dst, algo string) (Checksum, error) {
	in, err := os.Open(src)
	if err != nil {
		return Checksum{}, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return Checksum{}, err
	}
	defer out.Close()
	h, err := newHash(algo)
	if err != nil {
		return Checksum{}, err
	}
	if _, err := io.Copy(io.MultiWriter(out, h), ctxReader{ctx, in}); err != nil {
		return Checksum{}, fmt.Errorf("copying %s: %w", src, err)
	}
	if err := out.Sync(); err != nil {
		return Checksum{}, err
	}
	return Checksum{Algo: algo, Hex: fmt.Sprintf("%x", h.Sum(nil))}, out.Close()
}

// syncFile sets a file's mode and forces it to disk.
func syncFile(path string, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// ctxReader stops reading when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
