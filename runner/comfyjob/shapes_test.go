package comfyjob

import (
	"encoding/json"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/runner"
	"github.com/runpod-comfy/runpod-comfy/runner/worker"
)

// TestShapesGolden pins the job-done bodies and progress posts byte for byte: the typed
// results must encode exactly as the maps they replaced (sorted keys, fields present only
// when set), which worker-comfyui's clients and ours have parsed so far.
func TestShapesGolden(t *testing.T) {
	done := func(res worker.Result) string {
		t.Helper()
		body, err := worker.EncodeResult(res)
		if err != nil {
			t.Fatal(err)
		}
		return string(body)
	}
	progress := func(p runner.Progress) string {
		t.Helper()
		b, err := json.Marshal(progressOutput("v1", p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	ee := &runner.ExecutionError{PromptID: "p", NodeID: "3", NodeType: "KSampler", ExceptionType: "RuntimeError", ExceptionMessage: "CUDA out of memory", Traceback: []string{"  File x"}}
	for _, c := range []struct{ name, got, want string }{
		{"bad input", done(worker.Result{Error: "invalid input: workflow: missing", Output: &Failure{Timings: map[string]int64{"total_ms": 0}}}),
			`{"error":"invalid input: workflow: missing","output":{"timings":{"total_ms":0}}}`},
		{"refused workflow", done(worker.Result{Error: "refused", Output: &Failure{
			VersionID: "v1", PromptID: "p", Details: []string{"Node 1 (LoadImage): Invalid image file: x.png"},
			NodeErrors: map[string]runner.NodeErrors{"1": {ClassType: "LoadImage", Errors: []runner.NodeError{{Type: "custom_validation_failed", Message: "Invalid image file", Details: "image: x.png"}}}},
			Timings:    map[string]int64{"comfy_ready_ms": 3, "run_ms": 5, "total_ms": 9},
		}}),
			`{"error":"refused","output":{"details":["Node 1 (LoadImage): Invalid image file: x.png"],"node_errors":{"1":{"class_type":"LoadImage","errors":[{"type":"custom_validation_failed","message":"Invalid image file","details":"image: x.png"}]}},"prompt_id":"p","timings":{"comfy_ready_ms":3,"run_ms":5,"total_ms":9},"version_id":"v1"}}`},
		{"node raised", done(worker.Result{Error: "node 3 failed", Output: &Failure{VersionID: "v1", PromptID: "p", Details: []string{ee.Error()}, ExecutionError: ee, Timings: map[string]int64{}}}),
			`{"error":"node 3 failed","output":{"details":["node 3 (KSampler) failed: RuntimeError: CUDA out of memory"],"execution_error":{"prompt_id":"p","node_id":"3","node_type":"KSampler","exception_type":"RuntimeError","exception_message":"CUDA out of memory","traceback":["  File x"]},"prompt_id":"p","timings":{},"version_id":"v1"}}`},
		{"crash", done(worker.Result{Error: "exited", StopPod: true, Output: &Failure{VersionID: "v1", Details: []string{"ComfyUI exited: exit status 1"}, LogTail: []string{"a", "b"}, Timings: map[string]int64{}}}),
			`{"error":"exited","output":{"details":["ComfyUI exited: exit status 1"],"log_tail":["a","b"],"timings":{},"version_id":"v1"},"stopPod":true}`},
		{"too large", done(worker.Result{Error: "too large", Output: &Failure{VersionID: "v1", PromptID: "p", Outputs: []OutputFile{{NodeID: "9", Kind: "image", Filename: "a.png", Type: "output", Mime: "image/png", Size: 7, SHA256: "ab"}}, Timings: map[string]int64{}}}),
			`{"error":"too large","output":{"outputs":[{"node_id":"9","kind":"image","filename":"a.png","type":"output","mime":"image/png","size":7,"sha256":"ab"}],"prompt_id":"p","timings":{},"version_id":"v1"}}`},
		{"success", done(worker.Result{Output: &JobOutput{Outputs: []OutputFile{{NodeID: "9", Kind: "text", Type: "text", Size: 2, Text: "hi"}}, Images: []CompatImage{}, OutputMode: runner.SinkBase64, VersionID: "v1", PromptID: "p", Status: "success_no_images", Timings: map[string]int64{"total_ms": 1}}}),
			`{"output":{"outputs":[{"node_id":"9","kind":"text","type":"text","size":2,"text":"hi"}],"images":[],"output_mode":"base64","version_id":"v1","prompt_id":"p","status":"success_no_images","timings":{"total_ms":1}}}`},
		{"progress start", progress(runner.Progress{PromptID: "p", Event: "execution_start"}),
			`{"event":"execution_start","max":0,"node":"","node_type":"","prompt_id":"p","type":"progress","value":0,"version_id":"v1"}`},
		{"progress steps", progress(runner.Progress{PromptID: "p", Event: "progress", NodeID: "3", NodeType: "KSampler", Value: 0, Max: 20, Done: 0, Total: 4}),
			`{"event":"progress","max":20,"node":"3","node_type":"KSampler","nodes_done":0,"nodes_total":4,"percent":0,"prompt_id":"p","type":"progress","value":0,"version_id":"v1"}`},
	} {
		if c.got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, c.got, c.want)
		}
	}
}
