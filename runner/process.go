package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/runpod-comfy/runpod-comfy/internal/layout"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

// RootDir returns the runtime root of version id under the volume root: ROOT/builds/comfy-<id>.
func RootDir(root, id string) string { return layout.New(root).RootLink(id) }

// StateDir returns the mutable state directory of version id: ROOT/state/comfy-<id>.
func StateDir(root, id string) string { return layout.New(root).State(id) }

// StateDirs are the directories below a state dir that ComfyUI writes to.
type StateDirs struct {
	Input       string // uploads and input images
	Output      string // outputs of save nodes
	Temp        string // passed as --temp-directory; ComfyUI uses Temp/temp
	User        string // settings, workflows, the database comfyui.db
	CustomNodes string // writable copies of custom nodes (and links to the others)
}

func stateDirs(state string) StateDirs {
	return StateDirs{
		Input:       filepath.Join(state, "input"),
		Output:      filepath.Join(state, "output"),
		Temp:        filepath.Join(state, "temp"),
		User:        filepath.Join(state, "user"),
		CustomNodes: filepath.Join(state, "custom_nodes"),
	}
}

// StartOptions say how to start ComfyUI from a runtime root.
type StartOptions struct {
	// RuntimeRoot is the runtime root (e.g. ROOT/builds/comfy-<id>); it is resolved once, so
	// a new build swapping the symlink does not change a running process.
	RuntimeRoot string
	// StateDir is the version's mutable state (ROOT/state/comfy-<id>); created if missing.
	StateDir string
	// Listen is the address ComfyUI listens on; default 127.0.0.1.
	Listen string
	// Port is ComfyUI's port; 0 picks a free one.
	Port int
	// Env is added to the child's environment after the manifest's env and wins over it.
	Env map[string]string
	// BaseEnv is the child's base environment ("K=V"); nil inherits this process's.
	BaseEnv []string
	// ExtraArgs are appended to ComfyUI's command line.
	ExtraArgs []string
	// LogLevel, when set, is ComfyUI's --verbose level (DEBUG, INFO, WARNING, ERROR or
	// CRITICAL; worker-comfyui's COMFY_LOG_LEVEL). A ComfyUI without --verbose ignores it.
	LogLevel string
	// ModelsDir is an optional extra models directory: each folder below it (checkpoints,
	// loras, ...) is added to ComfyUI's search paths through a generated yaml.
	ModelsDir string
	// Log receives ComfyUI's output line by line, each line prefixed with LogPrefix.
	Log io.Writer
	// LogPrefix prefixes each log line; default "[comfyui] ".
	LogPrefix string
	// ReadyTimeout bounds the wait for ComfyUI to answer; default 5 minutes.
	ReadyTimeout time.Duration
	// StopTimeout is the wait after each signal of Stop (SIGINT, then SIGTERM); default 10 s.
	StopTimeout time.Duration
}

// Sentinel errors of Start, matched with errors.Is on a *StartError.
var (
	ErrExited   = errors.New("comfyui exited before it was ready")
	ErrNotReady = errors.New("comfyui did not answer in time")
)

// StartError is a failed start: the process exited early (Err is ErrExited) or did not answer
// in time (Err is ErrNotReady). Log holds the last lines ComfyUI wrote.
type StartError struct {
	Err      error
	ExitCode int // when Err is ErrExited; -1 when killed by a signal
	Waited   time.Duration
	Log      []string
}

func (e *StartError) Error() string {
	var b strings.Builder
	switch {
	case errors.Is(e.Err, ErrExited):
		fmt.Fprintf(&b, "%v (exit status %d after %s)", e.Err, e.ExitCode, e.Waited.Round(time.Millisecond))
	default:
		fmt.Fprintf(&b, "%v (waited %s)", e.Err, e.Waited.Round(time.Millisecond))
	}
	if len(e.Log) > 0 {
		b.WriteString("; last lines of its log:")
		for _, l := range e.Log {
			b.WriteString("\n    ")
			b.WriteString(l)
		}
	} else {
		b.WriteString("; it wrote no log")
	}
	return b.String()
}

func (e *StartError) Unwrap() error { return e.Err }

// Process is one running ComfyUI.
type Process struct {
	url     string
	root    string // resolved runtime root
	dirs    StateDirs
	cmd     *exec.Cmd
	log     *logSink
	exited  chan struct{}
	exitErr error
	stopTO  time.Duration
}

// Start starts ComfyUI from a runtime root and returns once it answers HTTP requests. The
// process is stopped (Stop) when ctx ends.
func Start(ctx context.Context, opts StartOptions) (*Process, error) {
	if opts.RuntimeRoot == "" || opts.StateDir == "" {
		return nil, errors.New("starting comfyui: runtime root and state dir are required")
	}
	root, err := filepath.EvalSymlinks(opts.RuntimeRoot)
	if err != nil {
		return nil, fmt.Errorf("starting comfyui: runtime root: %w", err)
	}
	root, err = filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("starting comfyui: %w", err)
	}
	m, err := ReadManifest(root)
	if err != nil {
		return nil, fmt.Errorf("starting comfyui: %w", err)
	}
	state, err := filepath.Abs(opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("starting comfyui: %w", err)
	}
	dirs := stateDirs(state)
	for _, d := range []string{dirs.Input, dirs.Output, dirs.Temp, dirs.User, dirs.CustomNodes} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("starting comfyui: state dir: %w", err)
		}
	}
	listen := opts.Listen
	if listen == "" {
		listen = "127.0.0.1"
	}
	port := opts.Port
	if port == 0 {
		if port, err = freePort(listen); err != nil {
			return nil, fmt.Errorf("starting comfyui: %w", err)
		}
	}
	env := map[string]string{}
	for k, v := range m.Env {
		env[k] = v
	}
	for k, v := range opts.Env {
		env[k] = v
	}
	env["PYTHONUNBUFFERED"] = "1"

	argv, err := commandLine(root, m, dirs, env, listen, port, opts)
	if err != nil {
		return nil, fmt.Errorf("starting comfyui: %w", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = state
	base := opts.BaseEnv
	if base == nil {
		base = cmd.Environ()
	}
	cmd.Env = append([]string(nil), base...)
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	cmd.SysProcAttr = sysProcAttr()
	prefix := opts.LogPrefix
	if prefix == "" {
		prefix = "[comfyui] "
	}
	sink := newLogSink(opts.Log, prefix, 200)
	cmd.Stdout = sink
	cmd.Stderr = sink
	cmd.WaitDelay = 2 * time.Second
	stopTO := opts.StopTimeout
	if stopTO <= 0 {
		stopTO = 10 * time.Second
	}
	host := listen
	if strings.Contains(host, ",") {
		host = strings.Split(host, ",")[0]
	}
	if host == "0.0.0.0" || host == "" {
		host = "127.0.0.1"
	} else if host == "::" {
		host = "::1"
	}
	p := &Process{
		url:    "http://" + net.JoinHostPort(host, strconv.Itoa(port)),
		root:   root,
		dirs:   dirs,
		cmd:    cmd,
		log:    sink,
		exited: make(chan struct{}),
		stopTO: stopTO,
	}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting comfyui: %w", err)
	}
	go func() {
		p.exitErr = cmd.Wait()
		sink.flush()
		close(p.exited)
	}()
	// The process ends with ctx; this goroutine ends when the process has exited.
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 3*stopTO)
			defer cancel()
			_ = p.Stop(sctx)
		case <-p.exited:
		}
	}()
	timeout := opts.ReadyTimeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	if err := p.waitReady(ctx, started, timeout); err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 3*stopTO)
		defer cancel()
		_ = p.Stop(sctx)
		return nil, err
	}
	return p, nil
}

func (p *Process) waitReady(ctx context.Context, started time.Time, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	c := NewClient(p.url)
	c.HTTP = &http.Client{Timeout: 2 * time.Second}
	wait := 20 * time.Millisecond
	for {
		if err := c.Ready(ctx); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("starting comfyui: %w", ctx.Err())
		case <-p.exited:
			return &StartError{Err: ErrExited, ExitCode: exitCode(p.exitErr), Waited: time.Since(started), Log: p.LogTail(20)}
		case <-deadline.C:
			return &StartError{Err: ErrNotReady, Waited: time.Since(started), Log: p.LogTail(20)}
		case <-time.After(wait):
		}
		if wait < 200*time.Millisecond {
			wait *= 2
		}
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err == nil {
		return 0
	}
	return -1
}

// URL returns ComfyUI's base URL, e.g. http://127.0.0.1:8188.
func (p *Process) URL() string { return p.url }

// Client returns an API client for this process.
func (p *Process) Client() *Client { return NewClient(p.url) }

// Dirs returns the state directories the process writes to.
func (p *Process) Dirs() StateDirs { return p.dirs }

// RuntimeRoot returns the resolved runtime root the process runs from.
func (p *Process) RuntimeRoot() string { return p.root }

// Exited returns a channel closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// ExitErr returns how the process ended (nil for status 0); valid once Exited is closed.
func (p *Process) ExitErr() error {
	select {
	case <-p.exited:
		return p.exitErr
	default:
		return nil
	}
}

// LogTail returns the last n lines ComfyUI wrote (without the prefix).
func (p *Process) LogTail(n int) []string { return p.log.tail(n) }

// Stop stops ComfyUI and everything it started: SIGINT to its process group, then SIGTERM
// after StopTimeout, then SIGKILL. It returns once the process has exited, or ctx's error.
// Stopping an exited process does nothing.
func (p *Process) Stop(ctx context.Context) error {
	select {
	case <-p.exited:
		killGroup(p.cmd, syscall.SIGKILL) // leftovers of the group, if any
		return nil
	default:
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGKILL} {
		killGroup(p.cmd, sig)
		t := time.NewTimer(p.stopTO)
		select {
		case <-p.exited:
			t.Stop()
			killGroup(p.cmd, syscall.SIGKILL)
			return nil
		case <-ctx.Done():
			t.Stop()
			killGroup(p.cmd, syscall.SIGKILL)
			return fmt.Errorf("stopping comfyui: %w", ctx.Err())
		case <-t.C:
		}
	}
	<-p.exited
	return nil
}

func killGroup(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd.Process == nil {
		return
	}
	// The child leads its own process group (Setpgid), so -pid reaches its children too.
	_ = syscall.Kill(-cmd.Process.Pid, sig)
}

func freePort(listen string) (int, error) {
	host := strings.Split(listen, ",")[0]
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("finding a free port on %s: %w", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ReadManifest reads manifest.json of a runtime root.
func ReadManifest(root string) (*specs.Manifest, error) {
	data, err := os.ReadFile(filepath.Join(root, "manifest.json"))
	if err != nil {
		return nil, fmt.Errorf("reading the runtime root's manifest: %w", err)
	}
	var m specs.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(root, "manifest.json"), err)
	}
	return &m, nil
}

// logSink splits ComfyUI's output into lines, writes them with a prefix and keeps the last
// lines for error messages.
type logSink struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	max    int
	lines  []string
	part   []byte
}

func newLogSink(w io.Writer, prefix string, max int) *logSink {
	return &logSink{w: w, prefix: prefix, max: max}
}

func (s *logSink) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(b)
	for len(b) > 0 {
		i := strings.IndexByte(string(b), '\n')
		if i < 0 {
			s.part = append(s.part, b...)
			if len(s.part) > 64<<10 { // a very long line without newline: emit it
				s.emit()
			}
			break
		}
		s.part = append(s.part, b[:i]...)
		s.emit()
		b = b[i+1:]
	}
	return n, nil
}

func (s *logSink) emit() {
	line := strings.TrimRight(string(s.part), "\r")
	s.part = s.part[:0]
	if s.w != nil {
		fmt.Fprintf(s.w, "%s%s\n", s.prefix, line)
	}
	s.lines = append(s.lines, line)
	if len(s.lines) > s.max {
		s.lines = append(s.lines[:0], s.lines[len(s.lines)-s.max:]...)
	}
}

func (s *logSink) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.part) > 0 {
		s.emit()
	}
}

func (s *logSink) tail(n int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	lines := s.lines
	// drop trailing empty lines; they say nothing in an error message
	for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
		lines = lines[:len(lines)-1]
	}
	if n < len(lines) {
		lines = lines[len(lines)-n:]
	}
	return append([]string(nil), lines...)
}
