package lang

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/runpod-comfy/runpod-comfy/specs"
)

// Snapshot is a ComfyUI-Manager snapshot (glob/manager_core.py, get_current_snapshot): the
// JSON object Manager saves as <name>.json, and the same object under the key custom_nodes
// when it saves <name>.yaml.
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

// snapshotFields are the fields Manager writes.
var snapshotFields = map[string]bool{"comfyui": true, "git_custom_nodes": true, "cnr_custom_nodes": true, "file_custom_nodes": true, "pips": true}

// snapshotJSON returns the snapshot object of data as JSON: data itself when it is JSON, else
// the YAML document converted (Manager's YAML has the snapshot under custom_nodes; a YAML
// document holding the fields at the top is read too).
func snapshotJSON(data []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("the snapshot is empty")
	}
	if trimmed[0] == '{' {
		return trimmed, nil
	}
	var root yaml.Node
	if err := yaml.Unmarshal(trimmed, &root); err != nil {
		return nil, fmt.Errorf("neither a JSON nor a YAML snapshot: %v", err)
	}
	budget := 1 << 20
	doc, err := yamlValue(&root, &budget, 0)
	if err != nil {
		return nil, fmt.Errorf("reading the YAML snapshot: %v", err)
	}
	m, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not a ComfyUI-Manager snapshot: the YAML document is a %T, not a mapping", doc)
	}
	if inner, ok := m["custom_nodes"]; ok && len(m) == 1 {
		if m, ok = inner.(map[string]any); !ok {
			return nil, fmt.Errorf("not a ComfyUI-Manager snapshot: custom_nodes is a %T, not a mapping", inner)
		}
	}
	// Scalars YAML reads as numbers or booleans (an unquoted commit of digits) become text again.
	out, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("reading the YAML snapshot: %v", err)
	}
	return out, nil
}

// baseLayerPackages are left to the base image (torch and its CUDA stack), as ComfyUI-Manager's
// own restore does; nvidia-* is matched by prefix.
var baseLayerPackages = map[string]bool{"torch": true, "torchvision": true, "torchaudio": true, "triton": true, "xformers": true}

// yamlValue converts a YAML node to JSON-able values. Numbers stay text (an unquoted commit
// of digits is a commit, not a number); nulls and booleans keep their meaning. budget bounds
// the values made, aliases included, and depth the nesting.
func yamlValue(n *yaml.Node, budget *int, depth int) (any, error) {
	*budget--
	if *budget < 0 {
		return nil, errors.New("too many values (aliases expanding?)")
	}
	if depth > 64 {
		return nil, errors.New("nested more than 64 levels")
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return yamlValue(n.Content[0], budget, depth)
	case yaml.AliasNode:
		return yamlValue(n.Alias, budget, depth+1)
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, err := yamlValue(n.Content[i], budget, depth+1)
			if err != nil {
				return nil, err
			}
			ks, ok := k.(string)
			if !ok {
				ks = fmt.Sprint(k)
			}
			if _, dup := m[ks]; dup {
				return nil, fmt.Errorf("line %d: key %q appears twice", n.Content[i].Line, ks)
			}
			v, err := yamlValue(n.Content[i+1], budget, depth+1)
			if err != nil {
				return nil, err
			}
			m[ks] = v
		}
		return m, nil
	case yaml.SequenceNode:
		l := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := yamlValue(c, budget, depth+1)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		return l, nil
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return nil, nil
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				return nil, err
			}
			return b, nil
		}
		return n.Value, nil
	}
	return nil, fmt.Errorf("line %d: unexpected YAML node", n.Line)
}

// ImportSnapshot turns a ComfyUI-Manager snapshot (JSON, or YAML as Manager saves it) into a
// starter spec for version id: ComfyUI's commit, the enabled git custom nodes at their commits,
// the registry nodes (cnr_custom_nodes) at their versions, and the pip packages as
// python.packages except the torch family and nvidia-* (left to the base layer, as Manager's
// restore leaves them). An enabled single-file node is an error naming it: it has no source
// runpod-comfy could fetch. The notes list, one a line, what was not carried and why (disabled
// nodes, unusable URLs or ids, skipped packages). comfyRepo is the ComfyUI repository to use.
func ImportSnapshot(data []byte, id, comfyRepo string) (*specs.Spec, []string, error) {
	trimmed, err := snapshotJSON(data)
	if err != nil {
		return nil, nil, err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &raw); err != nil {
		return nil, nil, fmt.Errorf("reading snapshot: %w", err)
	}
	var notes []string
	var extra []string
	for k := range raw {
		if !snapshotFields[k] {
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
	var refused []string
	for _, f := range snap.FileCustomNodes {
		if !f.Disabled {
			refused = append(refused, f.Filename)
		}
	}
	if len(refused) > 0 {
		sort.Strings(refused)
		return nil, nil, fmt.Errorf("file node(s) %s: a single-file node has no repository or registry id to build it from: put it in a git repository (or publish it to the registry) and add it as a custom node, or remove it from the snapshot", strings.Join(refused, ", "))
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
		v := strings.TrimSpace(snap.CNRCustomNodes[k])
		rid := strings.ToLower(strings.TrimSpace(k))
		if err := specs.CheckRegistryID(rid); err != nil {
			notes = append(notes, fmt.Sprintf("registry node %s@%s: not carried: %v", k, v, err))
			continue
		}
		if err := specs.CheckRegistryVersion(v); err != nil {
			notes = append(notes, fmt.Sprintf("registry node %s@%s: not carried: %v", k, v, err))
			continue
		}
		if err := specs.CheckNodeName(rid); err != nil {
			notes = append(notes, fmt.Sprintf("registry node %s@%s: not carried: %v", k, v, err))
			continue
		}
		if other, dup := names[rid]; dup {
			notes = append(notes, fmt.Sprintf("registry node %s@%s: not carried: its directory %s is already taken by %s", k, v, rid, other))
			continue
		}
		names[rid] = "registry node " + rid
		s.CustomNodes = append(s.CustomNodes, specs.CustomNode{Name: rid, Registry: rid, Version: v})
	}
	for _, f := range snap.FileCustomNodes {
		notes = append(notes, fmt.Sprintf("file node %s (disabled): not carried: single-file nodes have no repository", f.Filename))
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

// ExportSnapshot is the ComfyUI-Manager snapshot of a resolved version: ComfyUI's commit, the
// git nodes at their commits (keyed by repository URL, none disabled), the registry nodes at
// their exact versions, and the locked Python packages as pip freeze lines. A Manager restore
// of it installs the same commits and versions; the notes say, one a line, what a snapshot
// cannot carry (a node name other than the one Manager gives it, install_requirements = false,
// models, env, python settings).
func ExportSnapshot(l *specs.Lock) (*Snapshot, []string) {
	s := &Snapshot{
		ComfyUI:         l.Comfy.Commit,
		GitCustomNodes:  map[string]SnapshotGitNode{},
		CNRCustomNodes:  map[string]string{},
		FileCustomNodes: []SnapshotFileNode{},
		Pips:            map[string]string{},
	}
	var notes []string
	if l.Comfy.Repo != "" && strings.TrimSuffix(strings.TrimSuffix(l.Comfy.Repo, "/"), ".git") != DefaultComfyRepo {
		notes = append(notes, fmt.Sprintf("comfyui: the snapshot holds the commit only; its repository %s is not carried (Manager restores nodes, not ComfyUI)", l.Comfy.Repo))
	}
	for _, n := range l.CustomNodes {
		var managerName string
		if r := n.Registry; r != nil {
			s.CNRCustomNodes[r.ID] = r.Version
			managerName = r.ID
		} else {
			s.GitCustomNodes[n.Repo] = SnapshotGitNode{Hash: n.Commit}
			managerName = specs.NodeNameFromRepo(n.Repo)
		}
		if n.Name != managerName {
			notes = append(notes, fmt.Sprintf("custom node %q: Manager installs it as custom_nodes/%s", n.Name, managerName))
		}
		if !n.InstallRequirements {
			notes = append(notes, fmt.Sprintf("custom node %q: install_requirements = false is not carried (Manager installs a node's requirements)", n.Name))
		}
		if n.Writable {
			notes = append(notes, fmt.Sprintf("custom node %q: writable is not carried (Manager's nodes are always writable)", n.Name))
		}
	}
	if len(l.Models) > 0 {
		notes = append(notes, fmt.Sprintf("models: %d model(s) are not carried (snapshots hold no models)", len(l.Models)))
	}
	if len(l.Env) > 0 {
		notes = append(notes, "env: not carried (snapshots hold no environment)")
	}
	if p := l.Python; p != nil {
		for _, pk := range p.Packages {
			s.Pips[pk.Name+"=="+pk.Version] = ""
		}
	}
	return s, notes
}

// MarshalManagerJSON is the snapshot as ComfyUI-Manager saves <name>.json: the object with
// its five fields, indented by four spaces, comfyui null when unknown.
func (s *Snapshot) MarshalManagerJSON() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "    ")
	if err := enc.Encode(s.managerValue()); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// MarshalManagerYAML is the snapshot as ComfyUI-Manager saves <name>.yaml: the object under the
// key custom_nodes, keys sorted, block style (what its restore reads with yaml.SafeLoader).
func (s *Snapshot) MarshalManagerYAML() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(map[string]any{"custom_nodes": s.managerValue()}); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// managerValue is the snapshot with Manager's spelling: maps never nil, comfyui null when
// empty.
func (s *Snapshot) managerValue() map[string]any {
	git := map[string]any{}
	for u, n := range s.GitCustomNodes {
		git[u] = map[string]any{"hash": n.Hash, "disabled": n.Disabled}
	}
	cnr := map[string]any{}
	for id, v := range s.CNRCustomNodes {
		cnr[id] = v
	}
	files := []any{}
	for _, f := range s.FileCustomNodes {
		files = append(files, map[string]any{"filename": f.Filename, "disabled": f.Disabled})
	}
	pips := map[string]any{}
	for k, v := range s.Pips {
		pips[k] = v
	}
	var comfy any
	if s.ComfyUI != "" {
		comfy = s.ComfyUI
	}
	return map[string]any{"comfyui": comfy, "git_custom_nodes": git, "cnr_custom_nodes": cnr, "file_custom_nodes": files, "pips": pips}
}
