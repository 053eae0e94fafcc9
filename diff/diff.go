// Package diff compares two resolved versions: what changed in ComfyUI, the custom nodes, the
// Python packages and the models, and what that does to the size of the volume.
//
// Words: a Side is one version as resolved (its lock, and when it is built, its runtime root's
// closure); a Report is the comparison; "new to the store" is what building side B would add to
// a store that does not hold it yet.
package diff

import (
	"fmt"
	"sort"

	"github.com/runpod-comfy/runpod-comfy/builder/model"
	"github.com/runpod-comfy/runpod-comfy/internal/semver"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

// Side is one side of a comparison.
type Side struct {
	// Label names the side in the report: a version id or a file name.
	Label string
	Lock  *specs.Lock
	// Closure lists the store paths (base names) of the side's built runtime root and
	// everything it references; empty when the side is not built.
	Closure []string
	// SkipModels and SystemSitePackages are the spec's options.skip_models and
	// python.system_site_packages, which reach the runtime root without being in the lock;
	// false for a side given as a lock file.
	SkipModels, SystemSitePackages bool
}

// Objects tells sizes and presence of store objects; the store implements it.
type Objects interface {
	// Size returns the NAR size of a valid object, and false when the object is not in the store.
	Size(storePath string) (int64, bool)
}

// History counts commits between two commits of one repository, from a local mirror.
type History interface {
	// Distance returns how many commits lead from one commit to the other (negative when "to"
	// is older), and false when the mirror does not hold both.
	Distance(repo, from, to string) (int, bool)
}

// Options are the optional sources of detail for Compare.
type Options struct {
	Objects Objects
	History History
}

// Report is the difference between two versions. Its JSON form is stable and documented in
// docs/check-and-diff.md; lists are sorted by name or target.
type Report struct {
	A string `json:"a"`
	B string `json:"b"`

	Comfy       *CommitChange `json:"comfy,omitempty"`
	NodesAdded  []Node        `json:"nodes_added"`
	NodesRemove []Node        `json:"nodes_removed"`
	NodesMoved  []NodeChange  `json:"nodes_moved"`

	Python   *PythonChange   `json:"python,omitempty"`
	Packages []PackageChange `json:"packages"`

	Models []ModelChange `json:"models"`

	// Env are the env variables added, removed or changed (sorted by name).
	Env []EnvChange `json:"env"`
	// Settings are the other inputs of the runtime root that changed, sorted by field:
	// "custom_nodes.<name>.writable", "custom_nodes.<name>.submodules",
	// "custom_nodes.<name>.archive" (a registry version's archive published again),
	// "models.<target>.file" (the store name of the same bytes), "models.<target>.size",
	// "python.installer", "python.system_site_packages",
	// "python.site_packages.<distribution>", "options.skip_models".
	Settings []SettingChange `json:"settings"`

	Size SizeChange `json:"size"`
}

// EnvChange is one env variable added, removed or changed.
type EnvChange struct {
	Name   string `json:"name"`
	Change string `json:"change"` // added | removed | changed
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
}

// SettingChange is one other input of the runtime root that changed; From or To is empty
// when the setting is absent on that side.
type SettingChange struct {
	Field string `json:"field"`
	From  string `json:"from"`
	To    string `json:"to"`
}

// Empty reports whether the two sides are the same in every compared respect.
func (r *Report) Empty() bool {
	return r.Comfy == nil && len(r.NodesAdded) == 0 && len(r.NodesRemove) == 0 &&
		len(r.NodesMoved) == 0 && r.Python == nil && len(r.Packages) == 0 && len(r.Models) == 0 &&
		len(r.Env) == 0 && len(r.Settings) == 0
}

// CommitChange is a git source that moved. Distance is the number of commits from From to To
// (negative when To is older), set only when a mirror holds both.
type CommitChange struct {
	Repo     string `json:"repo"`
	FromRepo string `json:"from_repo,omitempty"`
	From     string `json:"from"`
	To       string `json:"to"`
	Distance *int   `json:"distance,omitempty"`
}

// Node is a custom node on one side: a git node (repo, commit) or a registry node (registry,
// version).
type Node struct {
	Name     string `json:"name"`
	Repo     string `json:"repo"`
	Commit   string `json:"commit"`
	Registry string `json:"registry,omitempty"`
	Version  string `json:"version,omitempty"`
}

// NodeChange is a custom node present on both sides at different commits, repositories,
// registry ids or versions. Registry is set when either side is a registry node; the commit
// fields then hold the git side's, if any.
type NodeChange struct {
	Name string `json:"name"`
	CommitChange
	Registry *RegistryChange `json:"registry,omitempty"`
}

// RegistryChange is a registry node's version change, e.g. 1.2.0 -> 1.3.1. From (or To) is
// empty when that side is a git node; FromID is set when the registry id changed.
type RegistryChange struct {
	ID     string `json:"id"`
	FromID string `json:"from_id,omitempty"`
	From   string `json:"from"`
	To     string `json:"to"`
	// Change is "upgraded", "downgraded" or "switched" (between git and the registry, or
	// between ids).
	Change string `json:"change"`
}

func nodeOf(n specs.NodeLock) Node {
	if r := n.Registry; r != nil {
		return Node{Name: n.Name, Registry: r.ID, Version: r.Version}
	}
	return Node{Name: n.Name, Repo: n.Repo, Commit: n.Commit}
}

// registryChange compares two pins of a node of which at least one is a registry node.
func registryChange(a, b specs.NodeLock) *RegistryChange {
	c := &RegistryChange{Change: "switched"}
	if ra := a.Registry; ra != nil {
		c.ID, c.From = ra.ID, ra.Version
	}
	if rb := b.Registry; rb != nil {
		if c.ID != "" && c.ID != rb.ID {
			c.FromID = c.ID
		}
		c.ID, c.To = rb.ID, rb.Version
	}
	if a.Registry != nil && b.Registry != nil && c.FromID == "" {
		va, ea := semver.Parse(c.From)
		vb, eb := semver.Parse(c.To)
		c.Change = "upgraded"
		if ea == nil && eb == nil && semver.Compare(vb, va) < 0 {
			c.Change = "downgraded"
		}
	}
	return c
}

// PythonChange is a change of interpreter.
type PythonChange struct {
	From specs.PythonIdentity `json:"from"`
	To   specs.PythonIdentity `json:"to"`
}

// PackageChange is one Python package added, removed, upgraded, downgraded or rebuilt (same
// version, another file).
type PackageChange struct {
	Name   string `json:"name"`
	Change string `json:"change"` // added | removed | upgraded | downgraded | changed
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
}

// ModelChange is one model added, removed or changed (other bytes at the same target).
type ModelChange struct {
	Target       string `json:"target"`
	Change       string `json:"change"` // added | removed | changed
	FromChecksum string `json:"from_checksum,omitempty"`
	ToChecksum   string `json:"to_checksum,omitempty"`
	FromSize     int64  `json:"from_size,omitempty"`
	ToSize       int64  `json:"to_size,omitempty"`
}

// SizeChange compares the total size of the two versions and says how much of B the store
// does not hold yet. Sizes are in bytes; Known is false when some objects' sizes are unknown
// (not built, no size in the lock), so the totals are lower bounds.
type SizeChange struct {
	TotalA     int64 `json:"total_a"`
	TotalB     int64 `json:"total_b"`
	Delta      int64 `json:"delta"`
	NewToStore int64 `json:"new_to_store"`
	Known      bool  `json:"known"`
}

// Compare returns what changed from a to b: every input of the runtime root (a report is
// Empty only when the two sides build the same root, version id aside).
func Compare(a, b Side, opts Options) *Report {
	r := &Report{A: a.Label, B: b.Label, NodesAdded: []Node{}, NodesRemove: []Node{},
		NodesMoved: []NodeChange{}, Packages: []PackageChange{}, Models: []ModelChange{},
		Env: []EnvChange{}, Settings: []SettingChange{}}
	la, lb := a.Lock, b.Lock
	if la.Comfy.Commit != lb.Comfy.Commit || la.Comfy.Repo != lb.Comfy.Repo {
		r.Comfy = commitChange(la.Comfy, lb.Comfy, opts.History)
	}
	compareNodes(r, la, lb, opts.History)
	comparePython(r, la, lb)
	compareModels(r, la, lb)
	compareEnv(r, la.Env, lb.Env)
	compareSettings(r, a, b)
	r.Size = compareSize(a, b, opts.Objects)
	return r
}

func compareEnv(r *Report, a, b map[string]string) {
	for k, v := range b {
		old, ok := a[k]
		switch {
		case !ok:
			r.Env = append(r.Env, EnvChange{Name: k, Change: "added", To: v})
		case old != v:
			r.Env = append(r.Env, EnvChange{Name: k, Change: "changed", From: old, To: v})
		}
	}
	for k, v := range a {
		if _, ok := b[k]; !ok {
			r.Env = append(r.Env, EnvChange{Name: k, Change: "removed", From: v})
		}
	}
	sort.Slice(r.Env, func(i, j int) bool { return r.Env[i].Name < r.Env[j].Name })
}

// compareSettings reports the inputs of the runtime root that the sections above do not:
// node flags, a model's store name and size, the installer and the system site-packages,
// skip_models.
func compareSettings(r *Report, a, b Side) {
	set := func(field string, from, to any) {
		f, t := fmt.Sprint(from), fmt.Sprint(to)
		if f != t {
			r.Settings = append(r.Settings, SettingChange{Field: field, From: f, To: t})
		}
	}
	la, lb := a.Lock, b.Lock
	an := map[string]specs.NodeLock{}
	for _, n := range la.CustomNodes {
		an[n.Name] = n
	}
	for _, n := range lb.CustomNodes {
		if o, ok := an[n.Name]; ok {
			set("custom_nodes."+n.Name+".writable", o.Writable, n.Writable)
			set("custom_nodes."+n.Name+".submodules", o.Submodules, n.Submodules)
			if o.Registry != nil && n.Registry != nil && o.Pin() == n.Pin() {
				// The same version published again with other bytes.
				set("custom_nodes."+n.Name+".archive", o.Registry.SHA256, n.Registry.SHA256)
			}
		}
	}
	am := map[string]specs.ModelLock{}
	for _, m := range la.Models {
		am[m.Target] = m
	}
	for _, m := range lb.Models {
		if o, ok := am[m.Target]; ok && o.Checksum == m.Checksum {
			set("models."+m.Target+".file", model.ObjectName(o), model.ObjectName(m))
			set("models."+m.Target+".size", o.Size, m.Size)
		}
	}
	pa, pb := la.Python, lb.Python
	if pa != nil && pb != nil {
		set("python.installer", pa.Installer, pb.Installer)
	}
	set("python.system_site_packages", a.SystemSitePackages && pa != nil, b.SystemSitePackages && pb != nil)
	if a.SystemSitePackages && b.SystemSitePackages && pa != nil && pb != nil {
		sa, sb := map[string]string{}, map[string]string{}
		for _, d := range pa.SystemSitePackages {
			sa[normName(d.Name)] = d.Version
		}
		for _, d := range pb.SystemSitePackages {
			sb[normName(d.Name)] = d.Version
		}
		for k, v := range sb {
			set("python.site_packages."+k, sa[k], v)
		}
		for k, v := range sa {
			if _, ok := sb[k]; !ok {
				set("python.site_packages."+k, v, "")
			}
		}
	}
	set("options.skip_models", a.SkipModels && len(la.Models) > 0, b.SkipModels && len(lb.Models) > 0)
	sort.Slice(r.Settings, func(i, j int) bool { return r.Settings[i].Field < r.Settings[j].Field })
}

func commitChange(a, b specs.GitLock, h History) *CommitChange {
	c := &CommitChange{Repo: b.Repo, From: a.Commit, To: b.Commit}
	if a.Repo != b.Repo {
		c.FromRepo = a.Repo
	} else if h != nil {
		if d, ok := h.Distance(b.Repo, a.Commit, b.Commit); ok {
			c.Distance = &d
		}
	}
	return c
}

func compareNodes(r *Report, la, lb *specs.Lock, h History) {
	am := map[string]specs.NodeLock{}
	for _, n := range la.CustomNodes {
		am[n.Name] = n
	}
	bm := map[string]specs.NodeLock{}
	for _, n := range lb.CustomNodes {
		bm[n.Name] = n
		old, ok := am[n.Name]
		switch {
		case !ok:
			r.NodesAdded = append(r.NodesAdded, nodeOf(n))
		case old.Registry != nil || n.Registry != nil:
			if old.Pin() == n.Pin() && (old.Registry == nil) == (n.Registry == nil) {
				continue
			}
			ch := NodeChange{Name: n.Name, Registry: registryChange(old, n)}
			ch.CommitChange = CommitChange{Repo: n.Repo, From: old.Commit, To: n.Commit}
			if old.Repo != n.Repo {
				ch.FromRepo = old.Repo
			}
			r.NodesMoved = append(r.NodesMoved, ch)
		case old.Commit != n.Commit || old.Repo != n.Repo:
			r.NodesMoved = append(r.NodesMoved, NodeChange{Name: n.Name, CommitChange: *commitChange(old.GitLock, n.GitLock, h)})
		}
	}
	for _, n := range la.CustomNodes {
		if _, ok := bm[n.Name]; !ok {
			r.NodesRemove = append(r.NodesRemove, nodeOf(n))
		}
	}
	sort.Slice(r.NodesAdded, func(i, j int) bool { return r.NodesAdded[i].Name < r.NodesAdded[j].Name })
	sort.Slice(r.NodesRemove, func(i, j int) bool { return r.NodesRemove[i].Name < r.NodesRemove[j].Name })
	sort.Slice(r.NodesMoved, func(i, j int) bool { return r.NodesMoved[i].Name < r.NodesMoved[j].Name })
}

func comparePython(r *Report, la, lb *specs.Lock) {
	var pa, pb []specs.PackageLock
	if la.Python != nil {
		pa = la.Python.Packages
	}
	if lb.Python != nil {
		pb = lb.Python.Packages
	}
	if la.Python != nil && lb.Python != nil && la.Python.Interpreter != lb.Python.Interpreter {
		r.Python = &PythonChange{From: la.Python.Interpreter, To: lb.Python.Interpreter}
	}
	am := map[string]specs.PackageLock{}
	for _, p := range pa {
		am[normName(p.Name)] = p
	}
	seen := map[string]bool{}
	for _, p := range pb {
		k := normName(p.Name)
		seen[k] = true
		old, ok := am[k]
		switch {
		case !ok:
			r.Packages = append(r.Packages, PackageChange{Name: p.Name, Change: "added", To: p.Version})
		case old.Version != p.Version:
			ch := "upgraded"
			if compareVersions(p.Version, old.Version) < 0 {
				ch = "downgraded"
			}
			r.Packages = append(r.Packages, PackageChange{Name: p.Name, Change: ch, From: old.Version, To: p.Version})
		case old.SHA256 != p.SHA256 || old.Filename != p.Filename:
			r.Packages = append(r.Packages, PackageChange{Name: p.Name, Change: "changed", From: old.Version, To: p.Version})
		}
	}
	for _, p := range pa {
		if !seen[normName(p.Name)] {
			r.Packages = append(r.Packages, PackageChange{Name: p.Name, Change: "removed", From: p.Version})
		}
	}
	sort.Slice(r.Packages, func(i, j int) bool { return normName(r.Packages[i].Name) < normName(r.Packages[j].Name) })
}

// normName is the PEP 503 normalised project name.
func normName(s string) string {
	out := make([]byte, 0, len(s))
	dash := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '-' || c == '_' || c == '.' {
			if !dash {
				out = append(out, '-')
			}
			dash = true
			continue
		}
		dash = false
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out = append(out, c)
	}
	return string(out)
}

func compareModels(r *Report, la, lb *specs.Lock) {
	am := map[string]specs.ModelLock{}
	for _, m := range la.Models {
		am[m.Target] = m
	}
	seen := map[string]bool{}
	for _, m := range lb.Models {
		seen[m.Target] = true
		old, ok := am[m.Target]
		switch {
		case !ok:
			r.Models = append(r.Models, ModelChange{Target: m.Target, Change: "added", ToChecksum: m.Checksum, ToSize: m.Size})
		case old.Checksum != m.Checksum:
			r.Models = append(r.Models, ModelChange{Target: m.Target, Change: "changed",
				FromChecksum: old.Checksum, ToChecksum: m.Checksum, FromSize: old.Size, ToSize: m.Size})
		}
	}
	for _, m := range la.Models {
		if !seen[m.Target] {
			r.Models = append(r.Models, ModelChange{Target: m.Target, Change: "removed", FromChecksum: m.Checksum, FromSize: m.Size})
		}
	}
	sort.Slice(r.Models, func(i, j int) bool { return r.Models[i].Target < r.Models[j].Target })
}

// objectsOf lists a side's store objects with the sizes the lock knows: its closure when built,
// else the store paths its lock names.
func objectsOf(s Side) map[string]int64 {
	objs := map[string]int64{}
	for _, p := range s.Closure {
		objs[p] = -1
	}
	add := func(p string, size int64) {
		if p == "" {
			return
		}
		if old, ok := objs[p]; !ok || old < 0 {
			objs[p] = size
		}
	}
	add(s.Lock.Comfy.StorePath, -1)
	for _, n := range s.Lock.CustomNodes {
		add(n.StorePath, -1)
	}
	for _, m := range s.Lock.Models {
		size := m.Size
		if size == 0 {
			size = -1
		}
		add(m.StorePath, size)
	}
	return objs
}

func compareSize(a, b Side, o Objects) SizeChange {
	sc := SizeChange{Known: true}
	total := func(s Side, countNew bool) int64 {
		var t int64
		for p, size := range objectsOf(s) {
			n, ok := int64(0), false
			if o != nil {
				n, ok = o.Size(p)
			}
			if !ok {
				if countNew {
					if size >= 0 {
						sc.NewToStore += size
					} else {
						sc.Known = false
					}
				}
				if size < 0 {
					sc.Known = false
					continue
				}
				n = size
			}
			t += n
		}
		return t
	}
	sc.TotalA = total(a, false)
	sc.TotalB = total(b, true)
	sc.Delta = sc.TotalB - sc.TotalA
	return sc
}
