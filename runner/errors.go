package runner

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Errors of a run, matched with errors.Is.
var (
	// ErrInterrupted is a job stopped by POST /interrupt (execution_interrupted).
	ErrInterrupted = errors.New("the job was interrupted")
	// ErrComfyExited is a job whose ComfyUI process exited before the job ended.
	ErrComfyExited = errors.New("comfyui exited during the job")
)

// WorkflowError is a workflow that cannot be submitted: not JSON, not an object, UI format,
// or a node without class_type.
type WorkflowError struct {
	Reason string
}

func (e *WorkflowError) Error() string { return "workflow: " + e.Reason }

// uiFormatHint says how to get the API format out of ComfyUI.
const uiFormatHint = `it is in ComfyUI's UI format (it has "nodes" and "links"), but runs need the API format: in ComfyUI open the workflow and use Workflow > Export (API) (older versions: Settings > enable Dev mode, then "Save (API Format)"), and pass that file`

// ValidationError is ComfyUI refusing a prompt (HTTP 400 from POST /prompt, or a 200 whose
// node_errors is not empty): Type and Message come from "error", Nodes from "node_errors".
type ValidationError struct {
	Type    string                `json:"type"`
	Message string                `json:"message"`
	Details string                `json:"details,omitempty"`
	Nodes   map[string]NodeErrors `json:"node_errors,omitempty"`
}

// NodeErrors are the errors of one node of a refused prompt.
type NodeErrors struct {
	ClassType        string      `json:"class_type"`
	Errors           []NodeError `json:"errors"`
	DependentOutputs []any       `json:"dependent_outputs,omitempty"`
}

// NodeError is one reason a node was refused, e.g. Type "value_not_in_list".
type NodeError struct {
	Type      string         `json:"type"`
	Message   string         `json:"message"`
	Details   string         `json:"details,omitempty"`
	ExtraInfo map[string]any `json:"extra_info,omitempty"`
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("comfyui refused the workflow: ")
	b.WriteString(e.Message)
	if e.Type != "" {
		fmt.Fprintf(&b, " (%s)", e.Type)
	}
	if len(e.Nodes) == 0 && e.Details != "" {
		b.WriteString(": ")
		b.WriteString(e.Details)
	}
	ids := make([]string, 0, len(e.Nodes))
	for id := range e.Nodes {
		ids = append(ids, id)
	}
	SortNodeIDs(ids)
	for _, id := range ids {
		n := e.Nodes[id]
		for _, ne := range n.Errors {
			fmt.Fprintf(&b, "\n  node %s (%s): %s", id, n.ClassType, ne.Message)
			if ne.Details != "" {
				fmt.Fprintf(&b, ": %s", ne.Details)
			}
		}
	}
	return b.String()
}

// ExecutionError is a node that raised while the job ran (execution_error).
type ExecutionError struct {
	PromptID         string   `json:"prompt_id"`
	NodeID           string   `json:"node_id"`
	NodeType         string   `json:"node_type"`
	ExceptionType    string   `json:"exception_type"`
	ExceptionMessage string   `json:"exception_message"`
	Traceback        []string `json:"traceback,omitempty"`
}

func (e *ExecutionError) Error() string {
	msg := strings.TrimSpace(e.ExceptionMessage)
	if e.ExceptionType != "" {
		msg = e.ExceptionType + ": " + msg
	}
	return fmt.Sprintf("node %s (%s) failed: %s", e.NodeID, e.NodeType, msg)
}

// SortNodeIDs sorts node ids numerically when they are numbers ("2" < "10"), else as strings.
func SortNodeIDs(ids []string) {
	sort.Slice(ids, func(i, j int) bool {
		a, b := ids[i], ids[j]
		if len(a) != len(b) && isDigits(a) && isDigits(b) {
			return len(a) < len(b)
		}
		return a < b
	})
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
