package runner

import (
	"strings"
	"testing"
)

func TestProgressPrinter(t *testing.T) {
	var b strings.Builder
	p := ProgressPrinter(&b, false)
	p(Progress{Event: "execution_cached", Total: 2})
	p(Progress{Event: "executing", NodeID: "3", NodeType: "KSampler", Done: 0, Total: 2})
	for k := 1; k <= 20; k++ {
		p(Progress{Event: "progress", NodeID: "3", NodeType: "KSampler", Value: k, Max: 20})
	}
	p(Progress{Event: "done", Done: 2, Total: 2})
	want := "2 nodes to run\nnode 3 (KSampler) [1/2 nodes]\nnode 3 (KSampler) step 1 of 20\nnode 3 (KSampler) step 5 of 20\nnode 3 (KSampler) step 10 of 20\nnode 3 (KSampler) step 15 of 20\nnode 3 (KSampler) step 20 of 20\ndone\n"
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	p = ProgressPrinter(&b, true)
	p(Progress{Event: "progress", NodeID: "3", NodeType: "KSampler", Value: 5, Max: 20})
	if b.String() != "\r\033[K[#####               ] node 3 (KSampler) step 5 of 20" {
		t.Errorf("bar %q", b.String())
	}
}
