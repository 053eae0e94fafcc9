package comfyjob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/runpod-comfy/runpod-comfy/internal/netguard"
	"github.com/runpod-comfy/runpod-comfy/runner"
	"github.com/runpod-comfy/runpod-comfy/store"

	"github.com/runpod-comfy/runpod-comfy/runner/worker/queuetest"
)

// testPNG is a small opaque PNG, as a client would send it.
func testPNG(t *testing.T) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 4, 3))
	for x := 0; x < 4; x++ {
		for y := 0; y < 3; y++ {
			img.Set(x, y, color.RGBA{uint8(60 * x), uint8(80 * y), 200, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// saveWorkflow is EmptyImage -> StandInSleep (progress) -> SaveImage, plus a text output.
func saveWorkflow(sleep float64, steps int) map[string]any {
	return map[string]any{
		"1": map[string]any{"class_type": "EmptyImage", "inputs": map[string]any{"width": 8, "height": 8, "batch_size": 1, "color": 0x336699}},
		"2": map[string]any{"class_type": "StandInSleep", "inputs": map[string]any{"seconds": sleep, "steps": steps, "images": []any{"1", 0}}},
		"3": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"2", 0}, "filename_prefix": "job"}},
		"4": map[string]any{"class_type": "StandInText", "inputs": map[string]any{"text": "hello", "images": []any{"1", 0}}},
	}
}

type comfyEnv struct {
	t     *testing.T
	root  string
	st    *store.Store
	q     *queuetest.Queue
	h     *Handler
	state string
	gcs   *fakestorage.Server
}

func newComfyEnv(t *testing.T, limit int, edit ...func(*Options)) *comfyEnv {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	st, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	e := &comfyEnv{t: t, root: root, st: st, q: queuetest.New(t), state: t.TempDir()}
	e.gcs, err = fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1", PublicHost: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.gcs.Stop)
	e.gcs.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "outs"})
	o := Options{
		Root:           root,
		Store:          st,
		DefaultVersion: "v1",
		StateBase:      e.state,
		ResponseLimit:  limit,
		GCS:            runner.GCSOptions{Endpoint: e.gcs.URL() + "/storage/v1/", Public: true, PublicBaseURL: e.gcs.URL()},
		ComfyLog:       queuetest.LogWriter(t),
		Logger:         queuetest.Logger(t),
		ReadyTimeout:   60 * time.Second,
		HTTPClient:     netguard.NewClient(true), // the job URLs below are on loopback
		Build: func(ctx context.Context, id string) error {
			if id != "v3" {
				return errors.New("no spec for " + id)
			}
			_, err := buildVersion(st, id, nil)
			return err
		},
		StopTimeout: 5 * time.Second,
	}
	for _, f := range edit {
		f(&o)
	}
	e.h, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.h.Close(context.Background()) })
	return e
}

// run queues one job and returns its final body.
func (e *comfyEnv) run(id string, input any) map[string]any {
	e.t.Helper()
	e.q.Job(id, input)
	f := e.q.Final(e.t, 100*time.Second)
	if f.JobID() != id {
		e.t.Fatalf("final for %s, want %s: %s", f.JobID(), id, f.Body)
	}
	return f.Decode(e.t)
}

func outputOf(t *testing.T, body map[string]any) map[string]any {
	t.Helper()
	out, ok := body["output"].(map[string]any)
	if !ok || body["error"] != nil {
		t.Fatalf("job failed or has no output: %v", queuetest.Truncate(mustJSON(body), 2000))
	}
	return out
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestComfyWorker drives the worker with the real runner and the stand-in (real processes)
// through two versions, worker-comfyui's own input, a bad workflow, a cancelled job, a crash,
// oversized outputs with and without GCS, a missing version and workflow_url, then checks
// every request the worker made.
func TestComfyWorker(t *testing.T) {
	if _, err := os.Stat(standinDir(t)); err != nil {
		t.Fatalf("stand-in missing: %v", err)
	}
	e := newComfyEnv(t, 500_000)
	v1 := makeVersion(t, e.st, "v1", nil)
	v2 := makeVersion(t, e.st, "v2", map[string]string{"STANDIN_CRASH_ON": "StandInSaveAudio"})
	queuetest.StartWorker(t, e.q.Config(), e.h)

	// 1. A job for the default version: image and text outputs, progress with node and steps.
	out := outputOf(t, e.run("ok-v1", map[string]any{"workflow": saveWorkflow(0.3, 3)}))
	if out["version_id"] != "v1" || out["prompt_id"] == "" || out["output_mode"] != "base64" {
		t.Errorf("ok-v1: %v", queuetest.Truncate(mustJSON(out), 500))
	}
	checkOutputs(t, out, 1)
	var sawStep bool
	for len(e.q.Progress) > 0 {
		p := (<-e.q.Progress).Decode(t)["output"].(map[string]any)
		if p["node"] == "2" && p["node_type"] == "StandInSleep" && p["max"] == 3.0 && p["version_id"] == "v1" {
			sawStep = true
		}
	}
	if !sawStep {
		t.Errorf("no progress update with node 2 (StandInSleep) and its steps")
	}
	if tm, _ := out["timings"].(map[string]any); tm["total_ms"] == nil || tm["run_ms"] == nil {
		t.Errorf("timings %v", out["timings"])
	}

	// 2. worker-comfyui's own example input (section 19 shape), unchanged: input as a JSON
	// string, images[] with a data URI, comfy_org_api_key.
	pngData := testPNG(t)
	wcInput := `{"workflow": {"3": {"class_type": "LoadImage", "inputs": {"image": "input_image_1.png"}, "_meta": {"title": "Load Image"}},
		"9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "ComfyUI"}, "_meta": {"title": "Save Image"}}},
		"images": [{"name": "input_image_1.png", "image": "data:image/png;base64,` + base64.StdEncoding.EncodeToString(pngData) + `"}],
		"comfy_org_api_key": "comfyui-KEY"}`
	out = outputOf(t, e.run("wc", wcInput))
	imgs := out["images"].([]any)
	if len(imgs) != 1 {
		t.Fatalf("wc images: %v", queuetest.Truncate(mustJSON(out), 500))
	}
	img := imgs[0].(map[string]any)
	data, err := base64.StdEncoding.DecodeString(img["data"].(string))
	if img["type"] != "base64" || err != nil || !bytes.HasPrefix(data, []byte("\x89PNG")) || !strings.HasPrefix(img["filename"].(string), "ComfyUI") {
		t.Errorf("wc image entry %v", queuetest.Truncate(mustJSON(img), 300))
	}

	// 3. A bad workflow: ComfyUI's node errors come back in the details.
	body := e.run("bad", map[string]any{"workflow": map[string]any{
		"1": map[string]any{"class_type": "LoadImage", "inputs": map[string]any{"image": "missing.png"}},
		"2": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"1", 0}}},
	}})
	det, _ := body["output"].(map[string]any)
	if !strings.Contains(mustJSON(body["error"]), "missing.png") || det == nil || !strings.Contains(mustJSON(det["details"]), "Node 1 (LoadImage)") || det["node_errors"] == nil {
		t.Errorf("bad: %s", queuetest.Truncate(mustJSON(body), 1500))
	}

	// 4. Another version built on the volume: the worker switches, and roots it.
	out = outputOf(t, e.run("ok-v2", map[string]any{"version_id": "v2", "workflow": saveWorkflow(0, 1)}))
	if out["version_id"] != "v2" {
		t.Errorf("ok-v2 version %v", out["version_id"])
	}
	roots := tempRoots(t, e.root)
	if !strings.Contains(roots, v2.String()) || strings.Contains(roots, v1.String()) {
		t.Errorf("temporary roots %s: want %s only", roots, v2)
	}

	// 5. ComfyUI crashes during a job: it fails with the log tail; the next job succeeds.
	body = e.run("crash", map[string]any{"version_id": "v2", "workflow": map[string]any{
		"1": map[string]any{"class_type": "StandInSaveAudio", "inputs": map[string]any{"seconds": 0.1, "frequency": 440, "filename_prefix": "a"}},
	}})
	if msg, _ := body["error"].(string); !strings.Contains(msg, "ComfyUI exited during the job") || !strings.Contains(msg, "crashing on purpose") {
		t.Errorf("crash: %s", queuetest.Truncate(mustJSON(body), 1500))
	}
	outputOf(t, e.run("after-crash", map[string]any{"version_id": "v2", "workflow": saveWorkflow(0, 1)}))

	// 6. A cancelled job (job-stop): ComfyUI is interrupted, nothing is posted for it, and
	// the next job runs at once instead of queueing behind the long one.
	e.q.Job("cancel", map[string]any{"workflow": saveWorkflow(120, 1200)})
	waitProgress(t, e.q, "cancel")
	e.q.Stop("cancel")
	out = outputOf(t, e.run("after-cancel", map[string]any{"workflow": saveWorkflow(0, 1)}))
	checkOutputs(t, out, 1)

	// 7. A deadline: timeout_s interrupts ComfyUI and fails the job.
	body = e.run("deadline", map[string]any{"timeout_s": 0.5, "workflow": saveWorkflow(120, 1200)})
	if msg, _ := body["error"].(string); !strings.Contains(msg, "timed out after 500ms") {
		t.Errorf("deadline: %s", queuetest.Truncate(mustJSON(body), 800))
	}

	// 8. An oversized result without a bucket fails with its size; with a bucket the outputs
	// go to GCS instead; output_mode gcs asks for URLs outright.
	noise := map[string]any{
		"1": map[string]any{"class_type": "StandInNoiseImage", "inputs": map[string]any{"width": 300, "height": 300, "seed": 7}},
		"2": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"1", 0}, "filename_prefix": "noise"}},
	}
	body = e.run("big", map[string]any{"workflow": noise})
	if msg, _ := body["error"].(string); !strings.Contains(msg, "too large") || !strings.Contains(msg, "over the response limit of 500000 bytes") || !strings.Contains(msg, "gcs") {
		t.Errorf("big: %s", queuetest.Truncate(mustJSON(body), 800))
	}
	out = outputOf(t, e.run("big-gcs", map[string]any{"workflow": noise, "gcs_bucket": "outs", "gcs_prefix": "runs"}))
	checkGCS(t, e, out, "runs/big-gcs/")
	out = outputOf(t, e.run("gcs", map[string]any{"workflow": saveWorkflow(0, 1), "output_mode": "gcs", "gcs_bucket": "outs"}))
	checkGCS(t, e, out, "gcs/")
	// output_mode s3 on a worker without S3 settings fails before anything runs.
	body = e.run("s3-none", map[string]any{"workflow": saveWorkflow(0, 1), "output_mode": "s3"})
	if msg, _ := body["error"].(string); !strings.Contains(msg, "invalid input: output_mode s3: s3 output needs an S3 endpoint (BUCKET_ENDPOINT_URL") {
		t.Errorf("s3-none: %s", queuetest.Truncate(mustJSON(body), 800))
	}
	if det, _ := body["output"].(map[string]any); det["prompt_id"] != nil {
		t.Errorf("s3-none: the workflow was queued (prompt %v)", det["prompt_id"])
	}
	// gcs output that could not deliver (no key to sign URLs with, and URLs are not public):
	// the job fails before its workflow runs, not after.
	e.h.mu.Lock()
	e.h.o.GCS.Public = false
	e.h.mu.Unlock()
	body = e.run("gcs-nokey", map[string]any{"workflow": saveWorkflow(0, 1), "output_mode": "gcs", "gcs_bucket": "outs"})
	det, _ = body["output"].(map[string]any)
	tm, _ := det["timings"].(map[string]any)
	if msg, _ := body["error"].(string); !strings.Contains(msg, "gcs output") || !strings.Contains(msg, "GCS_PUBLIC=1") || tm["run_ms"] != nil || det["prompt_id"] != nil {
		t.Errorf("gcs without a signing key: %s", queuetest.Truncate(mustJSON(body), 800))
	}
	e.h.mu.Lock()
	e.h.o.GCS.Public = true
	e.h.mu.Unlock()

	// 9. A version that is not built and cannot be (the build hook fails), one that the
	// build hook (--build-missing) builds inside the job, and workflow_url with input_images
	// given as URLs.
	body = e.run("v9", map[string]any{"version_id": "v9", "workflow": saveWorkflow(0, 1)})
	if msg, _ := body["error"].(string); !strings.Contains(msg, "building version v9: no spec for v9") {
		t.Errorf("v9: %s", mustJSON(body))
	}
	out = outputOf(t, e.run("v3", map[string]any{"version_id": "v3", "workflow": saveWorkflow(0, 1)}))
	if out["version_id"] != "v3" {
		t.Errorf("v3: %v", out["version_id"])
	}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/wf.json":
			json.NewEncoder(rw).Encode(map[string]any{
				"1": map[string]any{"class_type": "LoadImage", "inputs": map[string]any{"image": "photo.png"}},
				"2": map[string]any{"class_type": "SaveImage", "inputs": map[string]any{"images": []any{"1", 0}, "filename_prefix": "url"}},
			})
		case "/photo.png":
			rw.Write(pngData)
		default:
			http.NotFound(rw, r)
		}
	}))
	defer srv.Close()
	out = outputOf(t, e.run("url", map[string]any{"workflow_url": srv.URL + "/wf.json", "input_images": map[string]string{"photo.png": srv.URL + "/photo.png"}}))
	checkOutputs(t, out, 1)

	// Without a build hook a missing version gets an error saying how to build it.
	e.h.mu.Lock()
	e.h.o.Build = nil
	e.h.mu.Unlock()
	body = e.run("v8", map[string]any{"version_id": "v8", "workflow": saveWorkflow(0, 1)})
	if msg, _ := body["error"].(string); !strings.Contains(msg, `version "v8" is not built`) || !strings.Contains(msg, "--build-missing") {
		t.Errorf("v8: %s", mustJSON(body))
	}

	// Inputs and outputs do not pile up in the state dirs.
	for _, v := range []string{"v1", "v2", "v3"} {
		for _, d := range []string{"input", "output"} {
			ents, _ := os.ReadDir(filepath.Join(e.state, "comfy-"+v, d))
			if len(ents) != 0 {
				t.Errorf("state dir %s/%s keeps %d entries after the jobs", v, d, len(ents))
			}
		}
	}
	for _, r := range e.q.Requests() {
		if strings.HasSuffix(r.Path, "/cancel") && !bytes.Contains(r.Body, []byte(`"status":"IN_PROGRESS"`)) {
			t.Errorf("posted for the cancelled job: %s", queuetest.Truncate(string(r.Body), 300))
		}
	}
	e.q.CheckRequests(t)

	// Close stops ComfyUI and releases the temporary root.
	if err := e.h.Close(context.Background()); err != nil {
		t.Errorf("Close: %v", err)
	}
	if roots := tempRoots(t, e.root); roots != "" {
		t.Errorf("temporary roots left after Close: %s", roots)
	}
	// The worker loop may call Ready just after Close: it must start nothing and root nothing.
	if err := e.h.Ready(context.Background()); err == nil {
		t.Errorf("Ready after Close started ComfyUI again")
	}
	if roots := tempRoots(t, e.root); roots != "" {
		t.Errorf("temporary roots left by Ready after Close: %s", roots)
	}
}

// checkOutputs checks a successful output: n images in worker-comfyui's list, every output
// with node id, mime, size and a sha256 matching its data.
func checkOutputs(t *testing.T, out map[string]any, n int) {
	t.Helper()
	if imgs, _ := out["images"].([]any); len(imgs) != n {
		t.Errorf("images: %d, want %d", len(imgs), n)
	}
	outs, _ := out["outputs"].([]any)
	if len(outs) == 0 {
		t.Fatalf("no outputs: %v", queuetest.Truncate(mustJSON(out), 500))
	}
	for _, o := range outs {
		m := o.(map[string]any)
		if m["node_id"] == "" || m["kind"] == "" {
			t.Errorf("output without node id or kind: %v", m)
		}
		if m["kind"] == "text" {
			if m["text"] != "hello 8x8" {
				t.Errorf("text output %v", m)
			}
			continue
		}
		data, err := base64.StdEncoding.DecodeString(m["data"].(string))
		sum := sha256.Sum256(data)
		if err != nil || m["mime"] != "image/png" || int(m["size"].(float64)) != len(data) || m["sha256"] != hex.EncodeToString(sum[:]) {
			t.Errorf("file output %v", queuetest.Truncate(mustJSON(m), 300))
		}
	}
}

// checkGCS checks that every file output is a URL to an object in bucket "outs" under prefix,
// whose content matches the output's sha256.
func checkGCS(t *testing.T, e *comfyEnv, out map[string]any, prefix string) {
	t.Helper()
	if out["output_mode"] != "gcs" {
		t.Errorf("output_mode %v", out["output_mode"])
	}
	for _, o := range out["outputs"].([]any) {
		m := o.(map[string]any)
		if m["kind"] == "text" {
			continue
		}
		u, _ := m["url"].(string)
		i := strings.Index(u, "/outs/")
		if i < 0 || m["data"] != nil {
			t.Errorf("gcs output %v", m)
			continue
		}
		name := u[i+len("/outs/"):]
		if !strings.HasPrefix(name, prefix) {
			t.Errorf("object %s not under %s", name, prefix)
		}
		obj, err := e.gcs.GetObject("outs", name)
		if err != nil {
			t.Errorf("object %s: %v", name, err)
			continue
		}
		sum := sha256.Sum256(obj.Content)
		if hex.EncodeToString(sum[:]) != m["sha256"] {
			t.Errorf("object %s content does not match sha256", name)
		}
	}
	for _, im := range out["images"].([]any) {
		if im.(map[string]any)["type"] != "s3_url" {
			t.Errorf("compat image entry %v", im)
		}
	}
}

func waitProgress(t *testing.T, q *queuetest.Queue, jobID string) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case p := <-q.Progress:
			if p.JobID() == jobID {
				return
			}
		case <-deadline:
			t.Fatalf("no progress for %s", jobID)
		}
	}
}

// tempRoots returns the contents of the store's temporary roots.
func tempRoots(t *testing.T, root string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(root, "store", ".roots", "*.json"))
	var b strings.Builder
	for _, f := range files {
		data, _ := os.ReadFile(f)
		b.Write(data)
	}
	return b.String()
}

// TestComfyWorkerReplaced checks that a ComfyUI that no longer starts from a root it ran from
// on this worker fails the job with "stopPod": true, and that the worker then exits.
func TestComfyWorkerReplaced(t *testing.T) {
	e := newComfyEnv(t, DefaultResponseLimit)
	makeVersion(t, e.st, "v1", map[string]string{"STANDIN_CRASH_ON": "StandInSaveAudio"})
	_, wait := queuetest.StartWorker(t, e.q.Config(), e.h)
	outputOf(t, e.run("ok", map[string]any{"workflow": saveWorkflow(0, 1)}))

	// From now on the stand-in exits at start, as a machine with a broken GPU would.
	e.h.mu.Lock()
	e.h.o.Env = map[string]string{"STANDIN_EXIT_AT_START": "3"}
	e.h.mu.Unlock()
	body := e.run("crash", map[string]any{"workflow": map[string]any{
		"1": map[string]any{"class_type": "StandInSaveAudio", "inputs": map[string]any{"seconds": 0.1, "frequency": 440, "filename_prefix": "a"}},
	}})
	if msg, _ := body["error"].(string); !strings.Contains(msg, "ComfyUI exited during the job") || body["stopPod"] != nil {
		t.Errorf("crash: %s", queuetest.Truncate(mustJSON(body), 800))
	}
	body = e.run("next", map[string]any{"workflow": saveWorkflow(0, 1)})
	if msg, _ := body["error"].(string); body["stopPod"] != true || !strings.Contains(msg, "asks RunPod to replace it") || !strings.Contains(msg, "exiting at start on purpose") {
		t.Errorf("next: %s", queuetest.Truncate(mustJSON(body), 1500))
	}
	if err := wait(); err != nil {
		t.Errorf("the worker did not exit after asking to be replaced: %v", err)
	}
}
