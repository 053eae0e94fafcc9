package progress

import (
	"bytes"
	"context"
	"regexp"
	"testing"
	"time"
)

// TestPlainLinesShowRateAndETA checks that a byte task's plain lines carry the rate and the
// time left, computed from the bytes counted since the task first reported bytes.
func TestPlainLinesShowRateAndETA(t *testing.T) {
	var buf bytes.Buffer
	d := New(context.Background(), &buf, Options{})
	task := d.Start("model x")
	task.SetBytes(100<<20, 1000<<20) // resumed at 100 MiB: not counted in the rate
	// Pretend the transfer began 2 seconds ago.
	task.rateStart = time.Now().Add(-2 * time.Second)
	task.SetBytes(300<<20, 1000<<20) // 200 MiB in 2 s, 700 MiB left
	task.Done("done", nil)
	d.Close()
	out := buf.String()
	// About 100 MiB/s and 7s left; the pattern leaves room for a slow machine.
	if !regexp.MustCompile(`model x: 300\.0 MiB of 1000\.0 MiB \(30%\), (9[0-9]|100)\.[0-9] MiB/s, [78]s left`).MatchString(out) {
		t.Fatalf("no rate and ETA in:\n%s", out)
	}
}
