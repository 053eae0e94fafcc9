package progress

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the redraw goroutine and the test.
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

func TestPlainLines(t *testing.T) {
	var buf syncBuffer
	d := New(context.Background(), &buf, Options{})
	a := d.Start("git comfyui")
	a.Status("fetching")
	a.Status("fetching") // unchanged: no second line
	m := d.Start("model x")
	m.SetBytes(10, 100)
	m.SetBytes(30, 100)
	m.SetBytes(100, 100)
	a.Done("built", nil)
	m.Done("", errors.New("checksum mismatch"))
	m.Status("after the end") // ignored
	d.Logf("all %s", "done")
	d.Close()
	got := buf.String()
	for _, want := range []string{
		"git comfyui: fetching\n",
		"model x: 30 B of 100 B (30%)\n",
		"model x: 100 B of 100 B (100%)\n",
		"git comfyui: built (",
		"model x: FAILED after ",
		"checksum mismatch\n",
		"all done\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Count(got, "git comfyui: fetching") != 1 || strings.Contains(got, "after the end") || strings.Contains(got, "\x1b[") {
		t.Errorf("unexpected output:\n%s", got)
	}
}

func TestTerminalRedraw(t *testing.T) {
	var buf syncBuffer
	d := New(context.Background(), &buf, Options{TTY: true, Width: 60, Interval: time.Millisecond})
	a := d.Start("git comfyui")
	a.Status("exporting 0123456789ab")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "exporting 0123456789ab") && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	a.Done("built", nil)
	d.Close()
	got := buf.String()
	if !strings.Contains(got, "\x1b[2K") || !strings.Contains(got, "exporting 0123456789ab") || !strings.Contains(got, "git comfyui: built (") {
		t.Errorf("terminal output lacks the running line or the final line: %q", got)
	}
	for _, line := range strings.Split(got, "\n") {
		clean := strings.NewReplacer("\x1b[2K", "", "\x1b[1A", "").Replace(line)
		if len([]rune(clean)) > 60 && !strings.Contains(clean, ": built (") {
			t.Errorf("redrawn line longer than the width: %q", clean)
		}
	}
}

func TestNilDisplayDiscards(t *testing.T) {
	var d *Display
	task := d.Start("x")
	task.Status("y")
	task.SetBytes(1, 2)
	task.Done("z", nil)
	d.Logf("w")
	d.Close()
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
