package runner

import (
	"fmt"
	"io"
	"strings"
)

// ProgressPrinter returns a Progress callback that draws a job's progress on w: a bar
// redrawn in place ("\r") when tty is true, else one line per node and per quarter of a
// node's steps.
func ProgressPrinter(w io.Writer, tty bool) func(Progress) {
	lastQuarter := -1
	return func(p Progress) {
		switch p.Event {
		case "executing":
			lastQuarter = -1
			if !tty {
				fmt.Fprintf(w, "node %s (%s) [%d/%d nodes]\n", p.NodeID, p.NodeType, p.Done+1, max(p.Total, p.Done+1))
				return
			}
			fmt.Fprintf(w, "\r\033[K%s node %s (%s)", bar(p.Done, p.Total, 20), p.NodeID, p.NodeType)
		case "progress":
			if !tty {
				q := 0
				if p.Max > 0 {
					q = 4 * p.Value / p.Max
				}
				if q != lastQuarter {
					lastQuarter = q
					fmt.Fprintf(w, "node %s (%s) step %d of %d\n", p.NodeID, p.NodeType, p.Value, p.Max)
				}
				return
			}
			fmt.Fprintf(w, "\r\033[K%s node %s (%s) step %d of %d", bar(p.Value, p.Max, 20), p.NodeID, p.NodeType, p.Value, p.Max)
		case "execution_cached":
			if !tty && p.Total >= 0 {
				fmt.Fprintf(w, "%d nodes to run\n", p.Total)
			}
		case "done":
			if tty {
				fmt.Fprintf(w, "\r\033[K%s done\n", bar(1, 1, 20))
			} else {
				fmt.Fprintln(w, "done")
			}
		}
	}
}

func bar(k, n, width int) string {
	if n <= 0 {
		n, k = 1, 0
	}
	k = min(max(k, 0), n)
	fill := width * k / n
	return "[" + strings.Repeat("#", fill) + strings.Repeat(" ", width-fill) + "]"
}
