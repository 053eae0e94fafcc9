package runner

import (
	"bytes"
	"context"
	"encoding/base64"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/runner/standin"
)

// testRoot makes a runtime root by hand (the stand-in as ComfyUI) and a state dir.
func testRoot(t *testing.T, o standin.RootOptions) (root, state string) {
	t.Helper()
	dir := t.TempDir()
	root = filepath.Join(dir, "root")
	if o.Models == nil {
		o.Models = map[string]string{"checkpoints/tiny.safetensors": "tiny\n"}
	}
	if err := standin.WriteRoot(root, o); err != nil {
		t.Fatal(err)
	}
	return root, filepath.Join(dir, "state")
}

// syncBuffer is a log writer safe for the process's output goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var shared struct {
	once sync.Once
	p    *Process
	err  error
	log  *syncBuffer
	dir  string
}

// TestMain stops the shared stand-in after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if shared.p != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		shared.p.Stop(ctx)
		cancel()
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// sharedStandin returns one stand-in process shared by the tests that need no fault switch.
func sharedStandin(t *testing.T) *Process {
	t.Helper()
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "runner-test-")
		if shared.err != nil {
			return
		}
		root := filepath.Join(shared.dir, "root")
		if shared.err = standin.WriteRoot(root, standin.RootOptions{Models: map[string]string{"checkpoints/tiny.safetensors": "tiny\n"}}); shared.err != nil {
			return
		}
		shared.log = &syncBuffer{}
		shared.p, shared.err = Start(context.Background(), StartOptions{RuntimeRoot: root, StateDir: filepath.Join(shared.dir, "state"), Log: shared.log, ReadyTimeout: 30 * time.Second, StopTimeout: 5 * time.Second})
	})
	if shared.err != nil {
		t.Fatalf("starting the shared stand-in: %v", shared.err)
	}
	return shared.p
}

// startStandin starts the stand-in from a fresh root; env adds fault switches.
func startStandin(t *testing.T, o standin.RootOptions, env map[string]string) (*Process, *syncBuffer) {
	t.Helper()
	root, state := testRoot(t, o)
	log := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	p, err := Start(ctx, StartOptions{RuntimeRoot: root, StateDir: state, Env: env, Log: log, ReadyTimeout: 30 * time.Second, StopTimeout: 5 * time.Second})
	if err != nil {
		cancel()
		t.Fatalf("start: %v\nlog:\n%s", err, log)
	}
	t.Cleanup(func() {
		sctx, c := context.WithTimeout(context.Background(), 20*time.Second)
		defer c()
		if err := p.Stop(sctx); err != nil {
			t.Errorf("stop: %v", err)
		}
		cancel()
	})
	return p, log
}

func readWorkflow(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "workflows", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pngBytes encodes a w x h image with a gradient.
func pngBytes(t testing.TB, w, h int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.NRGBA{uint8(x * 7), uint8(y * 5), 90, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// decodePNG checks b is a PNG and returns its size.
func decodePNG(t *testing.T, b []byte) image.Point {
	t.Helper()
	cfg, err := png.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	return image.Pt(cfg.Width, cfg.Height)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}
