package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Sink names: the values of run-handler's --output and of a worker job's output_mode.
const (
	SinkBase64 = "base64"
	SinkFile   = "file"
	SinkGCS    = "gcs"
	SinkS3     = "s3"
)

// SinkConfig is what the sinks need; each sink reads its own part.
type SinkConfig struct {
	Dir string     // file
	GCS GCSOptions // gcs
	S3  S3Options  // s3
}

// SinkKind is one output sink, looked up by name. Adding a sink is adding an entry to
// sinkKinds (and its options to SinkConfig).
type SinkKind struct {
	// Name is how users select it.
	Name string
	// Upload: the sink puts outputs in a bucket and sets Output.URL; such a sink can take a
	// result too large to return in the response.
	Upload bool
	// Returned: the sink puts the content into the result itself (Output.Data).
	Returned bool
	// Local: the sink writes on the machine that runs the job (useless on a serverless worker,
	// whose disk goes with it).
	Local bool
	// Check reports what c lacks for this sink, naming the setting, or nil. It does no I/O.
	Check func(c SinkConfig) error
	// Open makes the sink from c (Check first). Release it with CloseSink.
	Open func(ctx context.Context, c SinkConfig) (Sink, error)
}

var sinkKinds = []SinkKind{
	{
		Name: SinkBase64, Returned: true,
		Check: func(SinkConfig) error { return nil },
		Open:  func(context.Context, SinkConfig) (Sink, error) { return Base64Sink{}, nil },
	},
	{
		Name: SinkFile, Local: true,
		Check: func(c SinkConfig) error {
			if c.Dir == "" {
				return errors.New("file output needs a directory (--out-dir)")
			}
			return nil
		},
		Open: func(_ context.Context, c SinkConfig) (Sink, error) { return FileSink{Dir: c.Dir}, nil },
	},
	{
		Name: SinkGCS, Upload: true,
		Check: func(c SinkConfig) error {
			if c.GCS.Bucket == "" {
				return errors.New("gcs output needs a bucket (GCS_BUCKET, --gcs-bucket or a job's gcs_bucket)")
			}
			return nil
		},
		Open: func(ctx context.Context, c SinkConfig) (Sink, error) { return NewGCSSink(ctx, c.GCS) },
	},
	{
		Name: SinkS3, Upload: true,
		Check: func(c SinkConfig) error {
			switch {
			case c.S3.Endpoint == "":
				return errors.New("s3 output needs an S3 endpoint (BUCKET_ENDPOINT_URL, with BUCKET_ACCESS_KEY_ID and BUCKET_SECRET_ACCESS_KEY)")
			case c.S3.AccessKeyID == "" || c.S3.SecretAccessKey == "":
				return errors.New("s3 output needs BUCKET_ACCESS_KEY_ID and BUCKET_SECRET_ACCESS_KEY with BUCKET_ENDPOINT_URL")
			}
			return nil
		},
		Open: func(ctx context.Context, c SinkConfig) (Sink, error) { return NewS3Sink(ctx, c.S3) },
	},
}

// SinkKinds returns every sink, in the order they are documented.
func SinkKinds() []SinkKind { return append([]SinkKind(nil), sinkKinds...) }

// LookupSink returns the sink called name, or an error listing the names.
func LookupSink(name string) (SinkKind, error) {
	for _, k := range sinkKinds {
		if k.Name == name {
			return k, nil
		}
	}
	return SinkKind{}, fmt.Errorf("%q is not an output: use %s", name, SinkNames(nil))
}

// SinkNames lists the names of the sinks keep accepts (all when nil) as "a, b or c".
func SinkNames(keep func(SinkKind) bool) string {
	var names []string
	for _, k := range sinkKinds {
		if keep == nil || keep(k) {
			names = append(names, k.Name)
		}
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// JobSink is a sink that can be narrowed to one job (objects under <prefix>/<job id>/).
type JobSink interface {
	Sink
	ForJob(jobID string) Sink
}

var (
	_ JobSink = (*GCSSink)(nil)
	_ JobSink = (*S3Sink)(nil)
)

// ForJob narrows s to jobID when it is a JobSink, else returns s.
func ForJob(s Sink, jobID string) Sink {
	if js, ok := s.(JobSink); ok {
		return js.ForJob(jobID)
	}
	return s
}

// CloseSink releases what an opened sink holds (a client), if anything.
func CloseSink(s Sink) error {
	if c, ok := s.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
