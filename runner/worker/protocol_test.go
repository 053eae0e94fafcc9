package worker

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// idleHandler runs no job; the protocol tests here need a handler only to make a Worker.
type idleHandler struct{}

func (idleHandler) Ready(context.Context) error { return nil }

func (idleHandler) Handle(context.Context, *Job, ProgressFunc) (Result, error) {
	return Result{}, errors.New("no job expected")
}

func TestTemplates(t *testing.T) {
	if got := expandTemplate("https://x/v2/e/job-done/$RUNPOD_POD_ID/$ID?gpu=A", "w1", "j1"); got != "https://x/v2/e/job-done/w1/j1?gpu=A" {
		t.Errorf("done: %s", got)
	}
	if got := expandTemplate("https://x/v2/e/job-take/$RUNPOD_POD_ID", "w1", "w1"); got != "https://x/v2/e/job-take/w1" {
		t.Errorf("old take template: %s", got)
	}
	for _, c := range []struct{ in, q, want string }{
		{"http://a/b?gpu=X", "k=1", "http://a/b?gpu=X&k=1"},
		{"http://a/b", "k=1", "http://a/b?k=1"},
		{"http://a/b?", "k=1", "http://a/b?k=1"},
		{"http://a/b?x=1&", "k=1", "http://a/b?x=1&k=1"},
		{"http://a/b?x=1", "", "http://a/b?x=1"},
	} {
		if got := appendQuery(c.in, c.q); got != c.want {
			t.Errorf("appendQuery(%q, %q) = %q, want %q", c.in, c.q, got, c.want)
		}
	}
	if got := stopTemplate("http://a/v2/e/job-take/$ID?gpu=X"); got != "http://a/v2/e/job-stop/$ID?gpu=X" {
		t.Errorf("stop: %s", got)
	}
	if got := stopTemplate("http://a/v2/e/take/$ID"); got != "" {
		t.Errorf("stop without /job-take/: %q", got)
	}
	if got := pingQuery([]string{"a", "b c"}); got != "job_id=a%2Cb+c&runpod_version="+SDKVersion {
		t.Errorf("pingQuery: %s", got)
	}
	if got := pingQuery(nil); got != "runpod_version="+SDKVersion {
		t.Errorf("pingQuery idle: %s", got)
	}
}

func TestFinalBody(t *testing.T) {
	for _, c := range []struct {
		name string
		res  Result
		want string
	}{
		{"object", Result{Output: map[string]any{"a": 1, "t": "é<>"}}, `{"output":{"a":1,"t":"é<>"}}`},
		{"nil", Result{}, `{"output":{}}`},
		{"scalar", Result{Output: "x"}, `{"output":"x"}`},
		{"error", Result{Error: "boom", Output: map[string]any{"details": []string{"d"}}}, `{"error":"boom","output":{"details":["d"]}}`},
		{"error without details", Result{Error: "boom", Output: map[string]any{}}, `{"error":"boom"}`},
		{"stop pod", Result{Output: 1, StopPod: true}, `{"output":1,"stopPod":true}`},
	} {
		got, err := buildFinalBody(c.res, nil, "h", "w")
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	got, _ := buildFinalBody(Result{}, errors.New("bad thing"), "host-1", "pod-7")
	var outer map[string]string
	if err := json.Unmarshal(got, &outer); err != nil {
		t.Fatal(err)
	}
	var exc map[string]string
	if err := json.Unmarshal([]byte(outer["error"]), &exc); err != nil {
		t.Fatalf("exception error is not a JSON text: %v", err)
	}
	want := map[string]string{"error_type": "*errors.errorString", "error_message": "bad thing", "error_traceback": "", "hostname": "host-1", "worker_id": "pod-7", "runpod_version": SDKVersion}
	if d := cmp.Diff(want, exc); d != "" {
		t.Errorf("exception (-want +got):\n%s", d)
	}
}

// TestTakeGzip checks that a job-take answer compressed as Accept-Encoding allows is decoded
// (Go decodes only what it asked for itself).
func TestTakeGzip(t *testing.T) {
	for _, enc := range []string{"gzip", "deflate"} {
		var buf bytes.Buffer
		var zw io.WriteCloser
		if enc == "gzip" {
			zw = gzip.NewWriter(&buf)
		} else {
			zw = zlib.NewWriter(&buf)
		}
		io.WriteString(zw, `{"id":"z1","input":{"a":"é"}}`)
		zw.Close()
		srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			rw.Header().Set("Content-Type", "application/json")
			rw.Header().Set("Content-Encoding", enc)
			rw.Write(buf.Bytes())
		}))
		w, err := New(Config{GetJobURL: srv.URL + "/job-take/$ID", PostOutputURL: srv.URL + "/done/$ID", WorkerID: "w"}, idleHandler{})
		if err != nil {
			t.Fatal(err)
		}
		jobs := w.take(context.Background())
		srv.Close()
		if len(jobs) != 1 || jobs[0].ID != "z1" || string(jobs[0].Input) != `{"a":"é"}` {
			t.Errorf("%s: jobs %+v", enc, jobs)
		}
	}
}
