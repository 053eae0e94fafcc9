package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Run runs one workflow on this process (Client.Run with Exited set). When ComfyUI dies during
// the job, the error carries the last lines of its log. The job's input images are removed
// from the input directory afterwards, whatever happened.
func (p *Process) Run(ctx context.Context, workflow json.RawMessage, opts RunOptions) (*RunResult, error) {
	if opts.Exited == nil {
		opts.Exited = p.exited
	}
	if opts.PromptID == "" {
		opts.PromptID = uuid.NewString()
	}
	defer p.removeInputs(jobTag(opts.PromptID))
	res, err := p.Client().Run(ctx, workflow, opts)
	if err == nil {
		return res, nil
	}
	var ue *url.Error
	// A connection cut while a response body is read is io.ErrUnexpectedEOF, not a *url.Error.
	cut := errors.As(err, &ue) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
	if !errors.Is(err, ErrComfyExited) && (!cut || ctx.Err() != nil) {
		return nil, err // not a failed request: ComfyUI answered
	}
	// A network error may be ComfyUI dying (e.g. while answering POST /prompt): say so.
	if !errors.Is(err, ErrComfyExited) {
		select {
		case <-p.exited:
			err = fmt.Errorf("job %s: %w (%v)", opts.PromptID, ErrComfyExited, err)
		case <-time.After(2 * time.Second):
			return nil, err
		}
	}
	<-p.exited
	return nil, &ExitedError{Err: err, ExitCode: exitCode(p.exitErr), Log: p.LogTail(20)}
}

// ExitedError is a job that ended because ComfyUI exited; Log holds its last lines.
type ExitedError struct {
	Err      error
	ExitCode int
	Log      []string
}

func (e *ExitedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v (exit status %d)", e.Err, e.ExitCode)
	if len(e.Log) > 0 {
		b.WriteString("; last lines of its log:")
		for _, l := range e.Log {
			b.WriteString("\n    ")
			b.WriteString(l)
		}
	}
	return b.String()
}

func (e *ExitedError) Unwrap() error { return e.Err }

// removeInputs deletes the input images a job uploaded (named <tag>-<name>).
func (p *Process) removeInputs(tag string) {
	_ = filepath.WalkDir(p.dirs.Input, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), tag+"-") {
			os.Remove(path)
		}
		return nil
	})
}

// RemoveOutputs deletes the files of a finished job from the output and temp directories
// (once they have been delivered).
func (p *Process) RemoveOutputs(res *RunResult) {
	for _, o := range res.Outputs {
		base := ""
		switch o.Type {
		case "output":
			base = p.dirs.Output
		case "temp":
			base = filepath.Join(p.dirs.Temp, "temp")
		default:
			continue
		}
		rel, err := outputName(o)
		if err != nil {
			continue
		}
		os.Remove(filepath.Join(base, filepath.FromSlash(rel)))
	}
}

// OnceOptions describe a one-shot job: start ComfyUI, run one workflow, deliver, stop.
type OnceOptions struct {
	Start    StartOptions
	Workflow json.RawMessage
	Run      RunOptions
	// Sink receives the outputs; default Base64Sink. A JobSink (GCSSink, S3Sink) is narrowed
	// to the job's prompt id.
	Sink Sink
	// Timeout bounds the job once ComfyUI is ready (the job is interrupted); 0 is none.
	Timeout time.Duration
	// KeepFiles leaves the job's files in the state's output directory.
	KeepFiles bool
}

// Result is the outcome of a one-shot job, as run-handler prints it.
type Result struct {
	Status    string    `json:"status"`
	PromptID  string    `json:"prompt_id"`
	Outputs   []*Output `json:"outputs"`
	Cached    []string  `json:"cached,omitempty"`
	StartMS   int64     `json:"start_ms"`
	ElapsedMS int64     `json:"elapsed_ms"`
}

// RunOnce starts ComfyUI, runs one workflow, delivers its outputs and stops ComfyUI. The
// workflow is checked before anything starts.
func RunOnce(ctx context.Context, o OnceOptions) (*Result, error) {
	if _, err := CheckWorkflow(o.Workflow); err != nil {
		return nil, err
	}
	for _, img := range o.Run.Images {
		if err := CheckInputName(img.Name); err != nil {
			return nil, err
		}
	}
	sink := o.Sink
	if sink == nil {
		sink = Base64Sink{}
	}
	t0 := time.Now()
	p, err := Start(ctx, o.Start)
	if err != nil {
		return nil, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = p.Stop(sctx)
	}()
	started := time.Since(t0)
	jctx := ctx
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		jctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	t1 := time.Now()
	res, err := p.Run(jctx, o.Workflow, o.Run)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, fmt.Errorf("job timed out after %s (interrupted): %w", o.Timeout, err)
		}
		return nil, err
	}
	sink = ForJob(sink, res.PromptID)
	if err := Deliver(ctx, res.Outputs, sink); err != nil {
		return nil, err
	}
	if !o.KeepFiles {
		p.RemoveOutputs(res)
	}
	outs := res.Outputs
	if outs == nil {
		outs = []*Output{}
	}
	return &Result{
		Status:    "success",
		PromptID:  res.PromptID,
		Outputs:   outs,
		Cached:    res.Cached,
		StartMS:   started.Milliseconds(),
		ElapsedMS: time.Since(t1).Milliseconds(),
	}, nil
}
