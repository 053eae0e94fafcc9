package runner

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestJobStateEvents feeds the wait step's event handling a job's WebSocket messages as
// ComfyUI sends them, interleaved with another prompt's: only the job's own events count,
// cached nodes leave the total, and executing with node null is the completion signal.
func TestJobStateEvents(t *testing.T) {
	wf := Workflow{
		"1": {"class_type": "EmptyImage"},
		"2": {"class_type": "StandInSleep"},
		"3": {"class_type": "SaveImage"},
	}
	var got []Progress
	j := &jobState{wf: wf, res: &RunResult{PromptID: "p1"}, report: func(p Progress) { got = append(got, p) }, total: len(wf)}
	msgs := []string{
		`{"type":"status","data":{"status":{"exec_info":{"queue_remaining":1}}}}`,
		`{"type":"execution_start","data":{"prompt_id":"p1"}}`,
		`{"type":"execution_cached","data":{"prompt_id":"p1","nodes":["1"]}}`,
		`{"type":"executing","data":{"prompt_id":"other","node":null}}`,
		`{"type":"executing","data":{"prompt_id":"p1","node":"2"}}`,
		`{"type":"progress","data":{"prompt_id":"p1","node":"2","value":1,"max":2}}`,
		`{"type":"executing","data":{"prompt_id":"p1","node":"3"}}`,
		`{"type":"executed","data":{"prompt_id":"p1","node":"3"}}`,
	}
	for _, s := range msgs {
		var m wsMessage
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatal(err)
		}
		if j.event(m) {
			t.Fatalf("%s: taken as the completion signal", s)
		}
	}
	var done wsMessage
	json.Unmarshal([]byte(`{"type":"executing","data":{"prompt_id":"p1","node":null}}`), &done)
	if !j.event(done) {
		t.Fatal("executing with node null is not the completion signal")
	}
	want := []Progress{
		{PromptID: "p1", Event: "execution_start", Total: 3},
		{PromptID: "p1", Event: "execution_cached", Total: 2},
		{PromptID: "p1", Event: "executing", NodeID: "2", NodeType: "StandInSleep", Total: 2},
		{PromptID: "p1", Event: "progress", NodeID: "2", NodeType: "StandInSleep", Value: 1, Max: 2, Total: 2},
		{PromptID: "p1", Event: "executing", NodeID: "3", NodeType: "SaveImage", Done: 1, Total: 2},
		{PromptID: "p1", Event: "executed", NodeID: "3", NodeType: "SaveImage", Done: 1, Total: 2},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("progress (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"1"}, j.res.Cached); d != "" {
		t.Errorf("cached (-want +got):\n%s", d)
	}
	var fail wsMessage
	json.Unmarshal([]byte(`{"type":"execution_error","data":{"prompt_id":"p1","node_id":"3","node_type":"SaveImage","exception_type":"OSError","exception_message":"disk full"}}`), &fail)
	j.event(fail)
	if j.execErr == nil || j.execErr.Error() != "node 3 (SaveImage) failed: OSError: disk full" {
		t.Errorf("execution_error recorded as %v", j.execErr)
	}
}
