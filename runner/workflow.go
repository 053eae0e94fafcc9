package runner

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"path/filepath"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/internal/netguard"
)

// Workflow is an API-format workflow: node id -> node object ({"class_type", "inputs",
// "_meta"?}). Numbers are kept as json.Number, so large seeds survive unchanged.
type Workflow map[string]map[string]any

// CheckWorkflow parses an API-format workflow. A UI-format workflow (with "nodes" and
// "links"), anything that is not an object of nodes, and a node without class_type give a
// *WorkflowError. A workflow wrapped as {"prompt": {...}} is unwrapped.
func CheckWorkflow(workflow json.RawMessage) (Workflow, error) {
	var top map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(workflow))
	dec.UseNumber()
	if err := dec.Decode(&top); err != nil {
		return nil, &WorkflowError{Reason: fmt.Sprintf("not a JSON object: %v", err)}
	}
	if _, ok := top["nodes"]; ok {
		if _, ok := top["links"]; ok {
			return nil, &WorkflowError{Reason: uiFormatHint}
		}
	}
	if inner, ok := top["prompt"]; ok && len(top) <= 3 && !hasClassType(inner) && bytes.HasPrefix(bytes.TrimSpace(inner), []byte("{")) {
		return CheckWorkflow(inner)
	}
	if len(top) == 0 {
		return nil, &WorkflowError{Reason: "it has no nodes"}
	}
	wf := Workflow{}
	for id, raw := range top {
		var node map[string]any
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if err := d.Decode(&node); err != nil || node == nil {
			return nil, &WorkflowError{Reason: fmt.Sprintf("node %q is not an object (API format is {\"<id>\": {\"class_type\": ..., \"inputs\": {...}}})", id)}
		}
		ct, ok := node["class_type"].(string)
		if !ok || ct == "" {
			return nil, &WorkflowError{Reason: fmt.Sprintf("node %q has no class_type", id)}
		}
		if in, ok := node["inputs"]; ok {
			if _, ok := in.(map[string]any); !ok {
				return nil, &WorkflowError{Reason: fmt.Sprintf("node %q (%s): inputs is not an object", id, ct)}
			}
		}
		wf[id] = node
	}
	return wf, nil
}

func hasClassType(raw json.RawMessage) bool {
	var probe struct {
		ClassType any `json:"class_type"`
	}
	return json.Unmarshal(raw, &probe) == nil && probe.ClassType != nil
}

func (wf Workflow) inputs(id string) map[string]any {
	in, _ := wf[id]["inputs"].(map[string]any)
	return in
}

func (wf Workflow) classType(id string) string {
	ct, _ := wf[id]["class_type"].(string)
	return ct
}

// uniquePrefixes appends "_<tag>" to every string filename_prefix, so that the job's save
// nodes have inputs no earlier job had: ComfyUI then runs them instead of serving cached
// outputs that name old (maybe deleted) files.
func (wf Workflow) uniquePrefixes(tag string) {
	for id := range wf {
		in := wf.inputs(id)
		if p, ok := in["filename_prefix"].(string); ok {
			in["filename_prefix"] = p + "_" + tag
		}
	}
}

// replaceString replaces every string input equal to old (or old + " [input]") with repl and
// returns how many it replaced.
func (wf Workflow) replaceString(old, repl string) int {
	n := 0
	for id := range wf {
		in := wf.inputs(id)
		for k, v := range in {
			s, ok := v.(string)
			if !ok {
				continue
			}
			switch s {
			case old:
				in[k] = repl
				n++
			case old + " [input]":
				in[k] = repl + " [input]"
				n++
			}
		}
	}
	return n
}

// InputImage is one image a job needs in ComfyUI's input directory: Name is what the
// workflow refers to (e.g. LoadImage's "image" input), Image its content as base64 (a data URI
// is fine) or an http(s) URL to fetch.
type InputImage struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}

// CheckInputName refuses names that are empty, absolute, or escape the input directory.
func CheckInputName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("input image: empty name")
	case strings.ContainsAny(name, "\\\x00"):
		return fmt.Errorf("input image %q: the name has a backslash or NUL", name)
	case strings.HasPrefix(name, "/") || !filepath.IsLocal(name) || path.Clean(name) != name:
		return fmt.Errorf("input image %q: the name must stay inside the input directory (no absolute path, no ..)", name)
	case strings.HasPrefix(path.Base(name), "."):
		return fmt.Errorf("input image %q: hidden file names are refused", name)
	}
	return nil
}

// maxInputImage bounds one input image (ComfyUI's default upload limit is 100 MB).
const maxInputImage = 100 << 20

// imageBytes decodes an input image's content: base64 (standard or URL alphabet, padded or
// not, whitespace ignored, data URI prefix allowed) or an http(s) URL.
func imageBytes(ctx context.Context, hc *http.Client, img InputImage) ([]byte, error) {
	s := strings.TrimSpace(img.Image)
	if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") {
		data, err := netguard.Fetch(ctx, hc, s, maxInputImage)
		if errors.Is(err, netguard.ErrTooLarge) {
			return nil, fmt.Errorf("input image %q: larger than %d MB", img.Name, maxInputImage>>20)
		}
		if err != nil {
			return nil, fmt.Errorf("input image %q: %w", img.Name, err)
		}
		return data, nil
	}
	if strings.HasPrefix(s, "data:") {
		i := strings.Index(s, ",")
		if i < 0 || !strings.Contains(s[:i], ";base64") {
			return nil, fmt.Errorf("input image %q: a data URI must be base64 (data:<mime>;base64,...)", img.Name)
		}
		s = s[i+1:]
	}
	s = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\n' || r == '\r' || r == '\t' {
			return -1
		}
		return r
	}, s)
	if s == "" {
		return nil, fmt.Errorf("input image %q: no data", img.Name)
	}
	enc := base64.StdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	data, err := enc.WithPadding(base64.NoPadding).DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("input image %q: not base64, a data URI or an http(s) URL: %w", img.Name, err)
	}
	return data, nil
}
