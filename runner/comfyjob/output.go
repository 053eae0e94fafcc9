package comfyjob

import (
	"context"
	"fmt"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/runner"
	"github.com/runpod-comfy/runpod-comfy/runner/worker"
)

// OutputFile is one entry of a job's "outputs": every file or text the workflow produced.
type OutputFile struct {
	NodeID    string `json:"node_id"`
	Kind      string `json:"kind"` // image, video, audio, text, file
	Filename  string `json:"filename,omitempty"`
	Subfolder string `json:"subfolder,omitempty"`
	Type      string `json:"type"` // output, temp or text
	Mime      string `json:"mime,omitempty"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256,omitempty"`
	Text      string `json:"text,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
}

// Types of a CompatImage, worker-comfyui's words (not output modes: an image uploaded to GCS
// is an "s3_url" too).
const (
	CompatBase64 = "base64"
	CompatURL    = "s3_url"
)

// CompatImage is one entry of worker-comfyui's "images" list: type "base64" with the data,
// or "s3_url" with a URL in data (an S3 pre-signed URL, or a GCS URL: the type is kept for
// worker-comfyui's clients).
type CompatImage struct {
	Filename string `json:"filename"`
	Type     string `json:"type"`
	Data     string `json:"data"`
}

// JobOutput is a successful job's output: "outputs" (everything), worker-comfyui's "images"
// (saved images and videos, not temp previews), the sink used, and what ran.
type JobOutput struct {
	Outputs    []OutputFile  `json:"outputs"`
	Images     []CompatImage `json:"images"`
	OutputMode string        `json:"output_mode"`
	VersionID  string        `json:"version_id"`
	PromptID   string        `json:"prompt_id"`
	// Status is "success_no_images" when no image or video was saved, as worker-comfyui.
	Status string `json:"status,omitempty"`
	// Errors are warnings (unused input fields, an upload instead of base64).
	Errors  []string         `json:"errors,omitempty"`
	Timings map[string]int64 `json:"timings"`
	// SeedOutput holds the seed tool's fields, for result_format seed.
	*SeedOutput
}

// outputKind looks a worker output mode up in runner's sink registry: one that returns the
// content or uploads it (not file: the worker's disk goes with it).
func outputKind(mode string) (runner.SinkKind, error) {
	kind, err := runner.LookupSink(mode)
	if err == nil && kind.Local {
		err = fmt.Errorf("%q writes on the worker's own disk, which nobody can read after the job", mode)
	}
	if err != nil {
		return kind, fmt.Errorf("%w; the worker takes %s", err, OutputModes())
	}
	return kind, nil
}

// OutputModes lists the output modes a job may ask for, as "a, b or c": the sinks of runner's
// registry that return or upload.
func OutputModes() string {
	return runner.SinkNames(func(k runner.SinkKind) bool { return !k.Local })
}

// tooLargeError is a base64 result over the response limit with no bucket to upload to.
type tooLargeError struct {
	size, limit int
	outputs     []OutputFile // without data
}

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("the result is too large to return: %d bytes (%.1f MB) with the outputs as base64, over the response limit of %d bytes (%.1f MB); set output_mode to gcs with gcs_bucket (or GCS_BUCKET on the worker), or configure S3 on the worker (BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID, BUCKET_SECRET_ACCESS_KEY), to get URLs instead",
		e.size, float64(e.size)/(1<<20), e.limit, float64(e.limit)/(1<<20))
}

// deliver hands the outputs to kind's sink. A returned (base64) result whose body would exceed
// the response limit is uploaded instead, to the first uploading sink that cfg configures.
// pre is kind's sink when it was opened before the run (an uploading kind), else nil.
func (h *Handler) deliver(ctx context.Context, kind runner.SinkKind, cfg runner.SinkConfig, pre runner.Sink, jobID string, outs []*runner.Output, warnings []string) (*JobOutput, error) {
	if kind.Returned {
		sink, err := kind.Open(ctx, cfg)
		if err != nil {
			return nil, err
		}
		// Put, not Deliver: the bytes stay for an upload when the body is too large.
		for _, o := range outs {
			if err := sink.Put(ctx, o); err != nil {
				return nil, err
			}
		}
		out := buildOutput(outs, warnings, kind.Name)
		body, err := worker.EncodeResult(worker.Result{Output: out})
		if err != nil {
			return nil, err
		}
		size := len(body)
		if size <= h.o.ResponseLimit {
			return out, nil
		}
		up, ok := fallbackSink(cfg)
		if !ok {
			meta := outputFiles(outs)
			for i := range meta {
				meta[i].Data = ""
			}
			return nil, &tooLargeError{size: size, limit: h.o.ResponseLimit, outputs: meta}
		}
		h.log.Info("result over the response limit; uploading the outputs", "bytes", size, "limit", h.o.ResponseLimit, "to", up.Name)
		warnings = append(warnings, fmt.Sprintf("outputs were %d bytes as base64, over the response limit of %d: uploaded to %s instead", size, h.o.ResponseLimit, strings.ToUpper(up.Name)))
		for _, o := range outs {
			o.Data = ""
		}
		kind = up
	}
	sink := pre
	if sink == nil {
		var err error
		if sink, err = kind.Open(ctx, cfg); err != nil {
			return nil, err
		}
		defer runner.CloseSink(sink)
	}
	if err := runner.Deliver(ctx, outs, runner.ForJob(sink, jobID)); err != nil {
		return nil, err
	}
	return buildOutput(outs, warnings, kind.Name), nil
}

// fallbackSink is the first uploading sink, in registry order, that cfg configures.
func fallbackSink(cfg runner.SinkConfig) (runner.SinkKind, bool) {
	for _, k := range runner.SinkKinds() {
		if k.Upload && k.Check(cfg) == nil {
			return k, true
		}
	}
	return runner.SinkKind{}, false
}

func outputFiles(outs []*runner.Output) []OutputFile {
	files := make([]OutputFile, 0, len(outs))
	for _, o := range outs {
		files = append(files, OutputFile{
			NodeID: o.NodeID, Kind: o.Kind, Filename: o.Filename, Subfolder: o.Subfolder, Type: o.Type,
			Mime: o.Mime, Size: o.Size, SHA256: o.SHA256, Text: o.Text, Data: o.Data, URL: o.URL,
		})
	}
	return files
}

// buildOutput is a successful job's output without what ran (version, prompt, timings).
func buildOutput(outs []*runner.Output, warnings []string, mode string) *JobOutput {
	files := outputFiles(outs)
	images := []CompatImage{}
	for _, f := range files {
		if f.Type != "output" || (f.Kind != runner.KindImage && f.Kind != runner.KindVideo) {
			continue
		}
		switch {
		case f.URL != "":
			images = append(images, CompatImage{Filename: f.Filename, Type: CompatURL, Data: f.URL})
		case f.Data != "":
			images = append(images, CompatImage{Filename: f.Filename, Type: CompatBase64, Data: f.Data})
		}
	}
	out := &JobOutput{Outputs: files, Images: images, OutputMode: mode, Errors: warnings}
	if len(images) == 0 {
		out.Status = "success_no_images"
	}
	return out
}
