package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"cloud.google.com/go/storage"
	"github.com/google/uuid"
	"google.golang.org/api/option"
)

// GCSOptions configure the GCS sink. The command line fills them from GCS_BUCKET,
// GCS_PREFIX, GOOGLE_CLOUD_PROJECT / GCS_PROJECT, GOOGLE_APPLICATION_CREDENTIALS,
// GCS_RETRIES, GCS_RETRY_BASE_SLEEP, GCS_PUBLIC, GCS_SIGNED_URL_TTL and GCS_VALIDATE.
type GCSOptions struct {
	Bucket string
	// Prefix is prepended to object names ("a/b" gives a/b/<job>/<file>).
	Prefix string
	// Project is the Google Cloud project (billing for requester-pays buckets); optional.
	Project string
	// CredentialsFile is a credentials JSON file (a service account key can also sign URLs);
	// empty uses Application Default Credentials.
	CredentialsFile string
	// CredentialsJSON is the content of such a file, used instead of CredentialsFile.
	CredentialsJSON []byte
	// Endpoint, when set, is a GCS-compatible JSON API endpoint used without authentication
	// (an emulator such as fake-gcs-server: its URL + "/storage/v1/").
	Endpoint string
	// Retries is how many times a failed upload is retried; RetryBaseSleep (default 1 s) is
	// the first pause, doubled after each failure.
	Retries        int
	RetryBaseSleep time.Duration
	// Public returns https://storage.googleapis.com/<bucket>/<object> URLs (the bucket must
	// be readable by all) instead of V4 signed URLs valid SignedURLTTL (default 1 hour).
	Public       bool
	SignedURLTTL time.Duration
	// PublicBaseURL replaces https://storage.googleapis.com in public URLs.
	PublicBaseURL string
	// Validate checks in NewGCSSink that an object can be written to the bucket.
	Validate bool
	// SignedURLHost and SignedURLInsecure (http) point signed URLs at an emulator.
	SignedURLHost     string
	SignedURLInsecure bool
}

// GCSSink uploads outputs to a GCS bucket and sets their URL.
type GCSSink struct {
	client   *storage.Client
	bucket   *storage.BucketHandle
	opts     GCSOptions
	accessID string
	key      []byte
	owned    bool
}

var _ Sink = (*GCSSink)(nil)

// NewGCSSink connects to GCS. With o.Validate it writes and deletes a probe object, so that a
// missing bucket or permission shows before any work is done.
func NewGCSSink(ctx context.Context, o GCSOptions) (*GCSSink, error) {
	if o.Bucket == "" {
		return nil, errors.New("gcs output: no bucket (GCS_BUCKET or --gcs-bucket)")
	}
	o.Bucket = strings.TrimPrefix(o.Bucket, "gs://")
	if strings.ContainsAny(o.Bucket, "/ ") {
		return nil, fmt.Errorf("gcs output: bad bucket name %q", o.Bucket)
	}
	o.Prefix = strings.Trim(o.Prefix, "/")
	if o.SignedURLTTL <= 0 {
		o.SignedURLTTL = time.Hour
	}
	if o.SignedURLTTL > 7*24*time.Hour {
		return nil, fmt.Errorf("gcs output: signed URL lifetime %s is over the 7 days V4 allows", o.SignedURLTTL)
	}
	if o.RetryBaseSleep <= 0 {
		o.RetryBaseSleep = time.Second
	}
	if o.Retries < 0 {
		o.Retries = 0
	}
	s := &GCSSink{opts: o, owned: true}
	var copts []option.ClientOption
	creds := o.CredentialsJSON
	if creds == nil && o.CredentialsFile != "" {
		b, err := os.ReadFile(o.CredentialsFile)
		if err != nil {
			return nil, fmt.Errorf("gcs output: reading credentials: %w", err)
		}
		creds = b
	}
	if creds != nil {
		var k struct {
			Type        string `json:"type"`
			ClientEmail string `json:"client_email"`
			PrivateKey  string `json:"private_key"`
		}
		if err := json.Unmarshal(creds, &k); err != nil {
			return nil, fmt.Errorf("gcs output: credentials are not JSON: %w", err)
		}
		s.accessID, s.key = k.ClientEmail, []byte(k.PrivateKey)
		if o.Endpoint == "" {
			ct := option.ServiceAccount
			switch k.Type {
			case "service_account":
			case "authorized_user":
				ct = option.AuthorizedUser
			case "impersonated_service_account":
				ct = option.ImpersonatedServiceAccount
			case "external_account":
				ct = option.ExternalAccount
			default:
				return nil, fmt.Errorf("gcs output: unsupported credentials type %q", k.Type)
			}
			copts = append(copts, option.WithAuthCredentialsJSON(ct, creds))
		}
	}
	if o.Endpoint != "" {
		copts = append(copts, option.WithEndpoint(o.Endpoint), option.WithoutAuthentication(), storage.WithJSONReads())
	}
	c, err := storage.NewClient(ctx, copts...)
	if err != nil {
		return nil, fmt.Errorf("gcs output: %w", err)
	}
	s.client = c
	s.bucket = c.Bucket(o.Bucket)
	if o.Project != "" {
		s.bucket = s.bucket.UserProject(o.Project)
	}
	if o.Validate {
		if err := s.validate(ctx); err != nil {
			c.Close()
			return nil, err
		}
	}
	// URLs are signed after the run: a sink that cannot sign fails now instead.
	if !o.Public {
		if _, err := s.objectURL(path.Join(o.Prefix, ".runpod-comfy-sign-check")); err != nil {
			c.Close()
			return nil, fmt.Errorf("gcs output: %w; give a service account key (GOOGLE_APPLICATION_CREDENTIALS) or use public URLs (GCS_PUBLIC=1)", err)
		}
	}
	return s, nil
}

func (s *GCSSink) validate(ctx context.Context) error {
	name := path.Join(s.opts.Prefix, ".runpod-comfy-probe-"+uuid.NewString())
	if err := s.upload(ctx, name, "text/plain", []byte("probe\n")); err != nil {
		return fmt.Errorf("gcs output: bucket %s is not writable: %w", s.opts.Bucket, err)
	}
	// Deleting needs another permission that writers may lack; the probe is tiny.
	_ = s.bucket.Object(name).Delete(ctx)
	return nil
}

// ForJob returns a sink writing below <prefix>/<jobID>/; it shares the client.
func (s *GCSSink) ForJob(jobID string) Sink {
	c := *s
	c.opts.Prefix = path.Join(s.opts.Prefix, jobID)
	c.owned = false
	return &c
}

// Close closes the client (not for sinks returned by ForJob).
func (s *GCSSink) Close() error {
	if !s.owned {
		return nil
	}
	return s.client.Close()
}

// Put uploads one output, retrying with backoff, and sets its URL.
func (s *GCSSink) Put(ctx context.Context, o *Output) error {
	rel, err := outputName(o)
	if err != nil {
		return err
	}
	name := path.Join(s.opts.Prefix, rel)
	if err := s.upload(ctx, name, o.Mime, o.Bytes); err != nil {
		return fmt.Errorf("gcs output: gs://%s/%s: %w", s.opts.Bucket, name, err)
	}
	u, err := s.objectURL(name)
	if err != nil {
		return fmt.Errorf("gcs output: gs://%s/%s: %w", s.opts.Bucket, name, err)
	}
	o.URL = u
	o.GCSPath = "gs://" + s.opts.Bucket + "/" + name
	o.PublicURL = s.publicURL(name)
	return nil
}

// publicURL is the https URL of object name in the bucket, as read when the bucket is public.
func (s *GCSSink) publicURL(name string) string {
	base := s.opts.PublicBaseURL
	if base == "" {
		base = "https://storage.googleapis.com"
	}
	return strings.TrimRight(base, "/") + "/" + s.opts.Bucket + "/" + escapeObject(name)
}

// upload writes one object with a CRC32C check, Retries+1 attempts in all.
func (s *GCSSink) upload(ctx context.Context, name, ctype string, data []byte) error {
	crc := crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))
	sleep := s.opts.RetryBaseSleep
	var err error
	for attempt := 0; attempt <= s.opts.Retries; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w (after: %v)", ctx.Err(), err)
			case <-time.After(sleep):
			}
			sleep *= 2
		}
		obj := s.bucket.Object(name).Retryer(storage.WithPolicy(storage.RetryNever))
		w := obj.NewWriter(ctx)
		w.ContentType = ctype
		w.ChunkSize = 0 // one request; retries are ours
		w.CRC32C = crc
		w.SendCRC32C = true
		_, err = io.Copy(w, bytes.NewReader(data))
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
	}
	if s.opts.Retries > 0 {
		return fmt.Errorf("after %d attempts: %w", s.opts.Retries+1, err)
	}
	return err
}

func (s *GCSSink) objectURL(name string) (string, error) {
	if s.opts.Public {
		base := s.opts.PublicBaseURL
		if base == "" {
			base = "https://storage.googleapis.com"
		}
		return strings.TrimRight(base, "/") + "/" + s.opts.Bucket + "/" + escapeObject(name), nil
	}
	so := &storage.SignedURLOptions{
		Method:   "GET",
		Expires:  time.Now().Add(s.opts.SignedURLTTL),
		Scheme:   storage.SigningSchemeV4,
		Hostname: s.opts.SignedURLHost,
		Insecure: s.opts.SignedURLInsecure,
	}
	if s.opts.SignedURLHost != "" {
		so.Style = storage.PathStyle()
	}
	if s.accessID != "" && len(s.key) > 0 {
		so.GoogleAccessID, so.PrivateKey = s.accessID, s.key
	}
	u, err := s.bucket.SignedURL(name, so)
	if err != nil {
		return "", fmt.Errorf("signing a URL (needs a service account key or signBlob permission): %w", err)
	}
	return u, nil
}

func escapeObject(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}
