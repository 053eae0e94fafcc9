package runner

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/internal/atomicfile"
)

// Output kinds.
const (
	KindImage = "image"
	KindVideo = "video"
	KindAudio = "audio"
	KindText  = "text"
	KindFile  = "file"
)

// Output is one result of a job: a file fetched through /view or a text. Bytes holds the
// content until a sink delivers it; the sink then fills Data, URL or Path.
type Output struct {
	NodeID    string `json:"node_id"`
	Filename  string `json:"filename"`
	Subfolder string `json:"subfolder,omitempty"`
	Type      string `json:"type"` // output | temp | text
	Kind      string `json:"kind"` // image | video | audio | text | file
	Mime      string `json:"mime"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"`
	Text      string `json:"text,omitempty"`
	Data      string `json:"data,omitempty"` // base64 sink
	URL       string `json:"url,omitempty"`  // gcs sink
	// GCSPath is gs://<bucket>/<object> and PublicURL the object's https URL
	// (storage.googleapis.com, or the public base URL), set by the gcs sink.
	GCSPath   string `json:"-"`
	PublicURL string `json:"-"`
	Path      string `json:"path,omitempty"` // file sink
	Bytes     []byte `json:"-"`
}

// kindOf maps a media type to an output kind.
func kindOf(mime string) string {
	switch {
	case strings.HasPrefix(mime, "image/"):
		return KindImage
	case strings.HasPrefix(mime, "video/"):
		return KindVideo
	case strings.HasPrefix(mime, "audio/"):
		return KindAudio
	case strings.HasPrefix(mime, "text/"):
		return KindText
	}
	return KindFile
}

// Sink delivers outputs somewhere and records where in the output (Data, URL or Path).
type Sink interface {
	Put(ctx context.Context, o *Output) error
}

// Deliver hands every output to the sink in order and drops their bytes once delivered.
func Deliver(ctx context.Context, outs []*Output, s Sink) error {
	for _, o := range outs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.Put(ctx, o); err != nil {
			return fmt.Errorf("delivering %s of node %s: %w", o.Filename, o.NodeID, err)
		}
		o.Bytes = nil
	}
	return nil
}

// Base64Sink puts each output's content into its Data field, base64 (standard, padded).
type Base64Sink struct{}

var _ Sink = Base64Sink{}

// Put sets o.Data.
func (Base64Sink) Put(_ context.Context, o *Output) error {
	o.Data = base64.StdEncoding.EncodeToString(o.Bytes)
	return nil
}

// FileSink writes each output to Dir/<subfolder>/<filename> atomically (temp file, fsync,
// rename) and sets Path to the absolute file name.
type FileSink struct {
	Dir string
}

var _ Sink = FileSink{}

// Put writes one output file.
func (s FileSink) Put(_ context.Context, o *Output) error {
	if s.Dir == "" {
		return fmt.Errorf("file output: no directory")
	}
	rel, err := outputName(o)
	if err != nil {
		return err
	}
	p := filepath.Join(s.Dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("file output: %w", err)
	}
	if err := atomicfile.WriteFile(p, o.Bytes, 0o644); err != nil {
		return fmt.Errorf("file output: %w", err)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return err
	}
	o.Path = abs
	return nil
}

// outputName is an output's relative name (subfolder/filename), refused when it would leave
// the destination.
func outputName(o *Output) (string, error) {
	rel := o.Filename
	if o.Subfolder != "" {
		rel = o.Subfolder + "/" + o.Filename
	}
	rel = strings.ReplaceAll(rel, `\`, "/")
	if !filepath.IsLocal(filepath.FromSlash(rel)) || strings.HasPrefix(rel, "/") {
		return "", fmt.Errorf("output name %q leaves the output directory", rel)
	}
	return filepath.ToSlash(filepath.Clean(filepath.FromSlash(rel))), nil
}
