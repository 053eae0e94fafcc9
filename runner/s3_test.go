package runner

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/runpod-comfy/runpod-comfy/internal/s3test"
)

func s3Output(name string, data []byte) *Output {
	sum := sha256.Sum256(data)
	return &Output{NodeID: "9", Filename: name, Subfolder: "sub", Type: "output", Kind: KindImage, Mime: "image/png",
		Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]), Bytes: data}
}

func TestS3SinkUploadsAndReturnsPresignedURL(t *testing.T) {
	srv := s3test.New(t, s3test.Options{Buckets: []string{"outs"}})
	ctx := context.Background()
	s, err := NewS3Sink(ctx, S3Options{
		Endpoint: srv.URL + "/outs", AccessKeyID: srv.AccessKey, SecretAccessKey: srv.Secret,
		Prefix: "/runs/", URLTTL: 10 * time.Minute, Validate: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("\x89PNG\r\n\x1a\n not really a png, with a space and \x00 bytes")
	o := s3Output("a b+c.png", data)
	if err := Deliver(ctx, []*Output{o}, ForJob(s, "job-1")); err != nil {
		t.Fatal(err)
	}
	if o.Bytes != nil || o.Data != "" {
		t.Errorf("after delivery Bytes=%d Data=%q, want both empty", len(o.Bytes), o.Data)
	}
	got, ctype, err := srv.Object("outs", "runs/job-1/sub/a b+c.png")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(data) || ctype != "image/png" {
		t.Errorf("stored %q (%s), want the output's bytes as image/png", got, ctype)
	}
	keys, _ := srv.Keys("outs")
	if diff := cmp.Diff([]string{"runs/.runpod-comfy-probe", "runs/job-1/sub/a b+c.png"}, keys); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
	u, err := url.Parse(o.URL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" || q.Get("X-Amz-Expires") != "600" || !strings.HasPrefix(q.Get("X-Amz-Credential"), srv.AccessKey+"/") {
		t.Errorf("URL %s is not a SigV4 pre-signed URL valid 600 s", o.URL)
	}
	if strings.Contains(o.URL, srv.Secret) || strings.Contains(o.URL, url.QueryEscape(srv.Secret)) {
		t.Fatal("the URL contains the secret")
	}
	// A client reads the URL with a plain GET.
	body, err := s3test.Get(ctx, http.DefaultClient, o.URL)
	if err != nil || string(body) != string(data) {
		t.Fatalf("GET the URL: %q, %v", body, err)
	}
	// The URL is a signature, not a loophole: another key or a changed signature is refused,
	// and so is the object without one.
	other := strings.Replace(o.URL, "a%20b%2Bc.png", ".runpod-comfy-probe", 1)
	other = strings.Replace(other, "/job-1/sub/", "/", 1)
	for name, bad := range map[string]string{
		"other key":     other,
		"bad signature": o.URL[:len(o.URL)-4] + "0000",
		"unsigned":      srv.URL + "/outs/runs/job-1/sub/a%20b%2Bc.png",
	} {
		if _, err := s3test.Get(ctx, http.DefaultClient, bad); err == nil || !strings.Contains(err.Error(), "403") {
			t.Errorf("%s: GET %s: %v, want 403", name, bad, err)
		}
	}
}

func TestS3SinkRefusesWrongCredentials(t *testing.T) {
	srv := s3test.New(t, s3test.Options{Buckets: []string{"outs"}})
	ctx := context.Background()
	cases := []struct {
		name string
		o    S3Options
		want string
	}{
		{"wrong secret", S3Options{AccessKeyID: srv.AccessKey, SecretAccessKey: "not-the-secret-at-all"}, "SignatureDoesNotMatch"},
		{"unknown key", S3Options{AccessKeyID: "AKIDNOBODY", SecretAccessKey: srv.Secret}, "does not know this access key id"},
		{"wrong region", S3Options{AccessKeyID: srv.AccessKey, SecretAccessKey: srv.Secret, Region: "eu-west-3"}, "region"},
		{"no bucket", S3Options{AccessKeyID: srv.AccessKey, SecretAccessKey: srv.Secret, Bucket: "nope"}, "bucket does not exist"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.o.Endpoint = srv.URL
			if c.o.Bucket == "" {
				c.o.Bucket = "outs"
			}
			c.o.Validate = true
			c.o.Retries = 1
			_, err := NewS3Sink(ctx, c.o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("NewS3Sink: %v, want an error with %q", err, c.want)
			}
			if strings.Contains(err.Error(), c.o.SecretAccessKey) {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
	if keys, _ := srv.Keys("outs"); len(keys) != 0 {
		t.Errorf("refused requests stored %v", keys)
	}
	if _, refused := srv.Stats(); len(refused) == 0 {
		t.Error("the server refused nothing")
	}
}

func TestS3SinkChecksOptions(t *testing.T) {
	base := S3Options{Endpoint: "https://s3.example.com/outs", AccessKeyID: "AK", SecretAccessKey: "SK"}
	cases := []struct {
		name string
		edit func(*S3Options)
		want string
	}{
		{"no endpoint", func(o *S3Options) { o.Endpoint = "" }, "no endpoint URL"},
		{"no secret", func(o *S3Options) { o.SecretAccessKey = "" }, "are both required"},
		{"secret with newline", func(o *S3Options) { o.SecretAccessKey = "SK\n" }, "newline"},
		{"no bucket", func(o *S3Options) { o.Endpoint = "https://s3.example.com" }, "names no bucket"},
		{"two buckets", func(o *S3Options) { o.Bucket = "other" }, `names bucket "outs" but the bucket setting says "other"`},
		{"bad bucket", func(o *S3Options) { o.Endpoint = "https://s3.example.com/Outs" }, "bucket name"},
		{"ftp", func(o *S3Options) { o.Endpoint = "ftp://s3.example.com/outs" }, "want an http(s) URL"},
		{"user info", func(o *S3Options) { o.Endpoint = "https://AK:SK@s3.example.com/outs" }, "carries credentials"},
		{"query", func(o *S3Options) { o.Endpoint = "https://s3.example.com/outs?x=1" }, "query"},
		{"deep path", func(o *S3Options) { o.Endpoint = "https://s3.example.com/outs/runs" }, "only the bucket"},
		{"ttl", func(o *S3Options) { o.URLTTL = 8 * 24 * time.Hour }, "over the 7 days"},
		{"addressing", func(o *S3Options) { o.Addressing = "dns" }, `addressing "dns"`},
		{"path style, bucket in host", func(o *S3Options) {
			o.Endpoint, o.Addressing = "https://outs.s3.us-west-2.amazonaws.com", S3AddressingPath
		}, "virtual-host"},
		{"public base", func(o *S3Options) { o.PublicBaseURL = "cdn.example.com" }, "public base URL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := base
			c.edit(&o)
			_, err := NewS3Sink(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("NewS3Sink: %v, want an error with %q", err, c.want)
			}
			if strings.Contains(err.Error(), ":SK@") {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
}

func TestParseS3Endpoint(t *testing.T) {
	cases := []struct {
		in   string
		want S3Endpoint
	}{
		{"https://my-bucket.s3.us-west-2.amazonaws.com", S3Endpoint{Host: "s3.us-west-2.amazonaws.com", Secure: true, Bucket: "my-bucket", Region: "us-west-2", Virtual: true}},
		{"https://my-bucket.s3.amazonaws.com/", S3Endpoint{Host: "s3.amazonaws.com", Secure: true, Bucket: "my-bucket", Virtual: true}},
		{"https://my.dotted.bucket.s3-eu-west-1.amazonaws.com", S3Endpoint{Host: "s3-eu-west-1.amazonaws.com", Secure: true, Bucket: "my.dotted.bucket", Region: "eu-west-1", Virtual: true}},
		{"https://s3.eu-central-1.amazonaws.com/outs", S3Endpoint{Host: "s3.eu-central-1.amazonaws.com", Secure: true, Bucket: "outs", Region: "eu-central-1"}},
		{"https://0123abcd.r2.cloudflarestorage.com/outs", S3Endpoint{Host: "0123abcd.r2.cloudflarestorage.com", Secure: true, Bucket: "outs"}},
		{"https://0123abcd.r2.cloudflarestorage.com", S3Endpoint{Host: "0123abcd.r2.cloudflarestorage.com", Secure: true}},
		{"https://s3.us-west-004.backblazeb2.com/outs", S3Endpoint{Host: "s3.us-west-004.backblazeb2.com", Secure: true, Bucket: "outs", Region: "us-west-004"}},
		{"https://outs.nyc3.digitaloceanspaces.com", S3Endpoint{Host: "nyc3.digitaloceanspaces.com", Secure: true, Bucket: "outs", Region: "nyc3", Virtual: true}},
		{"https://nyc3.digitaloceanspaces.com/outs", S3Endpoint{Host: "nyc3.digitaloceanspaces.com", Secure: true, Bucket: "outs", Region: "nyc3"}},
		{"http://127.0.0.1:9000/outs", S3Endpoint{Host: "127.0.0.1:9000", Bucket: "outs"}},
		{"http://minio.local:9000", S3Endpoint{Host: "minio.local:9000"}},
	}
	for _, c := range cases {
		got, err := ParseS3Endpoint(c.in)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.in, diff)
		}
	}
}

// TestS3SinkVirtualHostEndpoint uses worker-comfyui's documented endpoint form
// https://<bucket>.s3.<region>.amazonaws.com: the bucket and region come from the host and
// requests go virtual-host style over TLS (to the loopback server, whatever the name).
func TestS3SinkVirtualHostEndpoint(t *testing.T) {
	srv := s3test.New(t, s3test.Options{Buckets: []string{"my-bucket"}, Region: "us-west-2", TLS: true,
		HostBucketBase: []string{"s3.us-west-2.amazonaws.com"}})
	addr := strings.TrimPrefix(srv.URL, "https://")
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // httptest's certificate is for 127.0.0.1
	}
	ctx := context.Background()
	s, err := NewS3Sink(ctx, S3Options{
		Endpoint: "https://my-bucket.s3.us-west-2.amazonaws.com", AccessKeyID: srv.AccessKey, SecretAccessKey: srv.Secret,
		Transport: tr, Validate: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	o := s3Output("x.png", []byte("png bytes"))
	if err := Deliver(ctx, []*Output{o}, ForJob(s, "job-2")); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(o.URL, "https://my-bucket.s3.us-west-2.amazonaws.com/job-2/sub/x.png?X-Amz-Algorithm=") {
		t.Errorf("URL %s, want a virtual-host pre-signed URL", o.URL)
	}
	if !strings.Contains(o.URL, "%2Fus-west-2%2Fs3%2Faws4_request") {
		t.Errorf("URL %s is not signed for us-west-2", o.URL)
	}
	body, err := s3test.Get(ctx, &http.Client{Transport: tr}, o.URL)
	if err != nil || string(body) != "png bytes" {
		t.Fatalf("GET the URL: %q, %v", body, err)
	}
}

func TestS3SinkPublicBaseURL(t *testing.T) {
	srv := s3test.New(t, s3test.Options{Buckets: []string{"outs"}})
	ctx := context.Background()
	s, err := NewS3Sink(ctx, S3Options{
		Endpoint: srv.URL, Bucket: "outs", AccessKeyID: srv.AccessKey, SecretAccessKey: srv.Secret,
		PublicBaseURL: "https://cdn.example.com/media/",
	})
	if err != nil {
		t.Fatal(err)
	}
	o := s3Output("a b.png", []byte("x"))
	if err := Deliver(ctx, []*Output{o}, ForJob(s, "j")); err != nil {
		t.Fatal(err)
	}
	if o.URL != "https://cdn.example.com/media/j/sub/a%20b.png" {
		t.Errorf("URL %s", o.URL)
	}
}

func TestSinkRegistry(t *testing.T) {
	var names []string
	for _, k := range SinkKinds() {
		names = append(names, k.Name)
		if k.Check == nil || k.Open == nil {
			t.Errorf("sink %s lacks Check or Open", k.Name)
		}
	}
	if diff := cmp.Diff([]string{"base64", "file", "gcs", "s3"}, names); diff != "" {
		t.Errorf("sinks (-want +got):\n%s", diff)
	}
	if _, err := LookupSink("ftp"); err == nil || !strings.Contains(err.Error(), `"ftp" is not an output: use base64, file, gcs or s3`) {
		t.Errorf("LookupSink(ftp): %v", err)
	}
	s3, _ := LookupSink("s3")
	if err := s3.Check(SinkConfig{}); err == nil || !strings.Contains(err.Error(), "BUCKET_ENDPOINT_URL") {
		t.Errorf("s3 Check without settings: %v", err)
	}
	if err := s3.Check(SinkConfig{S3: S3Options{Endpoint: "https://x/b", AccessKeyID: "a"}}); err == nil || !strings.Contains(err.Error(), "BUCKET_SECRET_ACCESS_KEY") {
		t.Errorf("s3 Check without a secret: %v", err)
	}
	if got := SinkNames(func(k SinkKind) bool { return k.Upload }); got != "gcs or s3" {
		t.Errorf("upload sinks %q", got)
	}
}
