package comfyjob

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/runpod-comfy/runpod-comfy/runner"
	"github.com/runpod-comfy/runpod-comfy/runner/worker"
)

// Handle runs one job: parse the input, make ComfyUI ready for its version, run the workflow,
// deliver every output as base64 or GCS URLs, and clean the state dirs.
// With RefreshWorker every result asks for the worker's replacement.
func (h *Handler) Handle(ctx context.Context, job *worker.Job, progress worker.ProgressFunc) (worker.Result, error) {
	res, err := h.handle(ctx, job, progress)
	if h.o.RefreshWorker {
		res.StopPod = true
	}
	return res, err
}

// client returns a client for proc tuned by the options.
func (h *Handler) client(proc *runner.Process, jobID string) *runner.Client {
	c := proc.Client()
	if h.o.UnreachableTimeout > 0 {
		c.MaxPollFailures = max(1, int((h.o.UnreachableTimeout+c.PollInterval-1)/c.PollInterval))
	}
	if h.o.TraceWebSocket {
		log := h.log.With("job_id", jobID)
		c.Trace = func(binary bool, frame []byte) {
			if binary {
				log.Info("websocket frame", "binary_bytes", len(frame))
				return
			}
			log.Info("websocket frame", "text", truncateText(string(frame), 2048))
		}
	}
	return c
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("... (%d bytes)", len(s))
}

func (h *Handler) handle(ctx context.Context, job *worker.Job, progress worker.ProgressFunc) (worker.Result, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t0 := time.Now()
	timings := map[string]int64{}
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	// fail ends the job with msg; f (a copy) carries the details, timings are added.
	fail := func(msg string, f Failure) worker.Result {
		timings["total_ms"] = ms(time.Since(t0))
		f.Timings = timings
		return worker.Result{Error: msg, Output: &f}
	}

	in, warnings, err := ParseInput(job.Input)
	if err != nil {
		return fail(err.Error(), Failure{}), nil
	}
	version := in.VersionID
	if version == "" {
		version = h.o.DefaultVersion
	}
	if version == "" {
		return fail("invalid input: version_id: missing, and the worker has no default version (set COMFY_VERSION_NAME or --version-id)", Failure{}), nil
	}
	base := Failure{VersionID: version}
	mode := in.OutputMode
	if mode == "" {
		mode = h.o.OutputMode
	}
	gcsOpts := h.o.GCS
	if in.GCSBucket != "" {
		gcsOpts.Bucket = in.GCSBucket
	}
	if in.GCSPrefix != "" {
		gcsOpts.Prefix = in.GCSPrefix
	}
	format := in.ResultFormat
	if format == "" {
		format = h.o.ResultFormat
	}
	if format == ResultSeed && gcsOpts.Prefix == "" {
		gcsOpts.Prefix = seedGCSPrefix // the seed tool's default
	}
	sinks := runner.SinkConfig{GCS: gcsOpts, S3: h.o.S3}
	sinks.S3.Validate = false // once at start (cmd), not per job
	kind, err := outputKind(mode)
	if err == nil {
		err = kind.Check(sinks)
	}
	if err != nil {
		// Before anything runs: a job whose outputs cannot be delivered is not started.
		return fail(fmt.Sprintf("invalid input: output_mode %s: %v", mode, err), base), nil
	}

	// Deadline: timeout_s, else the worker's default.
	timeout := h.o.JobTimeout
	if in.TimeoutS > 0 {
		timeout = time.Duration(in.TimeoutS * float64(time.Second))
	}
	jctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		jctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	// An uploading sink (gcs, s3) is opened before the workflow runs: credentials, bucket
	// name and URL signing are checked now, so that a job that could not deliver fails before
	// it uses the GPU.
	var pre runner.Sink
	if !kind.Returned {
		if pre, err = kind.Open(jctx, sinks); err != nil {
			return fail(fmt.Sprintf("output_mode %s: %v", mode, err), base), nil
		}
		defer runner.CloseSink(pre)
	}

	ts := time.Now()
	proc, err := h.ensure(jctx, version)
	timings["comfy_ready_ms"] = ms(time.Since(ts))
	if err != nil {
		res := fail(err.Error(), base)
		var be *brokenWorkerError
		res.StopPod = errors.As(err, &be)
		return res, nil
	}
	defer h.cleanState(proc)

	workflow := in.Workflow
	if workflow == nil {
		tw := time.Now()
		workflow, err = fetchWorkflow(jctx, h.o.HTTPClient, in.WorkflowURL)
		timings["workflow_fetch_ms"] = ms(time.Since(tw))
		if err != nil {
			return fail(err.Error(), base), nil
		}
	}
	var images []runner.InputImage
	for _, img := range in.allImages() {
		images = append(images, runner.InputImage{Name: img.Name, Image: img.Image})
	}
	apiKey := in.ComfyOrgAPIKey
	if apiKey == "" {
		apiKey = h.o.ComfyOrgAPIKey
	}
	var extra map[string]any
	if apiKey != "" {
		extra = map[string]any{"api_key_comfy_org": apiKey}
	}

	tr := time.Now()
	res, err := h.client(proc, job.ID).Run(jctx, workflow, runner.RunOptions{
		Images:    images,
		ImageHTTP: h.o.HTTPClient,
		ExtraData: extra,
		Exited:    proc.Exited(),
		Progress: func(p runner.Progress) {
			progress(progressOutput(version, p))
		},
	})
	timings["run_ms"] = ms(time.Since(tr))
	if res != nil && res.PromptID != "" {
		base.PromptID = res.PromptID
	}
	if err != nil {
		return h.runFailure(jctx, ctx, proc, err, timeout, base, fail), nil
	}
	base.PromptID = res.PromptID

	// Deliver: as asked, and uploaded when base64 would be too large.
	to := time.Now()
	out, err := h.deliver(jctx, kind, sinks, pre, job.ID, res.Outputs, warnings)
	timings["outputs_ms"] = ms(time.Since(to))
	if err != nil {
		var te *tooLargeError
		if errors.As(err, &te) {
			meta := base
			meta.Outputs = te.outputs
			return fail(err.Error(), meta), nil
		}
		return fail("delivering outputs: "+err.Error(), base), nil
	}
	out.VersionID, out.PromptID = version, res.PromptID
	if format == ResultSeed {
		out.SeedOutput = seedOutput(out.OutputMode, res.Outputs, gcsOpts.Public)
	}
	timings["total_ms"] = ms(time.Since(t0))
	out.Timings = timings
	return worker.Result{Output: out}, nil
}

// runFailure turns a failed run into a job failure with details, restarting ComfyUI in the
// background when it crashed.
func (h *Handler) runFailure(jctx, ctx context.Context, proc *runner.Process, err error, timeout time.Duration, details Failure, fail func(string, Failure) worker.Result) worker.Result {
	var ve *runner.ValidationError
	var ee *runner.ExecutionError
	var we *runner.WorkflowError
	switch {
	case errors.As(err, &ve):
		details.Details = validationDetails(ve)
		details.NodeErrors = ve.Nodes
		return fail(err.Error(), details)
	case errors.As(err, &ee):
		details.Details = []string{ee.Error()}
		details.ExecutionError = ee
		return fail(err.Error(), details)
	case errors.As(err, &we):
		return fail("invalid input: "+err.Error(), details)
	case errors.Is(err, runner.ErrComfyExited) || (ctx.Err() == nil && jctx.Err() == nil && crashed(proc, 2*time.Second)):
		tail := proc.LogTail(h.o.LogTailLines)
		details.Details = []string{fmt.Sprintf("ComfyUI exited: %v", proc.ExitErr())}
		details.LogTail = tail
		h.log.Error("ComfyUI crashed during a job; it is restarted for the next job", "version", h.version, "exit", proc.ExitErr())
		h.stopLocked(context.Background())
		return fail(fmt.Sprintf("ComfyUI exited during the job (%v); it is restarted for the next job. Last lines of its log:\n%s", proc.ExitErr(), strings.Join(tail, "\n")), details)
	case errors.Is(context.Cause(ctx), worker.ErrJobStopped):
		return fail("job stopped by the platform; ComfyUI was interrupted", details)
	case errors.Is(context.Cause(ctx), worker.ErrShutdown):
		return fail("worker shutting down; ComfyUI was interrupted", details)
	case errors.Is(jctx.Err(), context.DeadlineExceeded):
		return fail(fmt.Sprintf("job timed out after %s; ComfyUI was interrupted", timeout), details)
	case errors.Is(err, runner.ErrInterrupted):
		return fail("the job was interrupted in ComfyUI", details)
	}
	return fail(err.Error(), details)
}

// validationDetails lists a refused prompt's errors worker-comfyui's way: one line per node
// error, "Node <id> (<type>): <message>: <details>".
func validationDetails(ve *runner.ValidationError) []string {
	var out []string
	ids := make([]string, 0, len(ve.Nodes))
	for id := range ve.Nodes {
		ids = append(ids, id)
	}
	runner.SortNodeIDs(ids)
	for _, id := range ids {
		n := ve.Nodes[id]
		for _, e := range n.Errors {
			line := fmt.Sprintf("Node %s (%s): %s", id, n.ClassType, e.Message)
			if e.Details != "" {
				line += ": " + e.Details
			}
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		msg := ve.Message
		if ve.Details != "" {
			msg += ": " + ve.Details
		}
		out = append(out, msg)
	}
	return out
}

// Progress is the progress a job reports: worker-comfyui PR #221's shape plus the node type,
// node counts, prompt and version. Fields are in the order the posts have always had.
type Progress struct {
	Event    string `json:"event"`
	Max      int    `json:"max"`
	Node     string `json:"node"`
	NodeType string `json:"node_type"`
	// NodesDone and NodesTotal count the job's nodes, once their number is known.
	NodesDone  *int `json:"nodes_done,omitzero"`
	NodesTotal *int `json:"nodes_total,omitzero"`
	// Percent is Value of Max, when the node reports steps.
	Percent   *int   `json:"percent,omitzero"`
	PromptID  string `json:"prompt_id"`
	Type      string `json:"type"` // progress
	Value     int    `json:"value"`
	VersionID string `json:"version_id"`
}

// progressOutput is the progress a job reports for one event of the run.
func progressOutput(version string, p runner.Progress) Progress {
	out := Progress{
		Type:      "progress",
		Event:     p.Event,
		Node:      p.NodeID,
		NodeType:  p.NodeType,
		Value:     p.Value,
		Max:       p.Max,
		PromptID:  p.PromptID,
		VersionID: version,
	}
	if p.Max > 0 {
		pct := p.Value * 100 / p.Max
		out.Percent = &pct
	}
	if p.Total > 0 {
		out.NodesDone, out.NodesTotal = &p.Done, &p.Total
	}
	return out
}

// Failure is the "output" of a failed job: what ran, as far as it got, and the failure's
// details. Fields are in the order the bodies have always had.
type Failure struct {
	// Details are worker-comfyui's error lines: one per node error of a refused workflow,
	// the exception of a node that raised, or how ComfyUI exited.
	Details        []string                     `json:"details,omitzero"`
	ExecutionError *runner.ExecutionError       `json:"execution_error,omitzero"`
	LogTail        []string                     `json:"log_tail,omitzero"` // ComfyUI's last lines when it exited
	NodeErrors     map[string]runner.NodeErrors `json:"node_errors,omitzero"`
	// Outputs describe, without their data, the outputs of a result too large to return.
	Outputs   []OutputFile     `json:"outputs,omitzero"`
	PromptID  string           `json:"prompt_id,omitzero"`
	Timings   map[string]int64 `json:"timings"`
	VersionID string           `json:"version_id,omitzero"`
}
