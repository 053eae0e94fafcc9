package lang

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/specs"
)

// Snapshot is a ComfyUI-Manager snapshot (glob/manager_core.py, get_current_snapshot) in its
// JSON form.
type Snapshot struct {
	// ComfyUI is the git commit of ComfyUI's HEAD, or empty (null in the file).
	ComfyUI        string                     `json:"comfyui"`
	GitCustomNodes map[string]SnapshotGitNode `json:"git_custom_nodes"`
	// CNRCustomNodes maps Comfy Registry ids to versions.
	CNRCustomNodes  map[string]string  `json:"cnr_custom_nodes"`
	FileCustomNodes []SnapshotFileNode `json:"file_custom_nodes"`
	// Pips holds `pip freeze` lines as keys with "" values, or a name with its direct URL.
	Pips map[string]string `json:"pips"`
}

// SnapshotGitNode is one git custom node of a snapshot, keyed by its remote URL.
type SnapshotGitNode struct {
	Hash     string `json:"hash"`
	Disabled bool   `json:"disabled"`
}

// SnapshotFileNode is a single-file custom node of a snapshot.
type SnapshotFileNode struct {
	Filename string `json:"filename"`
	Disabled bool   `json:"disabled"`
}

// baseLayerPackages are left to the base image (torch and its CUDA stack), as ComfyUI-Manager's
// own restore does; nvidia-* is matched by prefix.
var baseLayerPackages = map[string]bool{"torch": true, "torchvision": true, "torchaudio": true, "triton": true, "xformers": true}

// ImportSnapshot turns a ComfyUI-Manager snapshot into a starter spec for version id: ComfyUI's
// commit, the enabled git custom nodes at their commits, and the pip packages as
// python.packages except the torch family and nvidia-* (left to the base layer). The notes
// list, one a line, what could not be carried and why (registry and file nodes, disabled
// nodes, unusable URLs, skipped packages). comfyRepo is the ComfyUI repository to use.
func ImportSnapshot(data []byte, id, comfyRepo string) (*specs.Spec, []string, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, nil, fmt.Errorf("not a JSON snapshot: save it from ComfyUI-Manager as JSON (YAML snapshots are not read)")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &raw); err != nil {
		return nil, nil, fmt.Errorf("reading snapshot: %w", err)
	}
	var notes []string
	known := map[string]bool{"comfyui": true, "git_custom_nodes": true, "cnr_custom_nodes": true, "file_custom_nodes": true, "pips": true}
	var extra []string
	for k := range raw {
		if !known[k] {
			extra = append(extra, k)
		}
	}
	if len(raw) == 0 || len(extra) == len(raw) {
		return nil, nil, fmt.Errorf("not a ComfyUI-Manager snapshot: none of comfyui, git_custom_nodes, cnr_custom_nodes, file_custom_nodes, pips")
	}
	sort.Strings(extra)
	for _, k := range extra {
		notes = append(notes, fmt.Sprintf("snapshot field %q: not carried (unknown to this importer)", k))
	}
	var snap Snapshot
	if err := json.Unmarshal(trimmed, &snap); err != nil {
		return nil, nil, fmt.Errorf("reading snapshot: %w", err)
	}
	s := &specs.Spec{SchemaVersion: specs.SchemaVersion, VersionID: id, Comfy: specs.Comfy{Repo: comfyRepo}}
	switch c := strings.TrimSpace(snap.ComfyUI); {
	case specs.IsFullCommit(c):
		s.Comfy.Commit = strings.ToLower(c)
	case c == "":
		s.Comfy.Ref = "HEAD"
		notes = append(notes, "comfyui: the snapshot has no ComfyUI commit: the default branch is used (pass --comfy-commit to pin one)")
	default:
		s.Comfy.Ref = c
		notes = append(notes, fmt.Sprintf("comfyui: %q is not a full commit: taken as a ref to resolve", c))
	}

	urls := make([]string, 0, len(snap.GitCustomNodes))
	for u := range snap.GitCustomNodes {
		urls = append(urls, u)
	}
	sort.Strings(urls)
	names := map[string]string{}
	for _, u := range urls {
		n := snap.GitCustomNodes[u]
		repo := strings.TrimSpace(u)
		if n.Disabled {
			notes = append(notes, fmt.Sprintf("git node %s: not carried: it is disabled in the snapshot", repo))
			continue
		}
		if err := specs.CheckGitURL(repo); err != nil {
			notes = append(notes, fmt.Sprintf("git node %s: not carried: %v", repo, err))
			continue
		}
		name := specs.NodeNameFromRepo(repo)
		if err := specs.CheckNodeName(name); err != nil {
			notes = append(notes, fmt.Sprintf("git node %s: not carried: %v", repo, err))
			continue
		}
		if other, dup := names[name]; dup {
			notes = append(notes, fmt.Sprintf("git node %s: not carried: its directory %s is already taken by %s", repo, name, other))
			continue
		}
		names[name] = repo
		node := specs.CustomNode{Name: name, Repo: repo}
		switch h := strings.TrimSpace(n.Hash); {
		case specs.IsFullCommit(h):
			node.Commit = strings.ToLower(h)
		case h == "":
			node.Ref = "HEAD"
			notes = append(notes, fmt.Sprintf("git node %s: no commit in the snapshot: its default branch is used", repo))
		case checkRefName(h) == nil:
			node.Ref = h
			notes = append(notes, fmt.Sprintf("git node %s: %q is not a full commit: taken as a ref to resolve", repo, h))
		default:
			notes = append(notes, fmt.Sprintf("git node %s: not carried: %q is neither a commit nor a ref", repo, h))
			continue
		}
		s.CustomNodes = append(s.CustomNodes, node)
	}

	ids := make([]string, 0, len(snap.CNRCustomNodes))
	for k := range snap.CNRCustomNodes {
		ids = append(ids, k)
	}
	sort.Strings(ids)
	for _, k := range ids {
		notes = append(notes, fmt.Sprintf("registry node %s@%s: not carried: Comfy Registry packages are not git sources; add it as a custom node with its repository and commit", k, snap.CNRCustomNodes[k]))
	}
	for _, f := range snap.FileCustomNodes {
		state := ""
		if f.Disabled {
			state = " (disabled)"
		}
		notes = append(notes, fmt.Sprintf("file node %s%s: not carried: single-file nodes have no repository; put it in a git repository and add it as a custom node", f.Filename, state))
	}

	keys := make([]string, 0, len(snap.Pips))
	for k := range snap.Pips {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var pkgs, skipped []string
	for _, k := range keys {
		v := strings.TrimSpace(snap.Pips[k])
		line := strings.TrimSpace(k)
		if v != "" {
			line = line + " @ " + v
		}
		name := pipName(k)
		switch {
		case line == "":
			continue
		case baseLayerPackages[name] || strings.HasPrefix(name, "nvidia-"):
			skipped = append(skipped, name)
		case strings.HasPrefix(line, "-e ") || strings.Contains(line, "file://") || strings.HasPrefix(line, "/"):
			notes = append(notes, fmt.Sprintf("pip %s: not carried: a local or editable install", line))
		default:
			pkgs = append(pkgs, line)
		}
	}
	if len(skipped) > 0 {
		notes = append(notes, fmt.Sprintf("pip: left to the base image (torch family and nvidia-*): %s", strings.Join(skipped, ", ")))
	}
	if len(pkgs) > 0 {
		s.Python = &specs.Python{Packages: pkgs}
	}
	return s, notes, nil
}

// pipName is the normalised project name of a requirement line ("Foo_Bar==1.0" -> "foo-bar").
func pipName(req string) string {
	req = strings.TrimSpace(req)
	end := len(req)
	for i, c := range req {
		if !(c == '-' || c == '_' || c == '.' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			end = i
			break
		}
	}
	n := strings.ToLower(req[:end])
	return strings.NewReplacer("_", "-", ".", "-").Replace(n)
}
