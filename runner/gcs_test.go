package runner

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
)

func fakeGCS(t *testing.T) *fakestorage.Server {
	t.Helper()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1", Port: 0, PublicHost: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "outs"})
	t.Cleanup(srv.Stop)
	return srv
}

// serviceAccount returns a service account key JSON with a fresh RSA key.
func serviceAccount(t *testing.T) ([]byte, *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]string{
		"type":         "service_account",
		"project_id":   "test",
		"client_email": "runner@test.iam.gserviceaccount.com",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"token_uri":    "http://127.0.0.1:1/token",
	})
	return b, key
}

// verifyV4 checks a V4 signed URL's signature with the service account's public key, as GCS
// does: the string to sign is built from the canonical request (method, path, sorted query
// without the signature, the host header, UNSIGNED-PAYLOAD).
func verifyV4(u *url.URL, pub *rsa.PublicKey) error {
	q := u.Query()
	sig, err := hex.DecodeString(q.Get("X-Goog-Signature"))
	if err != nil {
		return err
	}
	q.Del("X-Goog-Signature")
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, v4Escape(k)+"="+v4Escape(q.Get(k)))
	}
	canonical := strings.Join([]string{"GET", u.EscapedPath(), strings.Join(parts, "&"), "host:" + u.Hostname(), "", "host", "UNSIGNED-PAYLOAD"}, "\n")
	cred := q.Get("X-Goog-Credential")
	scope := cred[strings.Index(cred, "/")+1:]
	h := sha256.Sum256([]byte(canonical))
	toSign := strings.Join([]string{"GOOG4-RSA-SHA256", q.Get("X-Goog-Date"), scope, hex.EncodeToString(h[:])}, "\n")
	d := sha256.Sum256([]byte(toSign))
	return rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig)
}

func v4Escape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

func testOutputs() []*Output {
	return []*Output{
		{NodeID: "9", Filename: "a_00001_.png", Subfolder: "sub", Type: "output", Kind: KindImage, Mime: "image/png", Bytes: []byte("\x89PNG fake")},
		textOutput("3", 0, "hello"),
	}
}

func TestGCSSignedURLs(t *testing.T) {
	srv := fakeGCS(t)
	u, _ := url.Parse(srv.URL())
	ctx := context.Background()
	sa, key := serviceAccount(t)
	s, err := NewGCSSink(ctx, GCSOptions{
		Bucket: "outs", Prefix: "runs/", CredentialsJSON: sa,
		Endpoint: srv.URL() + "/storage/v1/", SignedURLTTL: 90 * time.Second,
		SignedURLHost: u.Host, SignedURLInsecure: true, Validate: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	outs := testOutputs()
	if err := Deliver(ctx, outs, s.ForJob("job-1")); err != nil {
		t.Fatal(err)
	}
	for _, o := range outs {
		su, err := url.Parse(o.URL)
		if err != nil {
			t.Fatal(err)
		}
		q := su.Query()
		if exp := q.Get("X-Goog-Expires"); q.Get("X-Goog-Algorithm") != "GOOG4-RSA-SHA256" || (exp != "90" && exp != "89") ||
			!strings.HasPrefix(q.Get("X-Goog-Credential"), "runner@test.iam.gserviceaccount.com/") {
			t.Errorf("not a V4 signed URL: %s", o.URL)
		}
		if err := verifyV4(su, &key.PublicKey); err != nil {
			t.Errorf("%s: %v", o.URL, err)
		}
		if o.Bytes != nil {
			t.Error("bytes kept after delivery")
		}
		// The URL reaches the object (the fake does not check signatures).
		resp, err := http.Get(o.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %s", o.URL, resp.Status)
		}
		want := "\x89PNG fake"
		if o.Kind == KindText {
			want = "hello"
		}
		if string(body) != want {
			t.Errorf("object %s holds %q", su.Path, body)
		}
	}
	obj, err := srv.GetObject("outs", "runs/job-1/sub/a_00001_.png")
	if err != nil {
		t.Fatal(err)
	}
	if obj.ContentType != "image/png" {
		t.Errorf("content type %q", obj.ContentType)
	}
	// The validation probe was removed.
	list, err := srv.ListObjectsWithOptionsPaginated("outs", fakestorage.ListOptions{Prefix: "runs/.runpod"})
	if err != nil || len(list.Objects) != 0 {
		t.Errorf("probe left behind: %v %v", list.Objects, err)
	}
}

func TestGCSPublicURLsAndValidation(t *testing.T) {
	srv := fakeGCS(t)
	ctx := context.Background()
	s, err := NewGCSSink(ctx, GCSOptions{Bucket: "gs://outs", Endpoint: srv.URL() + "/storage/v1/", Public: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	outs := testOutputs()
	if err := Deliver(ctx, outs, s.ForJob("j 2")); err != nil {
		t.Fatal(err)
	}
	if outs[0].URL != "https://storage.googleapis.com/outs/j%202/sub/a_00001_.png" {
		t.Errorf("public URL %s", outs[0].URL)
	}
	// A bucket that does not exist fails validation up front.
	_, err = NewGCSSink(ctx, GCSOptions{Bucket: "nope", Endpoint: srv.URL() + "/storage/v1/", Validate: true})
	if err == nil || !strings.Contains(err.Error(), "bucket nope is not writable") {
		t.Errorf("validation: %v", err)
	}
	if _, err := NewGCSSink(ctx, GCSOptions{}); err == nil || !strings.Contains(err.Error(), "GCS_BUCKET") {
		t.Errorf("no bucket: %v", err)
	}
}

func TestGCSRetries(t *testing.T) {
	srv := fakeGCS(t)
	target, _ := url.Parse(srv.URL())
	// A proxy that fails the first two uploads with 503.
	var uploads atomic.Int32
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/upload/") && uploads.Add(1) <= 2 {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	ctx := context.Background()
	s, err := NewGCSSink(ctx, GCSOptions{Bucket: "outs", Endpoint: front.URL + "/storage/v1/", Public: true, Retries: 2, RetryBaseSleep: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := Deliver(ctx, testOutputs()[:1], s); err != nil {
		t.Fatalf("with 2 retries: %v", err)
	}
	if _, err := srv.GetObject("outs", "sub/a_00001_.png"); err != nil {
		t.Fatal(err)
	}
	uploads.Store(0)
	s0, err := NewGCSSink(ctx, GCSOptions{Bucket: "outs", Endpoint: front.URL + "/storage/v1/", Public: true, Retries: 1, RetryBaseSleep: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s0.Close()
	if err := Deliver(ctx, testOutputs()[:1], s0); err == nil || !strings.Contains(err.Error(), "after 2 attempts") {
		t.Errorf("with 1 retry: %v", err)
	}
}

// TestGCSSinkWithoutCredentials: with no credentials anywhere (no key file, no gcloud
// configuration, no metadata server), the sink cannot be made, so a run fails before it
// starts; a key file that is missing or not a key is named.
func TestGCSSinkWithoutCredentials(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("CLOUDSDK_CONFIG", filepath.Join(home, "gcloud"))
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "")
	t.Setenv("GCE_METADATA_HOST", "")
	t.Setenv("NO_GCE_CHECK", "true")
	ctx := context.Background()
	for name, o := range map[string]GCSOptions{
		"none":           {Bucket: "outs"},
		"none, public":   {Bucket: "outs", Public: true},
		"missing file":   {Bucket: "outs", CredentialsFile: filepath.Join(home, "nope.json")},
		"not a key":      {Bucket: "outs", CredentialsJSON: []byte(`{"type":"something_else"}`)},
		"no signing key": {Bucket: "outs", CredentialsJSON: []byte(`{"type":"authorized_user","client_id":"x","client_secret":"y","refresh_token":"z"}`)},
	} {
		s, err := NewGCSSink(ctx, o)
		if err == nil {
			s.Close()
			t.Errorf("%s: a sink without usable credentials was made", name)
			continue
		}
		if !strings.HasPrefix(err.Error(), "gcs output: ") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
