package runner

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"image"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/internal/netguard"
	"github.com/runpod-comfy/runpod-comfy/runner/standin"
)

func TestRunImagesAndText(t *testing.T) {
	p := sharedStandin(t)
	var events []Progress
	res, err := p.Run(context.Background(), readWorkflow(t, "standin-image.json"), RunOptions{Progress: func(pr Progress) { events = append(events, pr) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := Deliver(context.Background(), res.Outputs, Base64Sink{}); err != nil {
		t.Fatal(err)
	}
	var images, texts int
	for _, o := range res.Outputs {
		data, err := base64.StdEncoding.DecodeString(o.Data)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != o.SHA256 || int64(len(data)) != o.Size {
			t.Errorf("%s: sha256/size do not match the data", o.Filename)
		}
		switch o.Kind {
		case KindImage:
			images++
			if o.NodeID != "2" || o.Mime != "image/png" || o.Subfolder != "standin" || o.Type != "output" {
				t.Errorf("image output %+v", o)
			}
			if !strings.HasPrefix(o.Filename, "orange_"+jobTag(res.PromptID)+"_0000") {
				t.Errorf("filename %q lacks the job's unique prefix", o.Filename)
			}
			if got := decodePNG(t, data); got != image.Pt(64, 48) {
				t.Errorf("image size %v", got)
			}
		case KindText:
			texts++
			if o.NodeID != "3" || o.Text != "made 64x48 64x48" || string(data) != o.Text {
				t.Errorf("text output %+v", o)
			}
		default:
			t.Errorf("unexpected output %+v", o)
		}
	}
	if images != 2 || texts != 1 {
		t.Fatalf("got %d images and %d texts, want 2 and 1", images, texts)
	}
	if res.Polled {
		t.Error("completion came from polling, want the WebSocket")
	}
	if len(events) == 0 || events[len(events)-1].Event != "done" {
		t.Errorf("progress events %+v", events)
	}
	// The redirect flags took effect: the database and the temp dir are in the state dir.
	for _, f := range []string{"user/comfyui.db", "temp/temp", "output/standin"} {
		if _, err := os.Stat(filepath.Join(filepath.Dir(p.Dirs().Input), f)); err != nil {
			t.Errorf("state dir: %v", err)
		}
	}
}

func TestRunProgressSteps(t *testing.T) {
	p := sharedStandin(t)
	var steps []int
	_, err := p.Run(context.Background(), readWorkflow(t, "standin-sleep.json"), RunOptions{Progress: func(pr Progress) {
		if pr.Event == "progress" {
			if pr.NodeID != "1" || pr.NodeType != "StandInSleep" || pr.Max != 4 {
				t.Errorf("progress %+v", pr)
			}
			steps = append(steps, pr.Value)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 4 || steps[3] != 4 {
		t.Errorf("steps %v, want 1..4", steps)
	}
}

func TestRunAudio(t *testing.T) {
	p := sharedStandin(t)
	res, err := p.Run(context.Background(), readWorkflow(t, "standin-audio.json"), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Outputs) != 1 || res.Outputs[0].Kind != KindAudio || res.Outputs[0].Mime != "audio/wav" || !strings.HasPrefix(string(res.Outputs[0].Bytes), "RIFF") {
		t.Fatalf("outputs %+v", res.Outputs)
	}
}

func TestRunInputImages(t *testing.T) {
	p := sharedStandin(t)
	wf := readWorkflow(t, "standin-load-image.json")
	in := pngBytes(t, 30, 20)
	check := func(res *RunResult) {
		t.Helper()
		var sawText bool
		for _, o := range res.Outputs {
			if o.Kind == KindText {
				sawText = true
				if o.Text != "input size 30x20" {
					t.Errorf("text %q", o.Text)
				}
			}
			if o.Kind == KindImage && decodePNG(t, o.Bytes) != image.Pt(30, 20) {
				t.Errorf("copy has another size")
			}
		}
		if !sawText || len(res.Uploaded) != 1 || !strings.HasPrefix(res.Uploaded[0], jobTag(res.PromptID)+"-") {
			t.Errorf("result %+v", res)
		}
		// The job's input is removed after the job.
		if _, err := os.Stat(filepath.Join(p.Dirs().Input, res.Uploaded[0])); !os.IsNotExist(err) {
			t.Errorf("input %s still there: %v", res.Uploaded[0], err)
		}
	}
	// base64 as a data URI
	res, err := p.Run(context.Background(), wf, RunOptions{Images: []InputImage{{Name: "input.png", Image: "data:image/png;base64," + b64(in)}}})
	if err != nil {
		t.Fatal(err)
	}
	check(res)
	// a URL
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(in) }))
	defer srv.Close()
	// By default a loopback URL is refused before it is fetched; allowed, it is fetched.
	_, err = p.Run(context.Background(), wf, RunOptions{Images: []InputImage{{Name: "input.png", Image: srv.URL + "/in.png"}}})
	if !errors.Is(err, netguard.ErrRefused) || !strings.Contains(err.Error(), `input image "input.png"`) {
		t.Fatalf("a loopback image URL by default: %v, want refused", err)
	}
	res, err = p.Run(context.Background(), wf, RunOptions{Images: []InputImage{{Name: "input.png", Image: srv.URL + "/in.png"}}, ImageHTTP: netguard.NewClient(true)})
	if err != nil {
		t.Fatal(err)
	}
	check(res)
	// names escaping the input dir are refused before anything is sent
	for _, name := range []string{"../x.png", "/etc/x.png", "a/../../x.png", ""} {
		_, err := p.Run(context.Background(), wf, RunOptions{Images: []InputImage{{Name: name, Image: b64(in)}}})
		if err == nil || !strings.Contains(err.Error(), "input image") {
			t.Errorf("name %q: err %v", name, err)
		}
	}
	// a missing input is a validation error naming the node
	_, err = p.Run(context.Background(), wf, RunOptions{})
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Nodes["1"].ClassType != "LoadImage" || !strings.Contains(err.Error(), "Invalid image file: input.png") {
		t.Errorf("missing input: %v", err)
	}
}

func TestRunCacheResubmission(t *testing.T) {
	p := sharedStandin(t)
	wf := readWorkflow(t, "standin-sleep.json")
	ctx := context.Background()
	// Default: unique prefixes, so an identical resubmission runs the save node again.
	a, err := p.Run(ctx, wf, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Run(ctx, wf, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Outputs) != 1 || len(b.Outputs) != 1 || a.Outputs[0].Filename == b.Outputs[0].Filename {
		t.Fatalf("outputs %v and %v: want one new file each", a.Outputs, b.Outputs)
	}
	if !equal(b.Cached, []string{"1"}) {
		t.Errorf("cached %v, want the sleep node only", b.Cached)
	}
	// KeepPrefix shows ComfyUI's cache: everything cached, the old file named again.
	c, err := p.Run(ctx, wf, RunOptions{KeepPrefix: true})
	if err != nil {
		t.Fatal(err)
	}
	d, err := p.Run(ctx, wf, RunOptions{KeepPrefix: true})
	if err != nil {
		t.Fatal(err)
	}
	if !equal(d.Cached, []string{"1", "2"}) || d.Outputs[0].Filename != c.Outputs[0].Filename {
		t.Errorf("resubmission: cached %v, files %s and %s", d.Cached, c.Outputs[0].Filename, d.Outputs[0].Filename)
	}
	// Once that file is deleted, the cached answer names a missing file: a clear error.
	p.RemoveOutputs(d)
	_, err = p.Run(ctx, wf, RunOptions{KeepPrefix: true})
	if err == nil || !strings.Contains(err.Error(), "from its cache") {
		t.Errorf("deleted cached output: %v", err)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRunRefusals(t *testing.T) {
	p := sharedStandin(t)
	ctx := context.Background()
	// UI format: refused before submission, with the way out.
	_, err := p.Run(ctx, []byte(`{"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler"}], "links": [[1, 4, 0, 3, 0, "MODEL"]]}`), RunOptions{})
	var we *WorkflowError
	if !errors.As(err, &we) || !strings.Contains(err.Error(), "Export (API)") {
		t.Errorf("UI format: %v", err)
	}
	// Unknown node type.
	_, err = p.Run(ctx, []byte(`{"1": {"class_type": "NoSuchNode", "inputs": {}}}`), RunOptions{})
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Type != "invalid_prompt" || !strings.Contains(err.Error(), "NoSuchNode does not exist") {
		t.Errorf("unknown node: %v", err)
	}
	// Bad inputs: each node's messages.
	_, err = p.Run(ctx, []byte(`{"1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": "tall", "batch_size": 1, "color": 0}},
		"2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}`), RunOptions{})
	if !errors.As(err, &ve) || ve.Type != "prompt_outputs_failed_validation" {
		t.Fatalf("bad inputs: %v", err)
	}
	msgs := err.Error()
	for _, want := range []string{"node 1 (EmptyImage): Value 0 smaller than min of 1", "node 1 (EmptyImage): Failed to convert an input value to a INT value", "node 2 (SaveImage): Required input is missing: filename_prefix"} {
		if !strings.Contains(msgs, want) {
			t.Errorf("error lacks %q:\n%s", want, msgs)
		}
	}
	// A node that raises.
	_, err = p.Run(ctx, readWorkflow(t, "standin-fail.json"), RunOptions{})
	var ee *ExecutionError
	if !errors.As(err, &ee) || ee.NodeID != "1" || ee.NodeType != "StandInFail" || ee.ExceptionMessage != "out of toy memory" || len(ee.Traceback) == 0 {
		t.Errorf("execution error: %#v", err)
	}
}

func TestRunTimeoutInterrupts(t *testing.T) {
	p := sharedStandin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	id := "0b7e9a52-6f8e-4a38-9a49-9a1f0e7a2c11"
	_, err := p.Run(ctx, []byte(`{"1": {"class_type": "StandInSleep", "inputs": {"seconds": 60, "steps": 600}},
		"2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}`), RunOptions{PromptID: id})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	// ComfyUI was told: the job ends as interrupted instead of running on.
	c := p.Client()
	for i := 0; i < 200; i++ {
		e, err := c.History(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if e != nil {
			if err := jobError(id, e, nil, false); !errors.Is(err, ErrInterrupted) {
				t.Errorf("history says %v, want interrupted", err)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the job was not interrupted")
}

func TestRunDroppedWebSocketPollsHistory(t *testing.T) {
	p, _ := startStandin(t, standin.RootOptions{}, map[string]string{"STANDIN_DROP_WS": "1"})
	c := p.Client()
	c.PollInterval = 20 * time.Millisecond
	res, err := c.Run(context.Background(), readWorkflow(t, "standin-sleep.json"), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Polled || len(res.Outputs) != 1 {
		t.Errorf("polled %v, outputs %v", res.Polled, res.Outputs)
	}
}

func TestCrashMidJob(t *testing.T) {
	p, _ := startStandin(t, standin.RootOptions{}, map[string]string{"STANDIN_CRASH_ON": "StandInSleep"})
	_, err := p.Run(context.Background(), readWorkflow(t, "standin-sleep.json"), RunOptions{})
	var xe *ExitedError
	if !errors.Is(err, ErrComfyExited) || !errors.As(err, &xe) || xe.ExitCode != 7 || !contains(xe.Log, "crashing on purpose") {
		t.Fatalf("err %v", err)
	}
}

func TestStartFailures(t *testing.T) {
	root, state := testRoot(t, standin.RootOptions{})
	ctx := context.Background()
	// Early exit: ErrExited with the exit status and the log.
	_, err := Start(ctx, StartOptions{RuntimeRoot: root, StateDir: state, Env: map[string]string{"STANDIN_EXIT_AT_START": "3"}, ReadyTimeout: time.Minute})
	var se *StartError
	if !errors.Is(err, ErrExited) || !errors.As(err, &se) || se.ExitCode != 3 || !contains(se.Log, "exiting at start on purpose") {
		t.Errorf("early exit: %v", err)
	}
	// Slow start: ErrNotReady with the log so far; the process is stopped. The ready timeout
	// leaves a loaded machine time to start Python and print the first line.
	log := &syncBuffer{}
	_, err = Start(ctx, StartOptions{RuntimeRoot: root, StateDir: state, Env: map[string]string{"STANDIN_START_DELAY": "60"}, ReadyTimeout: 12 * time.Second, StopTimeout: 2 * time.Second, Log: log})
	if !errors.Is(err, ErrNotReady) || !errors.As(err, &se) || !contains(se.Log, "slow start") {
		t.Errorf("slow start: %v", err)
	}
	if !strings.Contains(log.String(), "[comfyui] stand-in: slow start") {
		t.Errorf("log lines lack the prefix:\n%s", log)
	}
	// A root without a manifest.
	if _, err := Start(ctx, StartOptions{RuntimeRoot: t.TempDir(), StateDir: state}); err == nil || !strings.Contains(err.Error(), "manifest") {
		t.Errorf("no manifest: %v", err)
	}
}

func TestStopEscalatesAndLeavesNoOrphan(t *testing.T) {
	root, state := testRoot(t, standin.RootOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	p, err := Start(ctx, StartOptions{RuntimeRoot: root, StateDir: state, Env: map[string]string{"STANDIN_IGNORE_SIGNALS": "1"}, StopTimeout: 300 * time.Millisecond, ReadyTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	pid := p.cmd.Process.Pid
	cancel() // ctx end stops the process: SIGINT and SIGTERM are ignored, SIGKILL is not
	select {
	case <-p.Exited():
	case <-time.After(20 * time.Second):
		t.Fatal("the process did not stop")
	}
	if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process group %d still has members: %v", pid, err)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Errorf("second stop: %v", err)
	}
}

func TestWritableNodesAndModelsDir(t *testing.T) {
	// "writer" writes a config into its own folder at import, like Impact Pack; it only works
	// from a writable copy. "reader" is read-only and loaded through a link.
	writer := map[string]string{"__init__.py": `
import os
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "writer_config.json"), "w") as f:
    f.write('{"written": true}')

class WhereAmI:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    def run(self):
        return {"ui": {"text": [here]}}

NODE_CLASS_MAPPINGS = {"WhereAmI": WhereAmI}
`}
	reader := map[string]string{"__init__.py": `
class Hello:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"name": ("STRING", {"default": "x"})}}
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    def run(self, name):
        return {"ui": {"text": ["hello " + name]}}

NODE_CLASS_MAPPINGS = {"Hello": Hello}
`}
	root, state := testRoot(t, standin.RootOptions{CustomNodes: map[string]map[string]string{"writer": writer, "reader": reader}, Writable: []string{"writer"}})
	models := t.TempDir()
	os.MkdirAll(filepath.Join(models, "checkpoints"), 0o755)
	os.WriteFile(filepath.Join(models, "checkpoints", "extra.safetensors"), []byte("x"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := &syncBuffer{}
	p, err := Start(ctx, StartOptions{RuntimeRoot: root, StateDir: state, ModelsDir: models, Log: log, ReadyTimeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	defer p.Stop(context.Background())
	res, err := p.Run(ctx, []byte(`{"1": {"class_type": "WhereAmI", "inputs": {}}, "2": {"class_type": "Hello", "inputs": {"name": "ro"}}}`), RunOptions{})
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if len(res.Outputs) != 2 || res.Outputs[0].Text != filepath.Join(state, "custom_nodes", "writer") || res.Outputs[1].Text != "hello ro" {
		t.Errorf("outputs %+v", res.Outputs)
	}
	if _, err := os.Stat(filepath.Join(state, "custom_nodes", "writer", "writer_config.json")); err != nil {
		t.Errorf("the writable copy has no config: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "custom_nodes", "writer", "writer_config.json")); !os.IsNotExist(err) {
		t.Errorf("the root's copy was written to: %v", err)
	}
	// Both the root's models and --models-dir are searched.
	resp, err := http.Get(p.URL() + "/models/checkpoints")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var files []string
	json.NewDecoder(resp.Body).Decode(&files)
	if !equal(files, []string{"extra.safetensors", "tiny.safetensors"}) {
		t.Errorf("checkpoints %v", files)
	}
}

// TestLogLevelAndTrace starts ComfyUI with LogLevel (--verbose DEBUG: the stand-in then logs
// each HTTP request, as ComfyUI logs more) and traces the job's WebSocket frames.
func TestLogLevelAndTrace(t *testing.T) {
	root, state := testRoot(t, standin.RootOptions{})
	log := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := Start(ctx, StartOptions{RuntimeRoot: root, StateDir: state, Log: log, LogLevel: "DEBUG", ReadyTimeout: 30 * time.Second, StopTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("start: %v\nlog:\n%s", err, log)
	}
	defer p.Stop(context.Background())
	c := p.Client()
	var mu sync.Mutex
	var frames []string
	c.Trace = func(binary bool, frame []byte) {
		mu.Lock()
		defer mu.Unlock()
		frames = append(frames, string(frame))
	}
	if _, err := c.Run(context.Background(), readWorkflow(t, "standin-sleep.json"), RunOptions{}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	all := strings.Join(frames, "\n")
	mu.Unlock()
	if !strings.Contains(all, `"type": "executing"`) && !strings.Contains(all, `"type":"executing"`) {
		t.Errorf("traced frames lack executing events:\n%s", truncateString(all, 2000))
	}
	if !strings.Contains(log.String(), "http: ") || !strings.Contains(log.String(), "/prompt") {
		t.Errorf("ComfyUI did not log at DEBUG (--verbose DEBUG):\n%s", truncateString(log.String(), 2000))
	}
}

func truncateString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
