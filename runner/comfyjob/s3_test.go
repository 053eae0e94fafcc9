package comfyjob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/internal/s3test"
	"github.com/runpod-comfy/runpod-comfy/runner"
	"github.com/runpod-comfy/runpod-comfy/store"

	"github.com/runpod-comfy/runpod-comfy/runner/worker"
	"github.com/runpod-comfy/runpod-comfy/runner/worker/queuetest"
)

// wcResponse is what a worker-comfyui client reads from a job's output: the images list with
// filename, type and data (a URL when type is s3_url), plus errors.
type wcResponse struct {
	Images []struct {
		Filename string `json:"filename"`
		Type     string `json:"type"`
		Data     string `json:"data"`
	} `json:"images"`
	Errors []string `json:"errors"`
}

// TestComfyWorkerS3 runs jobs on a worker configured as a worker-comfyui deployment with S3
// (endpoint, key pair): a worker-comfyui client's job gets its images uploaded to a real
// S3-compatible server (checking SigV4) and their pre-signed URLs back in images[] (type
// s3_url) and outputs[]; an oversized base64 result falls back to S3; a rotated secret fails
// the delivery with S3's error code and without the secret.
func TestComfyWorkerS3(t *testing.T) {
	if _, err := os.Stat(standinDir(t)); err != nil {
		t.Fatalf("stand-in missing: %v", err)
	}
	srv := s3test.New(t, s3test.Options{Buckets: []string{"outs"}})
	e := newComfyEnv(t, 500_000, func(o *Options) {
		o.OutputMode = runner.SinkS3 // what serve picks when BUCKET_ENDPOINT_URL is set
		o.S3 = runner.S3Options{Endpoint: srv.URL + "/outs", AccessKeyID: srv.AccessKey, SecretAccessKey: srv.Secret, Prefix: "runs", Validate: true}
	})
	makeVersion(t, e.st, "v1", nil)
	queuetest.StartWorker(t, e.q.Config(), e.h)
	ctx := context.Background()

	// 1. worker-comfyui's client input, unchanged.
	pngData := testPNG(t)
	wcInput := `{"workflow": {"3": {"class_type": "LoadImage", "inputs": {"image": "input_image_1.png"}},
		"9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "ComfyUI"}}},
		"images": [{"name": "input_image_1.png", "image": "` + base64.StdEncoding.EncodeToString(pngData) + `"}]}`
	body := e.run("wc-s3", wcInput)
	out := outputOf(t, body)
	var wc wcResponse
	if err := json.Unmarshal([]byte(mustJSON(out)), &wc); err != nil {
		t.Fatal(err)
	}
	if len(wc.Images) != 1 || wc.Images[0].Type != "s3_url" || !strings.HasPrefix(wc.Images[0].Filename, "ComfyUI") {
		t.Fatalf("images %+v", wc.Images)
	}
	if !strings.HasPrefix(wc.Images[0].Data, srv.URL+"/outs/runs/wc-s3/") {
		t.Errorf("URL %s, want one under the bucket's runs/<job id>/", wc.Images[0].Data)
	}
	got, err := s3test.Get(ctx, http.DefaultClient, wc.Images[0].Data)
	if err != nil {
		t.Fatalf("the client's GET of its image: %v", err)
	}
	if !bytes.HasPrefix(got, []byte("\x89PNG")) {
		t.Errorf("GET gave %q, want a PNG", got[:min(len(got), 16)])
	}
	if out["output_mode"] != "s3" {
		t.Errorf("output_mode %v", out["output_mode"])
	}
	files := out["outputs"].([]any)
	f := files[0].(map[string]any)
	sum := sha256.Sum256(got)
	if f["url"] != wc.Images[0].Data || f["sha256"] != hex.EncodeToString(sum[:]) || f["data"] != nil {
		t.Errorf("outputs[0] %v: want the same URL, the sha256 of what the URL serves, no data", queuetest.Truncate(mustJSON(f), 400))
	}
	if strings.Contains(mustJSON(body), srv.Secret) {
		t.Error("the result contains the secret")
	}

	// 2. base64 asked for, but over the response limit: uploaded to S3 instead (no GCS bucket).
	noise := map[string]any{
		"1": map[string]any{"class_type": "StandInNoiseImage", "inputs": map[string]any{"width": 300, "height": 300, "seed": 7}},
		"2": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"1", 0}, "filename_prefix": "noise"}},
	}
	out = outputOf(t, e.run("big", map[string]any{"workflow": noise, "output_mode": "base64"}))
	wc = wcResponse{}
	json.Unmarshal([]byte(mustJSON(out)), &wc)
	if out["output_mode"] != "s3" || len(wc.Images) != 1 || wc.Images[0].Type != "s3_url" || !strings.Contains(strings.Join(wc.Errors, " "), "uploaded to S3 instead") {
		t.Fatalf("big: %s", queuetest.Truncate(mustJSON(out), 800))
	}
	if got, err := s3test.Get(ctx, http.DefaultClient, wc.Images[0].Data); err != nil || len(got) < 500_000/2 {
		t.Errorf("big: GET %d bytes, %v", len(got), err)
	}

	// 3. A small base64 job stays base64 on the same worker.
	out = outputOf(t, e.run("small", map[string]any{"workflow": saveWorkflow(0, 1), "output_mode": "base64"}))
	checkOutputs(t, out, 1)

	// 4. The key is rotated under the worker: the job fails delivering, naming S3's code.
	srv.RotateSecret("a-new-secret-the-worker-does-not-know")
	body = e.run("rotated", map[string]any{"workflow": saveWorkflow(0, 1)})
	msg, _ := body["error"].(string)
	if !strings.Contains(msg, "delivering outputs") || !strings.Contains(msg, "SignatureDoesNotMatch") || strings.Contains(mustJSON(body), e.h.o.S3.SecretAccessKey) {
		t.Errorf("rotated: %s", queuetest.Truncate(mustJSON(body), 800))
	}
	keys, _ := srv.Keys("outs")
	for _, k := range keys {
		if strings.HasPrefix(k, "runs/rotated/") {
			t.Errorf("object %s stored with a wrong signature", k)
		}
	}
	e.q.CheckRequests(t)
}

// TestComfyHandlerWorkerComfyUISettings: REFRESH_WORKER makes every result ask for the
// worker's replacement (also a failed one); WEBSOCKET_RECONNECT_* become how long ComfyUI may
// stop answering.
func TestComfyHandlerWorkerComfyUISettings(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, refresh := range []bool{false, true} {
		h, err := New(Options{Root: t.TempDir(), Store: st, RefreshWorker: refresh, UnreachableTimeout: 15 * time.Second, Logger: queuetest.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		res, err := h.Handle(context.Background(), &worker.Job{ID: "j", Input: json.RawMessage(`{"version_id": "v1"}`)}, func(any) {})
		if err != nil || !strings.Contains(res.Error, "workflow: missing") {
			t.Fatalf("Handle: %+v, %v", res, err)
		}
		if res.StopPod != refresh {
			t.Errorf("RefreshWorker=%v: StopPod=%v", refresh, res.StopPod)
		}
		c := h.client(&runner.Process{}, "j")
		if want := int(15 * time.Second / c.PollInterval); c.MaxPollFailures != want {
			t.Errorf("MaxPollFailures %d, want %d (15 s at %s)", c.MaxPollFailures, want, c.PollInterval)
		}
		h.Close(context.Background())
	}
}
