package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3 addressing styles (S3Options.Addressing).
const (
	S3AddressingAuto    = "auto"    // virtual-host for AWS, path style elsewhere
	S3AddressingPath    = "path"    // https://host/<bucket>/<key>
	S3AddressingVirtual = "virtual" // https://<bucket>.host/<key>
)

// DefaultS3URLTTL is how long a pre-signed URL of an S3 output stays valid: 7 days, the most
// SigV4 allows and what worker-comfyui's uploads (RunPod's rp_upload) return.
const DefaultS3URLTTL = 7 * 24 * time.Hour

// S3Options configure the S3 sink, for any S3-compatible store (AWS S3, Cloudflare R2,
// Backblaze B2, DigitalOcean Spaces, MinIO ...). The command line fills them from
// BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID, BUCKET_SECRET_ACCESS_KEY and the other BUCKET_*
// variables (docs/runpod.md).
type S3Options struct {
	// Endpoint is the store's URL as worker-comfyui takes it: https://<bucket>.s3.<region>.amazonaws.com
	// (the bucket and region are read from the host), https://host/<bucket> (path style), or
	// https://host with Bucket set.
	Endpoint string
	// Bucket names the bucket when Endpoint does not; when both do they must agree.
	Bucket string
	// Region is the signing region; default: from an AWS or DigitalOcean host, else us-east-1
	// (Cloudflare R2 takes "auto", which it also accepts as us-east-1).
	Region string
	// AccessKeyID, SecretAccessKey and the optional SessionToken sign every request (SigV4).
	AccessKeyID, SecretAccessKey, SessionToken string
	// Addressing is auto (default), path or virtual. An endpoint with the bucket in its host
	// is virtual-host addressed.
	Addressing string
	// Prefix is prepended to object keys (<prefix>/<job id>/<file>).
	Prefix string
	// URLTTL is the lifetime of the pre-signed GET URLs returned; default DefaultS3URLTTL, at
	// most 7 days.
	URLTTL time.Duration
	// PublicBaseURL, when set, makes the URLs <PublicBaseURL>/<key> instead of pre-signed
	// ones (a public bucket or a CDN in front of it).
	PublicBaseURL string
	// Retries is how many times a failed request is retried by the client (default 3).
	Retries int
	// Validate writes a small probe object (<prefix>/.runpod-comfy-probe) in NewS3Sink, so
	// that unusable credentials or a missing bucket show before any work is done. It needs
	// only s3:PutObject, as uploads do.
	Validate bool
	// Transport is the HTTP transport (default: Go's default transport).
	Transport http.RoundTripper
}

// S3Endpoint is a parsed S3 endpoint: the host the client talks to, the bucket and region.
type S3Endpoint struct {
	Host    string // host[:port], without the bucket label of a virtual-host endpoint
	Secure  bool   // https
	Bucket  string
	Region  string
	Virtual bool // the bucket was in the host: address it that way
}

// ParseS3Endpoint reads an S3 endpoint URL the way worker-comfyui users write it. It refuses
// URLs with credentials, a query or fragment, or more than a bucket in the path.
func ParseS3Endpoint(raw string) (S3Endpoint, error) {
	var e S3Endpoint
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return e, fmt.Errorf("endpoint %q is not a URL: %w", raw, err)
	}
	switch u.Scheme {
	case "https":
		e.Secure = true
	case "http":
	default:
		return e, fmt.Errorf("endpoint %q: want an http(s) URL such as https://<bucket>.s3.<region>.amazonaws.com", raw)
	}
	if u.User != nil {
		return e, errors.New("endpoint: the URL carries credentials; give them as the access key id and secret instead")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return e, fmt.Errorf("endpoint %s: a query or fragment is not allowed", u.Redacted())
	}
	if u.Host == "" || u.Hostname() == "" {
		return e, fmt.Errorf("endpoint %q has no host", raw)
	}
	host := strings.ToLower(u.Host)
	if p := strings.Trim(u.Path, "/"); p != "" {
		if strings.Contains(p, "/") {
			return e, fmt.Errorf("endpoint %s: the path may name only the bucket (give a key prefix as the prefix setting)", u.Redacted())
		}
		e.Bucket = p
	}
	hostname := strings.ToLower(u.Hostname())
	port := u.Port()
	withPort := func(h string) string {
		if port == "" {
			return h
		}
		return net.JoinHostPort(h, port)
	}
	e.Host = host
	switch {
	case net.ParseIP(hostname) != nil:
	case strings.Contains(hostname, ".s3.") || strings.Contains(hostname, ".s3-"):
		// <bucket>.s3.<region>.amazonaws.com, <bucket>.s3-<region>.amazonaws.com,
		// <bucket>.s3.amazonaws.com, and the same shape at other providers.
		i := strings.Index(hostname, ".s3.")
		if j := strings.Index(hostname, ".s3-"); i < 0 || (j >= 0 && j < i) {
			i = j
		}
		if e.Bucket != "" {
			return e, fmt.Errorf("endpoint %s names the bucket twice (host and path)", u.Redacted())
		}
		e.Bucket = hostname[:i]
		rest := hostname[i+1:] // s3.<region>.amazonaws.com or s3-<region>.amazonaws.com
		e.Host = withPort(rest)
		e.Virtual = true
		e.Region = regionOf(rest)
	case strings.HasPrefix(hostname, "s3.") || strings.HasPrefix(hostname, "s3-"):
		e.Region = regionOf(hostname)
	case strings.HasSuffix(hostname, ".digitaloceanspaces.com"):
		labels := strings.Split(hostname, ".")
		if len(labels) == 4 { // <bucket>.<region>.digitaloceanspaces.com
			if e.Bucket != "" {
				return e, fmt.Errorf("endpoint %s names the bucket twice (host and path)", u.Redacted())
			}
			e.Bucket, e.Region = labels[0], labels[1]
			e.Host = withPort(strings.Join(labels[1:], "."))
			e.Virtual = true
		} else if len(labels) == 3 {
			e.Region = labels[0]
		}
	}
	return e, nil
}

// regionOf reads the region from s3.<region>.<domain> or s3-<region>.<domain>; "" when the
// host has none (s3.amazonaws.com).
func regionOf(host string) string {
	labels := strings.Split(host, ".")
	if len(labels) == 0 {
		return ""
	}
	if r, ok := strings.CutPrefix(labels[0], "s3-"); ok {
		return r
	}
	if labels[0] == "s3" && len(labels) >= 4 && labels[1] != "dualstack" {
		return labels[1]
	}
	if labels[0] == "s3" && len(labels) >= 5 && labels[1] == "dualstack" {
		return labels[2]
	}
	return ""
}

// S3Sink uploads outputs to an S3-compatible bucket and sets their URL (pre-signed, or under
// PublicBaseURL).
type S3Sink struct {
	client *minio.Client
	opts   S3Options
	ep     S3Endpoint
}

var _ Sink = (*S3Sink)(nil)

// NewS3Sink checks the options and makes the client; with o.Validate it writes a probe object.
// Errors never contain the secret.
func NewS3Sink(ctx context.Context, o S3Options) (*S3Sink, error) {
	if o.Endpoint == "" {
		return nil, errors.New("s3 output: no endpoint URL (BUCKET_ENDPOINT_URL)")
	}
	ep, err := ParseS3Endpoint(o.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("s3 output: %w", err)
	}
	switch {
	case o.Bucket == "" && ep.Bucket == "":
		return nil, fmt.Errorf("s3 output: the endpoint %s names no bucket: use https://<bucket>.s3.<region>.amazonaws.com, https://host/<bucket>, or set the bucket (BUCKET_NAME)", o.Endpoint)
	case o.Bucket != "" && ep.Bucket != "" && o.Bucket != ep.Bucket:
		return nil, fmt.Errorf("s3 output: the endpoint names bucket %q but the bucket setting says %q", ep.Bucket, o.Bucket)
	case o.Bucket != "":
		ep.Bucket = o.Bucket
	}
	if err := checkBucketName(ep.Bucket); err != nil {
		return nil, fmt.Errorf("s3 output: %w", err)
	}
	if o.AccessKeyID == "" || o.SecretAccessKey == "" {
		return nil, errors.New("s3 output: the access key id and secret access key (BUCKET_ACCESS_KEY_ID, BUCKET_SECRET_ACCESS_KEY) are both required")
	}
	if strings.ContainsAny(o.AccessKeyID, " \t\r\n/") {
		return nil, errors.New("s3 output: the access key id contains a space, newline or slash")
	}
	if strings.ContainsAny(o.SecretAccessKey, " \t\r\n") {
		return nil, errors.New("s3 output: the secret access key contains a space or newline (copied with the line end?)")
	}
	if o.Region == "" {
		o.Region = ep.Region
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	ep.Region = o.Region
	lookup := minio.BucketLookupAuto
	switch o.Addressing {
	case "", S3AddressingAuto:
		if ep.Virtual {
			lookup = minio.BucketLookupDNS
		}
	case S3AddressingPath:
		if ep.Virtual {
			return nil, fmt.Errorf("s3 output: the endpoint %s has the bucket in its host, which is virtual-host addressing; for path style give https://host/<bucket>", o.Endpoint)
		}
		lookup = minio.BucketLookupPath
	case S3AddressingVirtual:
		lookup = minio.BucketLookupDNS
	default:
		return nil, fmt.Errorf("s3 output: addressing %q: use auto, path or virtual", o.Addressing)
	}
	if o.URLTTL <= 0 {
		o.URLTTL = DefaultS3URLTTL
	}
	if o.URLTTL > DefaultS3URLTTL {
		return nil, fmt.Errorf("s3 output: URL lifetime %s is over the 7 days SigV4 allows", o.URLTTL)
	}
	if o.PublicBaseURL != "" {
		pu, err := url.Parse(o.PublicBaseURL)
		if err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" || pu.User != nil || pu.RawQuery != "" {
			return nil, fmt.Errorf("s3 output: public base URL %q is not a plain http(s) URL", o.PublicBaseURL)
		}
	}
	if o.Retries < 0 {
		o.Retries = 0
	}
	if o.Retries == 0 {
		o.Retries = 3
	}
	o.Prefix = strings.Trim(o.Prefix, "/")
	c, err := minio.New(ep.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(o.AccessKeyID, o.SecretAccessKey, o.SessionToken),
		Secure:       ep.Secure,
		Region:       o.Region,
		BucketLookup: lookup,
		Transport:    o.Transport,
		MaxRetries:   o.Retries + 1,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 output: %w", err)
	}
	// The URLs returned use the host the user gave, not AWS's dual-stack variant.
	c.SetS3EnableDualstack(false)
	s := &S3Sink{client: c, opts: o, ep: ep}
	if o.Validate {
		if err := s.validate(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// checkBucketName applies S3's bucket naming rules loosely (3-63 characters of lower-case
// letters, digits, dots and hyphens; R2 and MinIO follow them too).
func checkBucketName(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket name %q: want 3 to 63 characters", b)
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("bucket name %q: only lower-case letters, digits, '.', '-' and '_' are allowed", b)
		}
	}
	return nil
}

// Bucket is the bucket the sink writes to.
func (s *S3Sink) Bucket() string { return s.ep.Bucket }

func (s *S3Sink) validate(ctx context.Context) error {
	key := path.Join(s.opts.Prefix, ".runpod-comfy-probe")
	if err := s.upload(ctx, key, "text/plain", []byte("probe\n")); err != nil {
		return fmt.Errorf("s3 output: cannot write to bucket %s at %s: %w", s.ep.Bucket, s.opts.Endpoint, err)
	}
	return nil
}

// ForJob returns a sink writing below <prefix>/<jobID>/; it shares the client.
func (s *S3Sink) ForJob(jobID string) Sink {
	c := *s
	c.opts.Prefix = path.Join(s.opts.Prefix, jobID)
	return &c
}

// Put uploads one output and sets its URL.
func (s *S3Sink) Put(ctx context.Context, o *Output) error {
	rel, err := outputName(o)
	if err != nil {
		return err
	}
	key := path.Join(s.opts.Prefix, rel)
	if err := s.upload(ctx, key, o.Mime, o.Bytes); err != nil {
		return fmt.Errorf("s3 output: s3://%s/%s: %w", s.ep.Bucket, key, err)
	}
	if s.opts.PublicBaseURL != "" {
		o.URL = strings.TrimRight(s.opts.PublicBaseURL, "/") + "/" + escapeObject(key)
		return nil
	}
	u, err := s.client.PresignedGetObject(ctx, s.ep.Bucket, key, s.opts.URLTTL, nil)
	if err != nil {
		return fmt.Errorf("s3 output: signing a URL for s3://%s/%s: %w", s.ep.Bucket, key, err)
	}
	o.URL = u.String()
	return nil
}

func (s *S3Sink) upload(ctx context.Context, key, ctype string, data []byte) error {
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	_, err := s.client.PutObject(ctx, s.ep.Bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{
		ContentType: ctype,
		// One PUT: outputs are in memory already (a PUT takes up to 5 GiB).
		DisableMultipart: true,
	})
	return explainS3Error(err)
}

// explainS3Error adds what to check to the S3 error codes a misconfiguration gives.
func explainS3Error(err error) error {
	if err == nil {
		return nil
	}
	er := minio.ToErrorResponse(err)
	hint := ""
	switch er.Code {
	case "InvalidAccessKeyId":
		hint = "the store does not know this access key id (BUCKET_ACCESS_KEY_ID)"
	case "SignatureDoesNotMatch":
		hint = "the secret access key (BUCKET_SECRET_ACCESS_KEY) does not belong to the access key id, or the region is wrong"
	case "AuthorizationHeaderMalformed":
		hint = "the region is wrong for this bucket (BUCKET_REGION)"
	case "NoSuchBucket":
		hint = "the bucket does not exist at this endpoint"
	case "AccessDenied":
		hint = "the key lacks s3:PutObject on this bucket"
	case "RequestTimeTooSkewed":
		hint = "the machine's clock is off"
	}
	if hint == "" {
		return err
	}
	return fmt.Errorf("%s: %w (%s)", er.Code, err, hint)
}
