package cli

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestServeQueueEnv runs `serve` as RunPod starts it, configured only by RUNPOD_* variables,
// against a fake queue: the worker takes a job, posts its result with the API key, pings at
// RUNPOD_PING_INTERVAL, and exits 0 when its context ends (SIGTERM).
func TestServeQueueEnv(t *testing.T) {
	var mu sync.Mutex
	var reqs []*http.Request
	var bodies []string
	jobs := make(chan string, 1)
	jobs <- `{"id": "job-1", "input": {"version_id": "v1"}}`
	done := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		reqs = append(reqs, r)
		bodies = append(bodies, string(b))
		mu.Unlock()
		switch {
		case strings.Contains(r.URL.Path, "/job-take/"):
			select {
			case j := <-jobs:
				rw.Header().Set("Content-Type", "application/json")
				io.WriteString(rw, j)
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
				rw.WriteHeader(http.StatusNoContent)
			}
		case strings.Contains(r.URL.Path, "/job-stop/"):
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
				rw.WriteHeader(http.StatusNoContent)
			}
		case strings.Contains(r.URL.Path, "/job-done/"):
			done <- string(b)
		}
	}))
	defer srv.Close()
	base := srv.URL + "/v2/ep"
	t.Setenv("RUNPOD_WEBHOOK_GET_JOB", base+"/job-take/$ID?gpu=A")
	t.Setenv("RUNPOD_WEBHOOK_POST_OUTPUT", base+"/job-done/$RUNPOD_POD_ID/$ID?gpu=A")
	t.Setenv("RUNPOD_WEBHOOK_PING", base+"/ping/$RUNPOD_POD_ID?gpu=A")
	t.Setenv("RUNPOD_PING_INTERVAL", "50")
	t.Setenv("RUNPOD_AI_API_KEY", "rpa_KEY")
	t.Setenv("RUNPOD_POD_ID", "pod-1")
	t.Setenv("COMFY_VERSION_NAME", "")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code := make(chan int, 1)
	go func() { code <- run(ctx, []string{"serve", "--root", t.TempDir(), "--state-dir", t.TempDir()}) }()

	var body string
	select {
	case body = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("no job-done post")
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(body), &res); err != nil {
		t.Fatal(err)
	}
	if msg, _ := res["error"].(string); !strings.Contains(msg, "invalid input: workflow: missing") {
		t.Errorf("result %s", body)
	}
	// Wait for a few heartbeats (at least three pings at a 50 ms interval), however slow the
	// machine: the count is what is checked, never the time it took.
	countPings := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, r := range reqs {
			if strings.Contains(r.URL.Path, "/ping/pod-1") {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(30 * time.Second); countPings() < 3 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case c := <-code:
		if c != ExitOK {
			t.Errorf("exit code %d after SIGTERM, want 0", c)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not exit after its context ended")
	}

	mu.Lock()
	defer mu.Unlock()
	pings := 0
	for _, r := range reqs {
		if r.Header.Get("Authorization") != "rpa_KEY" {
			t.Errorf("%s %s without the API key", r.Method, r.URL)
		}
		if strings.Contains(r.URL.Path, "/ping/pod-1") {
			pings++
		}
		if strings.Contains(r.URL.Path, "/job-done/") && r.URL.Path != "/v2/ep/job-done/pod-1/job-1" {
			t.Errorf("job-done path %s", r.URL.Path)
		}
	}
	if pings < 3 {
		t.Errorf("%d pings in 30 s at RUNPOD_PING_INTERVAL=50", pings)
	}
}
