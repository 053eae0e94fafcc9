package diff

import (
	"fmt"
	"io"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/internal/progress"
)

// WriteText writes the report compactly for a terminal or a CI log: one line per change,
// grouped by section, "+" added, "-" removed, "~" moved or changed, "^" upgraded, "v" downgraded.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "diff %s -> %s\n", r.A, r.B)
	if r.Empty() {
		b.WriteString("no changes\n")
	}
	if c := r.Comfy; c != nil {
		fmt.Fprintf(&b, "comfyui   %s\n", commitLine(c))
	}
	section := "nodes"
	line := func(format string, args ...any) {
		fmt.Fprintf(&b, "%-9s "+format+"\n", append([]any{section}, args...)...)
		section = ""
	}
	for _, n := range r.NodesAdded {
		if n.Registry != "" {
			line("+ %s %s@%s (registry)", n.Name, n.Registry, n.Version)
			continue
		}
		line("+ %s %s (%s)", n.Name, short(n.Commit), n.Repo)
	}
	for _, n := range r.NodesRemove {
		if n.Registry != "" {
			line("- %s %s@%s", n.Name, n.Registry, n.Version)
			continue
		}
		line("- %s %s", n.Name, short(n.Commit))
	}
	for _, n := range r.NodesMoved {
		rc := n.Registry
		switch {
		case rc == nil:
			line("~ %s %s", n.Name, commitLine(&n.CommitChange))
		case rc.Change == "upgraded":
			line("^ %s %s -> %s (%s)", n.Name, rc.From, rc.To, rc.ID)
		case rc.Change == "downgraded":
			line("v %s %s -> %s (%s)", n.Name, rc.From, rc.To, rc.ID)
		default:
			pin := func(id, v, commit string) string {
				if v != "" {
					return id + "@" + v
				}
				return short(commit)
			}
			fromID := rc.ID
			if rc.FromID != "" {
				fromID = rc.FromID
			}
			line("~ %s %s -> %s", n.Name, pin(fromID, rc.From, n.From), pin(rc.ID, rc.To, n.To))
		}
	}
	if p := r.Python; p != nil {
		section = "python"
		line("%s %s -> %s %s", p.From.Implementation, p.From.Version, p.To.Implementation, p.To.Version)
	}
	section = "packages"
	for _, p := range r.Packages {
		switch p.Change {
		case "added":
			line("+ %s %s", p.Name, p.To)
		case "removed":
			line("- %s %s", p.Name, p.From)
		case "upgraded":
			line("^ %s %s -> %s", p.Name, p.From, p.To)
		case "downgraded":
			line("v %s %s -> %s", p.Name, p.From, p.To)
		default:
			line("~ %s %s (another file)", p.Name, p.To)
		}
	}
	section = "models"
	for _, m := range r.Models {
		switch m.Change {
		case "added":
			line("+ %s %s %s", m.Target, HumanSize(m.ToSize), short(m.ToChecksum))
		case "removed":
			line("- %s %s", m.Target, HumanSize(m.FromSize))
		default:
			line("~ %s %s -> %s (%s -> %s)", m.Target, short(m.FromChecksum), short(m.ToChecksum), HumanSize(m.FromSize), HumanSize(m.ToSize))
		}
	}
	section = "env"
	for _, e := range r.Env {
		switch e.Change {
		case "added":
			line("+ %s=%q", e.Name, e.To)
		case "removed":
			line("- %s", e.Name)
		default:
			line("~ %s %q -> %q", e.Name, e.From, e.To)
		}
	}
	section = "settings"
	for _, c := range r.Settings {
		line("~ %s %s -> %s", c.Field, orNone(c.From), orNone(c.To))
	}
	s := r.Size
	approx := ""
	if !s.Known {
		approx = " (at least; some sizes unknown until built)"
	}
	sign := "+"
	if s.Delta < 0 {
		sign = "-"
	}
	fmt.Fprintf(&b, "size      %s -> %s (%s%s), %s new to the store%s\n",
		HumanSize(s.TotalA), HumanSize(s.TotalB), sign, HumanSize(abs(s.Delta)), HumanSize(s.NewToStore), approx)
	_, err := io.WriteString(w, b.String())
	return err
}

func commitLine(c *CommitChange) string {
	s := short(c.From) + " -> " + short(c.To)
	if c.FromRepo != "" {
		s += fmt.Sprintf(" (repository %s -> %s)", c.FromRepo, c.Repo)
	} else if c.Distance != nil {
		switch d := *c.Distance; {
		case d > 0:
			s += fmt.Sprintf(" (%s ahead)", plural(d, "commit"))
		case d < 0:
			s += fmt.Sprintf(" (%s back)", plural(-d, "commit"))
		}
	}
	return s
}

// short abbreviates a commit to 12 characters and a checksum to its algorithm and 12 digits.
func short(s string) string {
	if algo, hex, ok := strings.Cut(s, ":"); ok {
		if len(hex) > 12 {
			hex = hex[:12]
		}
		return algo + ":" + hex
	}
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// HumanSize formats a byte count with binary units: 0 B, 512 B, 1.5 KiB, 6.5 GiB
// (progress.FormatBytes).
func HumanSize(n int64) string { return progress.FormatBytes(n) }

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
