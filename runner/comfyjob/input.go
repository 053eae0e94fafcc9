package comfyjob

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/internal/netguard"
)

// Input is a job's input for the ComfyUI handler: runpod-comfy's own fields and
// worker-comfyui's (workflow, images, comfy_org_api_key), which work unchanged.
type Input struct {
	// VersionID names the version to run (ROOT/builds/comfy-<id>); empty means the worker's
	// default (COMFY_VERSION_NAME or --version-id).
	VersionID string `json:"version_id,omitempty"`
	// Workflow is the API-format workflow (node id -> {class_type, inputs}); in the job it may
	// also be a JSON string holding it.
	Workflow json.RawMessage `json:"workflow,omitempty"`
	// WorkflowURL is fetched when Workflow is absent.
	WorkflowURL string `json:"workflow_url,omitempty"`
	// Images are worker-comfyui's input images: name and base64, data URI or http(s) URL.
	Images []InputImage `json:"images,omitempty"`
	// InputImages maps an input image name to its URL (or base64, or data URI).
	InputImages map[string]string `json:"input_images,omitempty"`
	// OutputMode is base64, gcs or s3; empty means the worker's default (OUTPUT_MODE, else s3
	// when the worker has BUCKET_ENDPOINT_URL, else base64).
	OutputMode string `json:"output_mode,omitempty"`
	// GCSBucket and GCSPrefix override the worker's GCS bucket and object prefix.
	GCSBucket string `json:"gcs_bucket,omitempty"`
	GCSPrefix string `json:"gcs_prefix,omitempty"`
	// TimeoutS is the job's deadline in seconds; ComfyUI is interrupted when it passes.
	TimeoutS float64 `json:"timeout_s,omitempty"`
	// ComfyOrgAPIKey is sent to ComfyUI as extra_data.api_key_comfy_org (API nodes).
	ComfyOrgAPIKey string `json:"comfy_org_api_key,omitempty"`
	// ResultFormat "seed" adds the seed tool's output fields (ResultSeed); empty means the
	// worker's default (RUNPOD_COMFY_RESULT_FORMAT).
	ResultFormat string `json:"result_format,omitempty"`
}

// Result formats: ours alone, or ours with the seed tool's fields beside it.
const (
	ResultDefault = "runpod-comfy"
	ResultSeed    = "seed"
)

// InputImage is one input image of a job.
type InputImage struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}

// InputError is a job input that cannot be used; Field names the input field.
type InputError struct {
	Field string
	Err   error
}

func (e *InputError) Error() string {
	if e.Field == "" {
		return "invalid input: " + e.Err.Error()
	}
	return fmt.Sprintf("invalid input: %s: %v", e.Field, e.Err)
}

func (e *InputError) Unwrap() error { return e.Err }

// knownFields are the input fields ParseInput reads; others are ignored as worker-comfyui
// ignores them.
var knownFields = map[string]bool{
	"version_id": true, "workflow": true, "workflow_url": true, "images": true, "input_images": true,
	"output_mode": true, "gcs_bucket": true, "gcs_prefix": true, "timeout_s": true, "comfy_org_api_key": true,
	"result_format": true, "models_dir": true,
}

// ParseInput decodes a job's input (an object, or a JSON string holding one), checks every
// field and returns it with the workflow as a JSON object (not yet fetched when it comes from
// workflow_url). Unknown fields are returned as warnings.
func ParseInput(raw json.RawMessage) (*Input, []string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, nil, &InputError{Err: fmt.Errorf("input is a string that is not JSON: %w", err)}
		}
		raw = bytes.TrimSpace([]byte(s))
	}
	if len(raw) == 0 || raw[0] != '{' {
		return nil, nil, &InputError{Err: errors.New("input must be a JSON object (or a JSON string holding one)")}
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, nil, &InputError{Err: err}
	}
	in := &Input{}
	var warnings []string
	var unknown []string
	for k := range fields {
		if !knownFields[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		warnings = append(warnings, fmt.Sprintf("input field %q is not used", k))
	}
	str := func(name string, dst *string) error {
		v, ok := fields[name]
		if !ok || string(v) == "null" {
			return nil
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return &InputError{Field: name, Err: errors.New("must be a string")}
		}
		return nil
	}
	for name, dst := range map[string]*string{
		"version_id": &in.VersionID, "workflow_url": &in.WorkflowURL, "output_mode": &in.OutputMode,
		"gcs_bucket": &in.GCSBucket, "gcs_prefix": &in.GCSPrefix, "comfy_org_api_key": &in.ComfyOrgAPIKey,
		"result_format": &in.ResultFormat,
	} {
		if err := str(name, dst); err != nil {
			return nil, nil, err
		}
	}
	switch in.ResultFormat {
	case "", ResultDefault, ResultSeed:
	default:
		return nil, nil, &InputError{Field: "result_format", Err: fmt.Errorf("%q is not %q or %q", in.ResultFormat, ResultDefault, ResultSeed)}
	}
	if v, ok := fields["models_dir"]; ok && string(v) != "null" {
		// The seed tool pointed ComfyUI at another models directory per job. Here a version's
		// models are fixed by its spec and lock: a job cannot change them.
		return nil, nil, &InputError{Field: "models_dir", Err: errors.New("is not used by runpod-comfy: a version's models are fixed by its spec and lock and linked into ROOT/builds/comfy-<id>/models; remove models_dir from the job (to reuse the files of a models directory, set MODELS_DIR when building the version: they are adopted into the store, see docs/migrating.md)")}
	}
	if v, ok := fields["timeout_s"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &in.TimeoutS); err != nil || in.TimeoutS < 0 {
			return nil, nil, &InputError{Field: "timeout_s", Err: errors.New("must be a number of seconds >= 0")}
		}
	}
	if in.OutputMode != "" {
		if _, err := outputKind(in.OutputMode); err != nil {
			return nil, nil, &InputError{Field: "output_mode", Err: err}
		}
	}
	if v, ok := fields["workflow"]; ok && string(v) != "null" {
		wf, err := decodeWorkflow(v)
		if err != nil {
			return nil, nil, &InputError{Field: "workflow", Err: err}
		}
		in.Workflow = wf
	}
	if in.Workflow == nil && in.WorkflowURL == "" {
		return nil, nil, &InputError{Field: "workflow", Err: errors.New("missing: give workflow (API format, from Workflow > Export (API)) or workflow_url")}
	}
	if in.WorkflowURL != "" && !strings.HasPrefix(in.WorkflowURL, "http://") && !strings.HasPrefix(in.WorkflowURL, "https://") {
		return nil, nil, &InputError{Field: "workflow_url", Err: fmt.Errorf("%q is not an http(s) URL", in.WorkflowURL)}
	}
	if v, ok := fields["images"]; ok && string(v) != "null" {
		var imgs []map[string]json.RawMessage
		if err := json.Unmarshal(v, &imgs); err != nil {
			return nil, nil, &InputError{Field: "images", Err: errors.New("must be a list of {name, image}")}
		}
		for i, m := range imgs {
			var img InputImage
			json.Unmarshal(m["name"], &img.Name)
			json.Unmarshal(m["image"], &img.Image)
			if img.Name == "" || img.Image == "" {
				return nil, nil, &InputError{Field: fmt.Sprintf("images[%d]", i), Err: errors.New("needs a string name and image (base64, data URI or URL)")}
			}
			in.Images = append(in.Images, img)
		}
	}
	if v, ok := fields["input_images"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &in.InputImages); err != nil {
			return nil, nil, &InputError{Field: "input_images", Err: errors.New("must be an object {name: url}")}
		}
		for name, u := range in.InputImages {
			if name == "" || u == "" {
				return nil, nil, &InputError{Field: "input_images", Err: fmt.Errorf("entry %q needs a name and a URL", name)}
			}
		}
	}
	for _, img := range in.allImages() {
		if strings.Contains(img.Name, "/") || strings.Contains(img.Name, `\`) || img.Name == "." || img.Name == ".." {
			return nil, nil, &InputError{Field: "images", Err: fmt.Errorf("image name %q must be a plain file name", img.Name)}
		}
	}
	return in, warnings, nil
}

// allImages returns images and input_images together, input_images sorted by name.
func (in *Input) allImages() []InputImage {
	out := append([]InputImage(nil), in.Images...)
	names := make([]string, 0, len(in.InputImages))
	for n := range in.InputImages {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out, InputImage{Name: n, Image: in.InputImages[n]})
	}
	return out
}

// decodeWorkflow accepts a workflow object or a JSON string holding one and checks that it
// is in API format.
func decodeWorkflow(v json.RawMessage) (json.RawMessage, error) {
	v = bytes.TrimSpace(v)
	if len(v) > 0 && v[0] == '"' {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			// Not err: a syntax error quotes the input (a fetched body).
			return nil, errors.New("must be a JSON object in API format (or a JSON string holding one)")
		}
		v = bytes.TrimSpace([]byte(s))
	}
	var nodes map[string]json.RawMessage
	if err := json.Unmarshal(v, &nodes); err != nil {
		return nil, errors.New("must be a JSON object in API format (or a JSON string holding one)")
	}
	if _, ok := nodes["nodes"]; ok {
		if _, ok := nodes["links"]; ok {
			return nil, errors.New("this is a UI-format workflow; export it with Workflow > Export (API) in ComfyUI")
		}
	}
	if len(nodes) == 0 {
		return nil, errors.New("has no nodes")
	}
	return v, nil
}

// fetchWorkflow downloads workflow_url (at most 20 MB) and checks it.
func fetchWorkflow(ctx context.Context, hc *http.Client, u string) (json.RawMessage, error) {
	body, err := netguard.Fetch(ctx, hc, u, 20<<20)
	if errors.Is(err, netguard.ErrTooLarge) {
		return nil, &InputError{Field: "workflow_url", Err: errors.New("workflow is larger than 20 MB")}
	}
	if err != nil {
		return nil, &InputError{Field: "workflow_url", Err: err}
	}
	wf, err := decodeWorkflow(body)
	if err != nil {
		return nil, &InputError{Field: "workflow_url", Err: err}
	}
	return wf, nil
}
