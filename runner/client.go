package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"github.com/runpod-comfy/runpod-comfy/internal/netguard"
)

// Client drives one ComfyUI over its HTTP and WebSocket API.
type Client struct {
	// BaseURL is ComfyUI's address, e.g. http://127.0.0.1:8188.
	BaseURL string
	// HTTP sends the HTTP requests.
	HTTP *http.Client
	// Dialer opens the WebSocket; it sends no Origin header (ComfyUI refuses a foreign one).
	Dialer *websocket.Dialer
	// PollInterval is how often /history is polled when the WebSocket is gone; default 250 ms.
	PollInterval time.Duration
	// MaxPollFailures is how many failed polls in a row end a job; default 40.
	MaxPollFailures int
	// Trace, when set, receives every WebSocket frame as it arrives (a binary frame as its
	// first bytes); it must not block.
	Trace func(binary bool, frame []byte)
}

// NewClient returns a client for the ComfyUI at baseURL.
func NewClient(baseURL string) *Client {
	return &Client{
		BaseURL:         strings.TrimRight(baseURL, "/"),
		HTTP:            &http.Client{},
		Dialer:          &websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 64 << 10},
		PollInterval:    250 * time.Millisecond,
		MaxPollFailures: 40,
	}
}

// RunOptions tune one job.
type RunOptions struct {
	// Images are uploaded to the input directory under a name unique to the job, and the
	// workflow's references to their names rewritten.
	Images []InputImage
	// Progress, when set, is called (from Run's goroutine) for each event of the job.
	Progress func(Progress)
	// PromptID is the job's prompt id; default a new lowercase UUID.
	PromptID string
	// ClientID is the WebSocket client id; default a new UUID.
	ClientID string
	// KeepPrefix leaves filename_prefix inputs alone. By default "_<job tag>" is appended to
	// each, so that an identical resubmission is not served from ComfyUI's cache with the
	// names of old files.
	KeepPrefix bool
	// IncludeTemp also returns outputs of type temp (previews) when the job saved files;
	// previews are always returned when they are all it made.
	IncludeTemp bool
	// Exited, when closed, ends the job with ErrComfyExited (pass Process.Exited()).
	Exited <-chan struct{}
	// ExtraData is sent as the prompt's extra_data (e.g. {"api_key_comfy_org": key}, which
	// ComfyUI strips from history and queue).
	ExtraData map[string]any
	// ImageHTTP fetches Images given as URLs. Nil means netguard.NewClient(false): loopback,
	// link-local and private addresses are refused, checked on the address dialled.
	ImageHTTP *http.Client
}

// Progress is one event of a running job. Value and Max are the node's steps (progress
// events); Done and Total count the job's nodes.
type Progress struct {
	PromptID string
	Event    string // execution_start, execution_cached, executing, progress, executed, done
	NodeID   string
	NodeType string
	Value    int
	Max      int
	Done     int
	Total    int
}

// RunResult is a finished job.
type RunResult struct {
	PromptID string
	ClientID string
	Outputs  []*Output
	// Cached are the nodes ComfyUI served from its cache.
	Cached []string
	// Uploaded are the input images written for this job, relative to the input directory.
	Uploaded []string
	// Polled is true when the WebSocket was lost and completion came from polling /history.
	Polled  bool
	Elapsed time.Duration
}

// Ready reports whether ComfyUI answers GET /prompt with 200.
func (c *Client) Ready(ctx context.Context) error {
	resp, err := c.get(ctx, "/prompt", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /prompt: HTTP %s", resp.Status)
	}
	return nil
}

// Interrupt asks ComfyUI to stop the job promptID if it is running (all running work when
// promptID is empty).
func (c *Client) Interrupt(ctx context.Context, promptID string) error {
	body := []byte("{}")
	if promptID != "" {
		body, _ = json.Marshal(map[string]string{"prompt_id": promptID})
	}
	resp, err := c.post(ctx, "/interrupt", "application/json", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("interrupting %s: %w", promptID, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("interrupting %s: HTTP %s", promptID, resp.Status)
	}
	return nil
}

// HistoryEntry is ComfyUI's record of a finished prompt.
type HistoryEntry struct {
	Outputs map[string]map[string]json.RawMessage `json:"outputs"`
	Status  struct {
		StatusStr string              `json:"status_str"`
		Completed bool                `json:"completed"`
		Messages  [][]json.RawMessage `json:"messages"`
	} `json:"status"`
}

// History returns the history entry of promptID, or nil while it is queued or running.
func (c *Client) History(ctx context.Context, promptID string) (*HistoryEntry, error) {
	resp, err := c.get(ctx, "/history/"+url.PathEscape(promptID), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /history/%s: HTTP %s", promptID, resp.Status)
	}
	var m map[string]*HistoryEntry
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return nil, fmt.Errorf("GET /history/%s: %w", promptID, err)
	}
	return m[promptID], nil
}

// Run runs one workflow to its end and fetches its outputs (see the package documentation).
// When ctx ends first, the job is interrupted in ComfyUI and ctx's error returned. Its steps,
// in order: check the workflow, upload the input images, open the event stream, submit the
// prompt, wait for the end, read the history entry, collect the outputs.
func (c *Client) Run(ctx context.Context, workflow json.RawMessage, opts RunOptions) (*RunResult, error) {
	start := time.Now()
	wf, err := CheckWorkflow(workflow)
	if err != nil {
		return nil, err
	}
	res := &RunResult{PromptID: opts.PromptID, ClientID: opts.ClientID}
	if res.PromptID == "" {
		res.PromptID = uuid.NewString()
	}
	if res.ClientID == "" {
		res.ClientID = uuid.NewString()
	}
	tag := jobTag(res.PromptID)
	if res.Uploaded, err = c.uploadInputs(ctx, wf, opts.Images, tag, opts.ImageHTTP); err != nil {
		return nil, err
	}
	if !opts.KeepPrefix {
		wf.uniquePrefixes(tag)
	}
	// The event stream first, so that no event of the prompt is missed.
	events := c.openEvents(ctx, res.ClientID)
	defer events.close()
	if err := c.postPrompt(ctx, wf, res, opts.ExtraData); err != nil {
		return nil, err
	}
	job := &jobState{wf: wf, res: res, report: opts.Progress, total: len(wf)}
	entry, err := c.await(ctx, job, events, opts.Exited)
	if err != nil {
		return nil, err
	}
	if entry == nil {
		if entry, err = c.readHistory(ctx, res.PromptID); err != nil {
			return nil, err
		}
	}
	if entry.Status.StatusStr == "error" || job.execErr != nil || job.interrupted {
		return nil, jobError(res.PromptID, entry, job.execErr, job.interrupted)
	}
	job.progress(Progress{Event: "done", Done: job.total, Total: job.total})
	cached := map[string]bool{}
	for _, id := range res.Cached {
		cached[id] = true
	}
	res.Outputs, err = c.collect(ctx, res.PromptID, entry, cached, opts.IncludeTemp)
	if err != nil {
		return nil, err
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// uploadInputs uploads a job's input images and rewrites the workflow's references to their
// names; it returns the names written, relative to the input directory.
func (c *Client) uploadInputs(ctx context.Context, wf Workflow, images []InputImage, tag string, fetch *http.Client) ([]string, error) {
	var uploaded []string
	for _, img := range images {
		ref, err := c.uploadImage(ctx, img, tag, fetch)
		if err != nil {
			return nil, err
		}
		uploaded = append(uploaded, ref)
		wf.replaceString(img.Name, ref)
	}
	return uploaded, nil
}

// eventStream is the WebSocket of one job: its messages arrive on events; gone receives the
// error that ended it (at most once), also when it could not be opened.
type eventStream struct {
	events chan wsMessage
	gone   chan error
	stop   chan struct{}
	conn   *websocket.Conn
}

// openEvents connects the WebSocket as clientID and starts reading it. A socket that cannot be
// opened is not an error: the stream is gone at once and the job is followed by polling.
func (c *Client) openEvents(ctx context.Context, clientID string) *eventStream {
	s := &eventStream{events: make(chan wsMessage, 64), gone: make(chan error, 1), stop: make(chan struct{})}
	conn, err := c.dial(ctx, clientID)
	if err != nil {
		s.gone <- err
		return s
	}
	s.conn = conn
	// ComfyUI registers the socket under its client id only after the handshake answer, then
	// sends a first "status" message: wait for that message before posting, or the events of
	// a fast prompt go to no one and the job never sees its completion.
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := conn.ReadMessage(); err != nil {
		s.gone <- err
		return s
	}
	conn.SetReadDeadline(time.Time{})
	go readEvents(conn, s.events, s.gone, s.stop, c.Trace) // ends when close closes conn
	return s
}

// close ends the stream and its reader.
func (s *eventStream) close() {
	if s.conn != nil {
		s.conn.Close()
	}
	close(s.stop)
}

// jobState is what the wait learns of a running job from its events.
type jobState struct {
	wf          Workflow
	res         *RunResult
	report      func(Progress)
	total, done int    // nodes to run (not cached) and nodes finished
	current     string // the node executing
	execErr     *ExecutionError
	interrupted bool
}

// progress reports p for the job, if anyone listens.
func (j *jobState) progress(p Progress) {
	if j.report != nil {
		p.PromptID = j.res.PromptID
		j.report(p)
	}
}

// event takes one WebSocket message and reports whether it is the job's completion signal
// (executing with node null: the history entry is stored). Messages of other prompts, status
// broadcasts and custom node events are skipped.
func (j *jobState) event(m wsMessage) (complete bool) {
	d := m.Data
	if d.PromptID == nil || *d.PromptID != j.res.PromptID {
		return false
	}
	switch m.Type {
	case "execution_start":
		j.progress(Progress{Event: m.Type, Total: j.total})
	case "execution_cached":
		j.res.Cached = append(j.res.Cached, d.Nodes...)
		j.total = len(j.wf) - len(d.Nodes)
		j.progress(Progress{Event: m.Type, Total: j.total})
	case "executing":
		if d.Node == nil {
			return true
		}
		if j.current != "" {
			j.done++
		}
		j.current = *d.Node
		j.progress(Progress{Event: m.Type, NodeID: j.current, NodeType: j.wf.classType(j.current), Done: j.done, Total: j.total})
	case "progress":
		node := j.current
		if d.Node != nil {
			node = *d.Node
		}
		j.progress(Progress{Event: m.Type, NodeID: node, NodeType: j.wf.classType(node), Value: int(d.Value), Max: int(d.Max), Done: j.done, Total: j.total})
	case "executed":
		node := derefString(d.Node)
		j.progress(Progress{Event: m.Type, NodeID: node, NodeType: j.wf.classType(node), Done: j.done, Total: j.total})
	case "execution_error":
		j.execErr = &ExecutionError{PromptID: j.res.PromptID, NodeID: d.NodeID, NodeType: d.NodeType, ExceptionType: d.ExceptionType, ExceptionMessage: d.ExceptionMessage, Traceback: d.Traceback}
	case "execution_interrupted":
		j.interrupted = true
	}
	return false
}

// await waits for the job's end: the completion event on the stream, or, once the stream is
// gone, a poll of /history that finds the entry (MaxPollFailures failed polls in a row end the
// job). A slow safety poll runs all along, in case the socket stays up but the completion
// event never comes (a proxy or an odd ComfyUI that drops per-prompt events). It returns the
// entry when a poll found it, nil after the completion event. When ctx ends the prompt is
// interrupted; when exited is closed the job fails with ErrComfyExited.
func (c *Client) await(ctx context.Context, job *jobState, s *eventStream, exited <-chan struct{}) (*HistoryEntry, error) {
	promptID := job.res.PromptID
	var (
		poll     <-chan time.Time
		failures int
	)
	gone := s.gone
	safety := time.NewTicker(5 * time.Second)
	defer safety.Stop()
	for {
		select {
		case <-safety.C:
			if e, err := c.History(ctx, promptID); err == nil && e != nil {
				return e, nil
			}
		case <-ctx.Done():
			ictx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = c.Interrupt(ictx, promptID)
			cancel()
			return nil, fmt.Errorf("job %s: %w", promptID, ctx.Err())
		case <-exited:
			return nil, fmt.Errorf("job %s: %w", promptID, ErrComfyExited)
		case <-gone:
			gone = nil
			iv := c.PollInterval
			if iv <= 0 {
				iv = 250 * time.Millisecond
			}
			ticker := time.NewTicker(iv)
			defer ticker.Stop()
			poll = ticker.C
			job.res.Polled = true
		case <-poll:
			e, err := c.History(ctx, promptID)
			if err != nil {
				if ctx.Err() != nil {
					continue
				}
				failures++
				if failures >= max(c.MaxPollFailures, 1) {
					return nil, fmt.Errorf("job %s: comfyui stopped answering: %w", promptID, err)
				}
				continue
			}
			failures = 0
			if e != nil {
				return e, nil
			}
		case m := <-s.events:
			if job.event(m) {
				return nil, nil
			}
		}
	}
}

// readHistory reads the history entry of a job that signalled completion. ComfyUI stores it
// before the signal; a few short retries cover a proxy that reordered things.
func (c *Client) readHistory(ctx context.Context, promptID string) (*HistoryEntry, error) {
	for i := 0; i < 20; i++ {
		entry, err := c.History(ctx, promptID)
		if err != nil {
			return nil, fmt.Errorf("job %s: reading history: %w", promptID, err)
		}
		if entry != nil {
			return entry, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("job %s: %w", promptID, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("job %s: finished but has no history entry", promptID)
}

// jobTag is the short per-job tag used in unique names: the first 8 hex digits of the prompt
// id (or of its hash when it has fewer).
func jobTag(promptID string) string {
	s := strings.ReplaceAll(strings.ToLower(promptID), "-", "")
	ok := len(s) >= 8
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			ok = false
		}
	}
	if ok {
		return s[:8]
	}
	sum := sha256.Sum256([]byte(promptID))
	return hex.EncodeToString(sum[:4])
}

func derefString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// jobError makes the error of a job whose history says it failed.
func jobError(promptID string, entry *HistoryEntry, execErr *ExecutionError, interrupted bool) error {
	if execErr != nil {
		return execErr
	}
	for i := len(entry.Status.Messages) - 1; i >= 0; i-- {
		msg := entry.Status.Messages[i]
		if len(msg) != 2 {
			continue
		}
		var kind string
		if json.Unmarshal(msg[0], &kind) != nil {
			continue
		}
		switch kind {
		case "execution_error":
			var d eventData
			if json.Unmarshal(msg[1], &d) == nil {
				return &ExecutionError{PromptID: promptID, NodeID: d.NodeID, NodeType: d.NodeType, ExceptionType: d.ExceptionType, ExceptionMessage: d.ExceptionMessage, Traceback: d.Traceback}
			}
		case "execution_interrupted":
			return fmt.Errorf("job %s: %w", promptID, ErrInterrupted)
		}
	}
	if interrupted {
		return fmt.Errorf("job %s: %w", promptID, ErrInterrupted)
	}
	return fmt.Errorf("job %s failed (history status %q, no error message)", promptID, entry.Status.StatusStr)
}

type wsMessage struct {
	Type string    `json:"type"`
	Data eventData `json:"data"`
}

// eventData holds the fields of the WebSocket events the client reads.
type eventData struct {
	PromptID         *string  `json:"prompt_id"`
	Node             *string  `json:"node"`
	Nodes            []string `json:"nodes"`
	Value            float64  `json:"value"`
	Max              float64  `json:"max"`
	NodeID           string   `json:"node_id"`
	NodeType         string   `json:"node_type"`
	ExceptionType    string   `json:"exception_type"`
	ExceptionMessage string   `json:"exception_message"`
	Traceback        []string `json:"traceback"`
}

func (c *Client) dial(ctx context.Context, clientID string) (*websocket.Conn, error) {
	u, err := url.Parse(c.BaseURL)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "https":
		u.Scheme = "wss"
	default:
		u.Scheme = "ws"
	}
	u.Path = strings.TrimRight(u.Path, "/") + "/ws"
	u.RawQuery = url.Values{"clientId": {clientID}}.Encode()
	d := c.Dialer
	if d == nil {
		d = websocket.DefaultDialer
	}
	conn, resp, err := d.DialContext(ctx, u.String(), nil) // no Origin header
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	return conn, err
}

// readEvents reads text frames until the connection fails or stop is closed. Binary frames
// (previews) and messages that do not parse are skipped.
func readEvents(conn *websocket.Conn, events chan<- wsMessage, gone chan<- error, stop <-chan struct{}, trace func(bool, []byte)) {
	for {
		mt, data, err := conn.ReadMessage()
		if err != nil {
			gone <- err
			return
		}
		if trace != nil {
			trace(mt != websocket.TextMessage, data)
		}
		if mt != websocket.TextMessage {
			continue
		}
		var m wsMessage
		if json.Unmarshal(data, &m) != nil {
			continue
		}
		select {
		case events <- m:
		case <-stop:
			return
		}
	}
}

// postPrompt submits the workflow; a refusal is a *ValidationError.
func (c *Client) postPrompt(ctx context.Context, wf Workflow, res *RunResult, extra map[string]any) error {
	req := map[string]any{"prompt": wf, "client_id": res.ClientID, "prompt_id": res.PromptID}
	if len(extra) > 0 {
		req["extra_data"] = extra
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encoding the prompt: %w", err)
	}
	resp, err := c.post(ctx, "/prompt", "application/json", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("submitting the prompt: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("submitting the prompt: %w", err)
	}
	var r struct {
		PromptID   string                `json:"prompt_id"`
		Error      json.RawMessage       `json:"error"`
		NodeErrors map[string]NodeErrors `json:"node_errors"`
	}
	jerr := json.Unmarshal(data, &r)
	switch {
	case resp.StatusCode == http.StatusBadRequest && jerr == nil:
		ve := &ValidationError{Nodes: r.NodeErrors}
		var e struct {
			Type, Message, Details string
		}
		if json.Unmarshal(r.Error, &e) == nil {
			ve.Type, ve.Message, ve.Details = e.Type, e.Message, e.Details
		} else {
			json.Unmarshal(r.Error, &ve.Message)
		}
		return ve
	case resp.StatusCode != http.StatusOK || jerr != nil:
		return fmt.Errorf("submitting the prompt: HTTP %s: %s", resp.Status, excerpt(data))
	case len(r.NodeErrors) > 0:
		// ComfyUI runs the valid outputs of a partly invalid prompt: stop that, it is a failure.
		c.cancelPrompt(res.PromptID)
		return &ValidationError{Type: "prompt_outputs_failed_validation", Message: "some outputs failed validation", Nodes: r.NodeErrors}
	}
	if r.PromptID != "" && r.PromptID != res.PromptID {
		res.PromptID = r.PromptID // a ComfyUI that ignores client-chosen ids
	}
	return nil
}

func (c *Client) cancelPrompt(promptID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	body, _ := json.Marshal(map[string]any{"delete": []string{promptID}})
	if resp, err := c.post(ctx, "/queue", "application/json", bytes.NewReader(body)); err == nil {
		resp.Body.Close()
	}
	_ = c.Interrupt(ctx, promptID)
}

func excerpt(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// uploadImage writes one input image into ComfyUI's input directory as <dir>/<tag>-<base>
// and returns the name the workflow must use.
func (c *Client) uploadImage(ctx context.Context, img InputImage, tag string, fetch *http.Client) (string, error) {
	if err := CheckInputName(img.Name); err != nil {
		return "", err
	}
	if fetch == nil {
		fetch = netguard.NewClient(false)
	}
	data, err := imageBytes(ctx, fetch, img)
	if err != nil {
		return "", err
	}
	dir, base := path.Split(img.Name)
	dir = strings.TrimSuffix(dir, "/")
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile("image", tag+"-"+base)
	if err != nil {
		return "", err
	}
	fw.Write(data)
	mw.WriteField("type", "input")
	mw.WriteField("subfolder", dir)
	mw.WriteField("overwrite", "true")
	mw.Close()
	resp, err := c.post(ctx, "/upload/image", mw.FormDataContentType(), &buf)
	if err != nil {
		return "", fmt.Errorf("input image %q: uploading: %w", img.Name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("input image %q: uploading: HTTP %s: %s", img.Name, resp.Status, excerpt(body))
	}
	var r struct{ Name, Subfolder string }
	if err := json.Unmarshal(body, &r); err != nil || r.Name == "" {
		return "", fmt.Errorf("input image %q: uploading: unexpected answer %s", img.Name, excerpt(body))
	}
	if r.Subfolder != "" {
		return r.Subfolder + "/" + r.Name, nil
	}
	return r.Name, nil
}

// fileRef is one file entry of a history output list.
type fileRef struct {
	Filename  string `json:"filename"`
	Subfolder string `json:"subfolder"`
	Type      string `json:"type"`
}

// collect fetches every output of a history entry: each list entry with a filename through
// /view, and each string of a "text" list as a text output. Previews (type temp) are left out
// when the job saved files of its own, unless includeTemp.
func (c *Client) collect(ctx context.Context, promptID string, e *HistoryEntry, cached map[string]bool, includeTemp bool) ([]*Output, error) {
	type item struct {
		node string
		text *Output
		ref  fileRef
	}
	ids := make([]string, 0, len(e.Outputs))
	for id := range e.Outputs {
		ids = append(ids, id)
	}
	SortNodeIDs(ids)
	var items []item
	saved := false
	for _, id := range ids {
		keys := make([]string, 0, len(e.Outputs[id]))
		for k := range e.Outputs[id] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			var list []json.RawMessage
			if json.Unmarshal(e.Outputs[id][k], &list) != nil {
				continue
			}
			for i, it := range list {
				var text string
				if k == "text" && json.Unmarshal(it, &text) == nil {
					items = append(items, item{node: id, text: textOutput(id, i, text)})
					continue
				}
				var ref fileRef
				if json.Unmarshal(it, &ref) != nil || ref.Filename == "" {
					continue
				}
				if ref.Type == "" {
					ref.Type = "output"
				}
				saved = saved || ref.Type != "temp"
				items = append(items, item{node: id, ref: ref})
			}
		}
	}
	var outs []*Output
	for _, it := range items {
		if it.text != nil {
			outs = append(outs, it.text)
			continue
		}
		if it.ref.Type == "temp" && saved && !includeTemp {
			continue
		}
		o, err := c.fetch(ctx, it.node, it.ref)
		if err != nil {
			if errors.Is(err, errNotFound) && cached[it.node] {
				return nil, fmt.Errorf("job %s: output %s of node %s is gone: ComfyUI served the node from its cache, naming a file of an earlier job that was deleted (resubmit with a unique filename_prefix, the default)", promptID, it.ref.Filename, it.node)
			}
			return nil, fmt.Errorf("job %s: %w", promptID, err)
		}
		outs = append(outs, o)
	}
	return outs, nil
}

var errNotFound = errors.New("not found")

func textOutput(node string, i int, text string) *Output {
	sum := sha256.Sum256([]byte(text))
	return &Output{
		NodeID:   node,
		Filename: fmt.Sprintf("text-%s-%d.txt", node, i),
		Type:     "text",
		Kind:     KindText,
		Mime:     "text/plain; charset=utf-8",
		Size:     int64(len(text)),
		SHA256:   hex.EncodeToString(sum[:]),
		Text:     text,
		Bytes:    []byte(text),
	}
}

// fetch downloads one output file through /view, hashing it on the way.
func (c *Client) fetch(ctx context.Context, node string, ref fileRef) (*Output, error) {
	q := url.Values{"filename": {ref.Filename}, "type": {ref.Type}, "subfolder": {ref.Subfolder}}
	resp, err := c.get(ctx, "/view", q)
	if err != nil {
		return nil, fmt.Errorf("fetching output %s of node %s: %w", ref.Filename, node, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("fetching output %s of node %s: %w", ref.Filename, node, errNotFound)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching output %s of node %s: HTTP %s", ref.Filename, node, resp.Status)
	}
	var buf bytes.Buffer
	if resp.ContentLength > 0 {
		buf.Grow(int(resp.ContentLength))
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(&buf, h), resp.Body)
	if err != nil {
		return nil, fmt.Errorf("fetching output %s of node %s: %w", ref.Filename, node, err)
	}
	mt := mimeOf(ref.Filename, resp.Header.Get("Content-Type"))
	return &Output{
		NodeID:    node,
		Filename:  ref.Filename,
		Subfolder: ref.Subfolder,
		Type:      ref.Type,
		Kind:      kindOf(mt),
		Mime:      mt,
		Size:      n,
		SHA256:    hex.EncodeToString(h.Sum(nil)),
		Bytes:     buf.Bytes(),
	}, nil
}

// extraTypes are media types some systems' tables lack.
var extraTypes = map[string]string{
	".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp", ".gif": "image/gif",
	".mp4": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime", ".mkv": "video/x-matroska",
	".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".opus": "audio/opus",
	".txt": "text/plain; charset=utf-8", ".json": "application/json", ".glb": "model/gltf-binary",
}

// mimeOf picks a file's media type: from its extension, else from the server's answer.
func mimeOf(name, served string) string {
	ext := strings.ToLower(path.Ext(name))
	if t, ok := extraTypes[ext]; ok {
		return t
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	if served != "" {
		return served
	}
	return "application/octet-stream"
}

func (c *Client) get(ctx context.Context, p string, q url.Values) (*http.Response, error) {
	u := c.BaseURL + p
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	return c.httpClient().Do(req)
}

func (c *Client) post(ctx context.Context, p, ctype string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+p, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", ctype)
	return c.httpClient().Do(req)
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}
