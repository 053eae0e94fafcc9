package comfyjob

import (
	"encoding/base64"
	"os"
	"strings"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/runner/worker/queuetest"
)

// TestComfyWorkerSeedResult: a client written for the seed tool gets its fields (version_id,
// output_mode, base64, size, extension; for gcs url, gcs_path and no signed_url on a public
// bucket, under the seed's default prefix comfy/outputs) beside ours, when the job says
// result_format seed or the worker's default is seed; models_dir is refused naming its
// replacement.
func TestComfyWorkerSeedResult(t *testing.T) {
	if _, err := os.Stat(standinDir(t)); err != nil {
		t.Fatalf("stand-in missing: %v", err)
	}
	e := newComfyEnv(t, 500_000)
	makeVersion(t, e.st, "v1", nil)
	queuetest.StartWorker(t, e.q.Config(), e.h)

	out := outputOf(t, e.run("plain", map[string]any{"workflow": saveWorkflow(0, 1)}))
	if _, ok := out["base64"]; ok {
		t.Errorf("the seed's fields without result_format seed: %s", queuetest.Truncate(mustJSON(out), 500))
	}

	out = outputOf(t, e.run("seed-b64", map[string]any{"workflow": saveWorkflow(0, 1), "result_format": "seed"}))
	if out["version_id"] != "v1" || out["output_mode"] != "base64" || out["extension"] != ".png" {
		t.Fatalf("seed-b64: %s", queuetest.Truncate(mustJSON(out), 800))
	}
	var want []byte
	for _, o := range out["outputs"].([]any) {
		m := o.(map[string]any)
		if m["type"] == "output" && m["kind"] == "image" {
			b, err := base64.StdEncoding.DecodeString(m["data"].(string))
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, b...)
		}
	}
	got, err := base64.StdEncoding.DecodeString(out["base64"].(string))
	if err != nil || len(want) == 0 || string(got) != string(want) || out["size"] != float64(len(want)) {
		t.Errorf("seed-b64: base64 %d bytes (err %v), size %v, want %d bytes", len(got), err, out["size"], len(want))
	}

	out = outputOf(t, e.run("seed-gcs", map[string]any{"workflow": saveWorkflow(0, 1), "result_format": "seed", "output_mode": "gcs", "gcs_bucket": "outs"}))
	checkGCS(t, e, out, "comfy/outputs/seed-gcs/")
	url, _ := out["url"].(string)
	path, _ := out["gcs_path"].(string)
	if !strings.HasPrefix(path, "gs://outs/comfy/outputs/seed-gcs/") || !strings.HasSuffix(url, strings.TrimPrefix(path, "gs://")) || out["extension"] != ".png" {
		t.Errorf("seed-gcs: url %q gcs_path %q: %s", url, path, queuetest.Truncate(mustJSON(out), 800))
	}
	if _, ok := out["signed_url"]; ok {
		t.Errorf("seed-gcs: a signed_url from a worker that does not sign: %v", out["signed_url"])
	}
	if obj, err := e.gcs.GetObject("outs", strings.TrimPrefix(path, "gs://outs/")); err != nil || int64(len(obj.Content)) != int64(out["size"].(float64)) {
		t.Errorf("seed-gcs: object %s: %v", path, err)
	}

	body := e.run("seed-models-dir", map[string]any{"workflow": saveWorkflow(0, 1), "models_dir": "/runpod-volume/models"})
	if msg, _ := body["error"].(string); !strings.Contains(msg, "models_dir: is not used by runpod-comfy") || !strings.Contains(msg, "MODELS_DIR") {
		t.Errorf("models_dir: %s", queuetest.Truncate(mustJSON(body), 800))
	}
	body = e.run("bad-format", map[string]any{"workflow": saveWorkflow(0, 1), "result_format": "xml"})
	if msg, _ := body["error"].(string); !strings.Contains(msg, "result_format") {
		t.Errorf("bad result_format: %s", queuetest.Truncate(mustJSON(body), 800))
	}

	// The worker's default: RUNPOD_COMFY_RESULT_FORMAT=seed.
	e2 := newComfyEnv(t, 500_000, func(o *Options) { o.ResultFormat = ResultSeed })
	makeVersion(t, e2.st, "v1", nil)
	queuetest.StartWorker(t, e2.q.Config(), e2.h)
	out = outputOf(t, e2.run("seed-default", map[string]any{"workflow": saveWorkflow(0, 1)}))
	if _, ok := out["base64"].(string); !ok || out["extension"] != ".png" {
		t.Errorf("seed-default: %s", queuetest.Truncate(mustJSON(out), 800))
	}
}
