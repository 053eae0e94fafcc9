package builder

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/builder/drv"
	"github.com/runpod-comfy/runpod-comfy/builder/git"
	"github.com/runpod-comfy/runpod-comfy/builder/model"
	"github.com/runpod-comfy/runpod-comfy/builder/python"
	"github.com/runpod-comfy/runpod-comfy/builder/registry"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// PlanOptions configure NewPlan.
type PlanOptions struct {
	// SkipModels leaves models out of the root (also set by the spec's options.skip_models).
	SkipModels bool
}

// Plan is the derivation graph of one locked spec.
type Plan struct {
	Spec  *specs.Spec
	Lock  *specs.Lock
	Comfy *drv.Derivation
	// Nodes are the custom nodes' sources, sorted by node name (the lock's canonical order).
	Nodes []*drv.Derivation
	// Models are the model files (filled by the model kind).
	Models []*drv.Derivation
	// Python and Venv are the interpreter identity and the venv (filled by the python kind);
	// Packages are the installed distributions the venv is composed from, in the lock's order.
	Python, Venv *drv.Derivation
	Packages     []*drv.Derivation
	// Root is the runtime root.
	Root *drv.Derivation
	// All holds every derivation once, inputs before the derivations reading them.
	All []*drv.Derivation

	byPath map[store.Path]*drv.Derivation
	byNode map[string]*drv.Derivation
}

// node returns the source derivation of the custom node called name, or nil.
func (p *Plan) node(name string) *drv.Derivation { return p.byNode[name] }

// add seals d and appends it to the graph, returning the derivation already in the graph
// under the same store path, if any (so one object is built once).
func (p *Plan) add(d *drv.Derivation) (*drv.Derivation, error) {
	if err := d.Seal(); err != nil {
		return nil, err
	}
	if prev, ok := p.byPath[d.Path]; ok {
		return prev, nil
	}
	p.byPath[d.Path] = d
	p.All = append(p.All, d)
	return d, nil
}

// NewPlan builds the derivation graph of spec locked by lock, kind by kind. It does no I/O.
// It plans from the canonical form of lock (specs.Lock.Canonicalize), so the graph and the
// runtime root depend on what the lock holds, never on the order it holds it in; spec only
// gives positions for messages and python.system_site_packages.
func NewPlan(spec *specs.Spec, lock *specs.Lock, opts PlanOptions) (*Plan, error) {
	if lock.VersionID != spec.VersionID {
		return nil, fmt.Errorf("lock is for version %q, spec is %q", lock.VersionID, spec.VersionID)
	}
	p := &Plan{Spec: spec, Lock: lock, byPath: map[store.Path]*drv.Derivation{}, byNode: map[string]*drv.Derivation{}}
	lock = lock.Clone()
	lock.Canonicalize()
	root := newRootParams(lock)
	root.SkipModels = opts.SkipModels || spec.Options.SkipModels

	// Git sources: ComfyUI and every custom node.
	if lock.Comfy.Commit == "" {
		return nil, fmt.Errorf("lock has no ComfyUI commit: resolve the spec")
	}
	cd := git.Derivation("comfyui", lock.Comfy.Repo, lock.Comfy.Commit, lock.Comfy.Submodules, lock.Comfy.NarHash)
	cd.Label, cd.Pos = "comfyui", spec.Comfy.Pos
	cd, err := p.add(cd)
	if err != nil {
		return nil, err
	}
	p.Comfy = cd
	root.Link("comfyui", cd)
	root.Manifest.Comfy = specs.ManifestComfy{Commit: lock.Comfy.Commit, StorePath: cd.Path.String(), Flags: []string{}}
	for _, n := range lock.CustomNodes {
		if err := specs.CheckNodeName(n.Name); err != nil {
			return nil, fmt.Errorf("custom node %q: %w", n.Name, err)
		}
		var d *drv.Derivation
		if r := n.Registry; r != nil {
			if !strings.HasPrefix(r.SHA256, "sha256:") || r.Version == "" {
				return nil, fmt.Errorf("custom node %q (%s): the lock pins no version and sha256: resolve the spec", n.Name, r.ID)
			}
			if err := specs.CheckChecksum(r.SHA256); err != nil {
				return nil, fmt.Errorf("custom node %q (%s): the lock's sha256: %w", n.Name, r.ID, err)
			}
			d = registry.Derivation(n.Name, *r, n.NarHash)
		} else {
			d = git.Derivation(n.Name, n.Repo, n.Commit, n.Submodules, n.NarHash)
			d.Label = fmt.Sprintf("custom node %q", n.Name)
		}
		for _, sn := range spec.CustomNodes {
			if sn.Name == n.Name {
				d.Pos = sn.Pos
			}
		}
		d, err := p.add(d)
		if err != nil {
			return nil, err
		}
		p.Nodes = append(p.Nodes, d)
		p.byNode[n.Name] = d
		root.Link("custom_nodes/"+n.Name, d)
		mn := specs.ManifestNode{Name: n.Name, Commit: n.Commit, StorePath: d.Path.String(), Writable: n.Writable}
		if r := n.Registry; r != nil {
			mn.Registry, mn.Version = r.ID, r.Version
		}
		root.Manifest.CustomNodes = append(root.Manifest.CustomNodes, mn)
	}

	// Models: one fixed object per file (shared by targets naming the same file), linked at
	// models/<target>; none with skip_models.
	root.Manifest.ModelsSkipped = root.SkipModels && len(lock.Models) > 0
	for _, m := range lock.Models {
		if root.SkipModels {
			break
		}
		sm, _ := model.SpecModel(spec, m.Target)
		d, err := model.Derivation(m, sm.Pos)
		if err != nil {
			return nil, err
		}
		if d, err = p.add(d); err != nil {
			return nil, err
		}
		if !slices.Contains(p.Models, d) {
			p.Models = append(p.Models, d)
		}
		root.Link("models/"+m.Target, d)
		root.Manifest.Models = append(root.Manifest.Models, specs.ManifestModel{
			Target: m.Target, StorePath: d.Path.String(), Checksum: m.Checksum, Size: m.Size,
		})
	}

	// Python, packages and venv: the interpreter identity, one object per locked file and
	// the venv composed from them.
	if pyd, pkgs, vd := python.PlanVenv(spec, lock.Python); vd != nil {
		if p.Python, err = p.add(pyd); err != nil {
			return nil, err
		}
		vd.Inputs = []*drv.Derivation{p.Python}
		for _, pd := range pkgs {
			pd.Inputs = []*drv.Derivation{p.Python}
			if pd, err = p.add(pd); err != nil {
				return nil, err
			}
			p.Packages = append(p.Packages, pd)
			vd.Inputs = append(vd.Inputs, pd)
		}
		if p.Venv, err = p.add(vd); err != nil {
			return nil, err
		}
		root.Link("venv", p.Venv)
		root.Manifest.Venv = p.Venv.Path.String()
	}

	rd, err := root.derivation()
	if err != nil {
		return nil, err
	}
	if rd, err = p.add(rd); err != nil {
		return nil, err
	}
	p.Root = rd
	return p, nil
}

// Node is one line of a printed plan.
type Node struct {
	Kind      string   `json:"kind"`
	Name      string   `json:"name"`
	Label     string   `json:"label"`
	StorePath string   `json:"store_path"`
	Valid     bool     `json:"valid"`
	Inputs    []string `json:"inputs,omitempty"`
	Pos       string   `json:"pos,omitempty"`
	// Registry is a registry node's "<id>@<version>".
	Registry string `json:"registry,omitempty"`
}

// Describe describes every derivation of the plan, inputs first, with whether it is valid in s.
func (p *Plan) Describe(s *store.Store) []Node {
	out := make([]Node, 0, len(p.All))
	for _, d := range p.All {
		n := Node{Kind: d.Kind, Name: d.Name, Label: d.String(), StorePath: d.Path.String(), Valid: s.Valid(d.Path), Pos: d.Pos.String()}
		if rp, ok := d.Params.(registry.Params); ok {
			n.Registry = rp.ID + "@" + rp.Version
		}
		for _, in := range d.Inputs {
			n.Inputs = append(n.Inputs, in.Path.String())
		}
		out = append(out, n)
	}
	return out
}

// Dot renders nodes as a Graphviz digraph, edges from input to reader.
func Dot(nodes []Node) string {
	var b strings.Builder
	b.WriteString("digraph plan {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n")
	for _, n := range nodes {
		style := ""
		if n.Valid {
			style = ", style=filled, fillcolor=\"#d8f0d8\""
		}
		fmt.Fprintf(&b, "  %q [label=%q%s];\n", n.StorePath, n.Kind+"\n"+n.StorePath, style)
	}
	for _, n := range nodes {
		ins := append([]string(nil), n.Inputs...)
		sort.Strings(ins)
		for _, in := range ins {
			fmt.Fprintf(&b, "  %q -> %q;\n", in, n.StorePath)
		}
	}
	b.WriteString("}\n")
	return b.String()
}
