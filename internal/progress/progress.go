// Package progress shows what a build is doing. On a terminal it keeps one line per running
// task (a Task: one node of a build, with a status such as "fetching" and optionally a byte
// count) below the permanent log lines, redrawn in place; otherwise it prints plain log
// lines: one per status change of a task and one when it ends.
//
// A nil *Display and a nil *Task are valid and discard everything, so libraries can take a
// *Display without checking it.
package progress

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Options configure a Display.
type Options struct {
	// TTY redraws running tasks in place (the writer is a terminal).
	TTY bool
	// Width cuts redrawn lines to this many columns on a terminal (0 = 100).
	Width int
	// Interval between redraws on a terminal (0 = 150ms).
	Interval time.Duration
}

// Display writes progress to one writer. Close it when the work is done.
type Display struct {
	mu      sync.Mutex
	w       io.Writer
	opts    Options
	running []*Task
	drawn   int
	dirty   bool
	stop    chan struct{}
	done    chan struct{}
	closed  bool
}

// New returns a Display writing to w. On a terminal a goroutine redraws the running tasks
// until Close is called or ctx is done.
func New(ctx context.Context, w io.Writer, opts Options) *Display {
	if opts.Width <= 0 {
		opts.Width = 100
	}
	if opts.Interval <= 0 {
		opts.Interval = 150 * time.Millisecond
	}
	d := &Display{w: w, opts: opts, stop: make(chan struct{}), done: make(chan struct{})}
	if !opts.TTY {
		close(d.done)
		return d
	}
	go func() {
		defer close(d.done)
		t := time.NewTicker(opts.Interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-d.stop:
				return
			case <-t.C:
				d.mu.Lock()
				if d.dirty {
					d.redrawLocked()
				}
				d.mu.Unlock()
			}
		}
	}()
	return d
}

// Close stops redrawing and clears the running lines. It is safe to call twice.
func (d *Display) Close() {
	if d == nil {
		return
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	close(d.stop)
	d.mu.Unlock()
	<-d.done
	d.mu.Lock()
	defer d.mu.Unlock()
	d.clearLocked()
}

// Logf prints a permanent line.
func (d *Display) Logf(format string, args ...any) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.printLocked(fmt.Sprintf(format, args...))
}

// Start begins a task named name (e.g. "git comfyui") and returns it.
func (d *Display) Start(name string) *Task {
	if d == nil {
		return nil
	}
	t := &Task{d: d, name: name, started: time.Now()}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.running = append(d.running, t)
	d.dirty = d.opts.TTY
	return t
}

// Task is one running piece of work shown by a Display.
type Task struct {
	d       *Display
	name    string
	status  string
	started time.Time
	cur     int64
	total   int64
	bytes   bool
	lastPct int64
	ended   bool
	// Transfer rate: bytes counted from rateFrom (the first SetBytes, so a resumed download's
	// existing bytes do not count) at rateStart; lastLine is when plain output last printed.
	rateStart time.Time
	rateFrom  int64
	lastLine  time.Time
}

// PlainInterval is the longest time between two plain-output lines of a task reporting bytes.
const PlainInterval = 30 * time.Second

// Status sets what the task is doing now, e.g. "fetching https://…".
func (t *Task) Status(s string) {
	if t == nil {
		return
	}
	d := t.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if t.ended || t.status == s {
		return
	}
	t.status = s
	if d.opts.TTY {
		d.dirty = true
	} else {
		d.printLocked(t.name + ": " + s)
	}
}

// Logf prints a permanent line prefixed with the task's name.
func (t *Task) Logf(format string, args ...any) {
	if t == nil {
		return
	}
	t.d.Logf("%s: %s", t.name, fmt.Sprintf(format, args...))
}

// SetBytes reports byte progress: done of total (total <= 0 when unknown). Terminal lines show
// the rate and the time left; plain output prints a line (with both) at each further 25% and at
// least every PlainInterval.
func (t *Task) SetBytes(done, total int64) {
	if t == nil {
		return
	}
	d := t.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if t.ended {
		return
	}
	now := time.Now()
	if !t.bytes {
		t.rateStart, t.rateFrom, t.lastLine = now, done, now
	}
	t.bytes, t.cur, t.total = true, done, total
	if d.opts.TTY {
		d.dirty = true
		return
	}
	pct := int64(0)
	if total > 0 {
		pct = done * 100 / total
	}
	if (total > 0 && pct/25 > t.lastPct/25) || now.Sub(t.lastLine) >= PlainInterval {
		t.lastPct, t.lastLine = pct, now
		line := fmt.Sprintf("%s: %s", t.name, FormatBytes(done))
		if total > 0 {
			line += fmt.Sprintf(" of %s (%d%%)", FormatBytes(total), pct)
		}
		d.printLocked(line + t.rateETA(now))
	}
}

// rateETA formats the average rate since the first SetBytes and the time left, e.g.
// ", 112.0 MiB/s, 1m20s left"; empty until there is a rate.
func (t *Task) rateETA(now time.Time) string {
	el := now.Sub(t.rateStart)
	n := t.cur - t.rateFrom
	if el < 100*time.Millisecond || n <= 0 {
		return ""
	}
	rate := float64(n) / el.Seconds()
	s := ", " + FormatBytes(int64(rate)) + "/s"
	if t.total > 0 && t.cur < t.total {
		left := time.Duration(float64(t.total-t.cur) / rate * float64(time.Second))
		s += ", " + left.Round(time.Second).String() + " left"
	}
	return s
}

// Done ends the task with a permanent line: "<name>: <msg> (<elapsed>)", or its error.
func (t *Task) Done(msg string, err error) {
	if t == nil {
		return
	}
	d := t.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if t.ended {
		return
	}
	t.ended = true
	for i, r := range d.running {
		if r == t {
			d.running = append(d.running[:i], d.running[i+1:]...)
			break
		}
	}
	el := time.Since(t.started).Round(10 * time.Millisecond)
	if err != nil {
		d.printLocked(fmt.Sprintf("%s: FAILED after %s: %v", t.name, el, err))
	} else {
		d.printLocked(fmt.Sprintf("%s: %s (%s)", t.name, msg, el))
	}
	d.dirty = d.opts.TTY
}

// printLocked writes a permanent line above the running lines.
func (d *Display) printLocked(line string) {
	if d.opts.TTY {
		d.clearLocked()
		fmt.Fprintln(d.w, line)
		d.redrawLocked()
		return
	}
	fmt.Fprintln(d.w, line)
}

func (d *Display) clearLocked() {
	if d.drawn == 0 {
		return
	}
	fmt.Fprintf(d.w, "\x1b[%dA", d.drawn)
	for i := 0; i < d.drawn; i++ {
		fmt.Fprint(d.w, "\x1b[2K\n")
	}
	fmt.Fprintf(d.w, "\x1b[%dA", d.drawn)
	d.drawn = 0
}

func (d *Display) redrawLocked() {
	if d.closed && d.drawn == 0 && len(d.running) == 0 {
		return
	}
	var b strings.Builder
	if d.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", d.drawn)
	}
	for _, t := range d.running {
		b.WriteString("\x1b[2K")
		b.WriteString(cut(t.line(), d.opts.Width))
		b.WriteByte('\n')
	}
	// Clear lines left over from a longer previous frame.
	for i := len(d.running); i < d.drawn; i++ {
		b.WriteString("\x1b[2K\n")
	}
	if extra := d.drawn - len(d.running); extra > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", extra)
	}
	io.WriteString(d.w, b.String())
	d.drawn = len(d.running)
	d.dirty = false
}

// line renders a running task on a terminal.
func (t *Task) line() string {
	s := fmt.Sprintf("  %-28s %5s  %s", t.name, time.Since(t.started).Truncate(time.Second), t.status)
	if t.bytes {
		if t.total > 0 {
			s += fmt.Sprintf("  %s %s / %s", bar(t.cur, t.total, 20), FormatBytes(t.cur), FormatBytes(t.total))
		} else {
			s += "  " + FormatBytes(t.cur)
		}
		s += t.rateETA(time.Now())
	}
	return s
}

func bar(cur, total int64, width int) string {
	n := int(cur * int64(width) / total)
	n = max(0, min(n, width))
	return "[" + strings.Repeat("=", n) + strings.Repeat(" ", width-n) + "]"
}

func cut(s string, w int) string {
	r := []rune(s)
	if len(r) > w {
		return string(r[:w])
	}
	return s
}

// FormatBytes formats n with a binary unit, e.g. "1.5 MiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
