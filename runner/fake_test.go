package runner

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// fakeComfy is a ComfyUI written in Go for faults the stand-in cannot show precisely.
type fakeComfy struct {
	mu       sync.Mutex
	prompt   func(w http.ResponseWriter, body map[string]any) // answers POST /prompt
	onWS     func(c *websocket.Conn, clientID string)         // runs the socket after status
	history  func(id string, n int) (any, int)                // entry (nil = {}) and HTTP status
	polls    int
	calls    []string
	origin   []string
	promptID string
}

func (f *fakeComfy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	if o := r.Header.Get("Origin"); o != "" {
		f.origin = append(f.origin, o)
	}
	f.mu.Unlock()
	switch {
	case r.URL.Path == "/ws":
		up := websocket.Upgrader{}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c.WriteJSON(map[string]any{"type": "status", "data": map[string]any{"status": map[string]any{"exec_info": map[string]any{"queue_remaining": 0}}, "sid": r.URL.Query().Get("clientId")}})
		if f.onWS != nil {
			f.onWS(c, r.URL.Query().Get("clientId"))
		}
	case r.URL.Path == "/prompt" && r.Method == http.MethodPost:
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		f.mu.Lock()
		f.promptID, _ = body["prompt_id"].(string)
		f.mu.Unlock()
		f.prompt(w, body)
	case strings.HasPrefix(r.URL.Path, "/history/"):
		id := strings.TrimPrefix(r.URL.Path, "/history/")
		f.mu.Lock()
		f.polls++
		n := f.polls
		f.mu.Unlock()
		entry, status := f.history(id, n)
		if status == -1 { // the server "dies": drop the connection
			hj, _ := w.(http.Hijacker)
			c, _, _ := hj.Hijack()
			c.Close()
			return
		}
		w.WriteHeader(status)
		if entry == nil {
			w.Write([]byte("{}"))
			return
		}
		json.NewEncoder(w).Encode(map[string]any{id: entry})
	case r.URL.Path == "/view":
		w.Header().Set("Content-Type", "image/png")
		w.Write([]byte("png-bytes-of-" + r.URL.Query().Get("filename")))
	default:
		w.WriteHeader(http.StatusOK)
	}
}

func (f *fakeComfy) called(call string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.calls {
		if c == call {
			return true
		}
	}
	return false
}

func okPrompt(w http.ResponseWriter, body map[string]any) {
	json.NewEncoder(w).Encode(map[string]any{"prompt_id": body["prompt_id"], "number": 1, "node_errors": map[string]any{}})
}

func successEntry(file string) any {
	return map[string]any{
		"outputs": map[string]any{"9": map[string]any{"images": []any{map[string]any{"filename": file, "subfolder": "", "type": "output"}}}},
		"status":  map[string]any{"status_str": "success", "completed": true, "messages": []any{}},
	}
}

const oneNode = `{"9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["8", 0]}}}`

func TestFakeNodeErrors(t *testing.T) {
	f := &fakeComfy{prompt: func(w http.ResponseWriter, _ map[string]any) {
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}},
		  "node_errors": {"4": {"errors": [{"type": "value_not_in_list", "message": "Value not in list", "details": "ckpt_name: 'x.safetensors' not in []",
		    "extra_info": {"input_name": "ckpt_name", "input_config": [], "received_value": "x.safetensors"}}], "dependent_outputs": ["9"], "class_type": "CheckpointLoaderSimple"}}}`))
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	_, err := NewClient(srv.URL).Run(context.Background(), []byte(oneNode), RunOptions{})
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Nodes["4"].Errors[0].ExtraInfo["input_name"] != "ckpt_name" ||
		!strings.Contains(err.Error(), "node 4 (CheckpointLoaderSimple): Value not in list: ckpt_name: 'x.safetensors' not in []") {
		t.Fatalf("err %v", err)
	}
	if len(f.origin) != 0 {
		t.Errorf("the client sent an Origin header: %v", f.origin)
	}
	// A 200 with node_errors: ComfyUI runs the valid outputs; the client stops them and fails.
	f.prompt = func(w http.ResponseWriter, body map[string]any) {
		w.Write([]byte(`{"prompt_id": "` + body["prompt_id"].(string) + `", "number": 1, "node_errors": {"5": {"errors": [{"type": "required_input_missing", "message": "Required input is missing", "details": "images"}], "class_type": "SaveImage"}}}`))
	}
	_, err = NewClient(srv.URL).Run(context.Background(), []byte(oneNode), RunOptions{})
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "node 5 (SaveImage): Required input is missing") {
		t.Fatalf("partial: %v", err)
	}
	if !f.called("POST /queue") || !f.called("POST /interrupt") {
		t.Errorf("the partly valid prompt was not cancelled: %v", f.calls)
	}
}

func TestFakeExecutionErrorFromEvents(t *testing.T) {
	f := &fakeComfy{prompt: okPrompt}
	f.onWS = func(c *websocket.Conn, _ string) {
		// wait for the prompt, then report its failure and completion
		for i := 0; i < 200; i++ {
			f.mu.Lock()
			id := f.promptID
			f.mu.Unlock()
			if id != "" {
				c.WriteJSON(map[string]any{"type": "execution_start", "data": map[string]any{"prompt_id": id}})
				c.WriteJSON(map[string]any{"type": "executing", "data": map[string]any{"node": "9", "prompt_id": "someone-else"}})
				c.WriteMessage(websocket.BinaryMessage, []byte{0, 0, 0, 1, 0, 0, 0, 2, 'p', 'n', 'g'})
				c.WriteJSON(map[string]any{"type": "crystools.monitor", "data": map[string]any{"cpu": 3}})
				c.WriteJSON(map[string]any{"type": "execution_error", "data": map[string]any{"prompt_id": id, "node_id": "9", "node_type": "SaveImage", "exception_type": "torch.OutOfMemoryError", "exception_message": "CUDA out of memory", "traceback": []string{"line 1"}}})
				c.WriteJSON(map[string]any{"type": "executing", "data": map[string]any{"node": nil, "prompt_id": id}})
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		c.ReadMessage()
	}
	f.history = func(string, int) (any, int) {
		return map[string]any{"outputs": map[string]any{}, "status": map[string]any{"status_str": "error", "completed": false, "messages": []any{}}}, 200
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	_, err := NewClient(srv.URL).Run(context.Background(), []byte(oneNode), RunOptions{})
	var ee *ExecutionError
	if !errors.As(err, &ee) || err.Error() != "node 9 (SaveImage) failed: torch.OutOfMemoryError: CUDA out of memory" {
		t.Fatalf("err %v", err)
	}
}

func TestFakeDroppedWebSocket(t *testing.T) {
	f := &fakeComfy{prompt: okPrompt}
	f.onWS = func(c *websocket.Conn, _ string) { c.Close() } // drops right after status
	f.history = func(id string, n int) (any, int) {
		if n < 3 {
			return nil, 200 // still running
		}
		return successEntry("x_00001_.png"), 200
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := NewClient(srv.URL)
	c.PollInterval = 5 * time.Millisecond
	res, err := c.Run(context.Background(), []byte(oneNode), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Polled || len(res.Outputs) != 1 || string(res.Outputs[0].Bytes) != "png-bytes-of-x_00001_.png" {
		t.Fatalf("result %+v", res)
	}
}

func TestFakeCrashMidJob(t *testing.T) {
	f := &fakeComfy{prompt: okPrompt}
	f.onWS = func(c *websocket.Conn, _ string) { c.Close() }
	f.history = func(string, int) (any, int) { return nil, -1 } // every poll: connection dropped
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := NewClient(srv.URL)
	c.PollInterval = 5 * time.Millisecond
	c.MaxPollFailures = 3
	_, err := c.Run(context.Background(), []byte(oneNode), RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "comfyui stopped answering") {
		t.Fatalf("err %v", err)
	}
	// With the process's exit channel the cause is named at once.
	exited := make(chan struct{})
	close(exited)
	c.MaxPollFailures = 1000
	_, err = c.Run(context.Background(), []byte(oneNode), RunOptions{Exited: exited})
	if !errors.Is(err, ErrComfyExited) {
		t.Fatalf("err %v", err)
	}
}

func TestFakeEveryOutputKind(t *testing.T) {
	f := &fakeComfy{prompt: okPrompt}
	f.onWS = func(c *websocket.Conn, _ string) { c.Close() }
	f.history = func(string, int) (any, int) {
		file := func(name, typ string) map[string]any {
			return map[string]any{"filename": name, "subfolder": "s", "type": typ}
		}
		return map[string]any{
			"outputs": map[string]any{
				"10": map[string]any{"images": []any{file("a.webp", "output")}, "animated": []any{true}},
				"2":  map[string]any{"gifs": []any{map[string]any{"filename": "v.mp4", "subfolder": "", "type": "output", "format": "video/h264-mp4", "frame_rate": 8}}},
				"3":  map[string]any{"audio": []any{file("t.flac", "output")}},
				"4":  map[string]any{"text": []any{"first", "second"}},
				"5":  map[string]any{"images": []any{file("p.png", "temp")}},
				"6":  map[string]any{"result": []any{"mesh.glb", nil}, "3d": []any{file("mesh.glb", "output")}},
			},
			"status": map[string]any{"status_str": "success", "completed": true, "messages": []any{}},
		}, 200
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := NewClient(srv.URL)
	c.PollInterval = 5 * time.Millisecond
	res, err := c.Run(context.Background(), []byte(oneNode), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if temp := textOf(res.Outputs, "p.png"); temp {
		t.Error("a preview was returned beside saved files")
	}
	var got []string
	for _, o := range res.Outputs {
		got = append(got, o.NodeID+":"+o.Filename+":"+o.Kind+":"+o.Mime)
	}
	want := []string{
		"2:v.mp4:video:video/mp4",
		"3:t.flac:audio:audio/flac",
		"4:text-4-0.txt:text:text/plain; charset=utf-8",
		"4:text-4-1.txt:text:text/plain; charset=utf-8",
		"6:mesh.glb:file:model/gltf-binary",
		"10:a.webp:image:image/webp",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("outputs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func textOf(outs []*Output, name string) bool {
	for _, o := range outs {
		if o.Filename == name {
			return true
		}
	}
	return false
}

func TestFakePreviewsOnly(t *testing.T) {
	f := &fakeComfy{prompt: okPrompt}
	f.onWS = func(c *websocket.Conn, _ string) { c.Close() }
	f.history = func(string, int) (any, int) {
		return map[string]any{
			"outputs": map[string]any{"5": map[string]any{"images": []any{map[string]any{"filename": "ComfyUI_temp_abcde_00001_.png", "subfolder": "", "type": "temp"}}}},
			"status":  map[string]any{"status_str": "success", "completed": true, "messages": []any{}},
		}, 200
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := NewClient(srv.URL)
	c.PollInterval = 5 * time.Millisecond
	res, err := c.Run(context.Background(), []byte(oneNode), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Outputs) != 1 || res.Outputs[0].Type != "temp" {
		t.Errorf("a job that only previews returns its previews: %+v", res.Outputs)
	}
}
