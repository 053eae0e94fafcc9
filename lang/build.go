package lang

import (
	"fmt"
	"math/big"
	"regexp"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/runpod-comfy/runpod-comfy/specs"
)

// DefaultComfyRepo is the ComfyUI repository a spec gets when its comfy block names none.
const DefaultComfyRepo = "https://github.com/comfyanonymous/ComfyUI"

var ctyString = cty.String

// build checks a merged document against the model's rules and returns the evaluated spec;
// problems go to d (the spec is returned regardless, for the caller to discard on errors).
func build(doc *rawDoc, d *diags) *specs.Spec {
	s := &specs.Spec{SchemaVersion: specs.SchemaVersion, VersionID: doc.id, Pos: specs.Pos{File: doc.file}}
	if id, _ := declaredID(doc); id != "" && specs.CheckVersionID(id) == nil {
		s.VersionID = id // the seed tool's meaning: the file is found by name, everything else uses version_id
	}
	if a := doc.schemaVersion; a != nil {
		if n, ok := intValQuiet(a); ok {
			s.SchemaVersion = n
		}
	}
	buildComfy(doc, s, d)
	buildNodes(doc, s, d)
	buildModels(doc, s, d)
	buildPython(doc, s, d)
	buildEnv(doc, s, d)
	buildOptions(doc, s, d)
	return s
}

func buildComfy(doc *rawDoc, s *specs.Spec, d *diags) {
	b := doc.comfy
	if b == nil {
		if !doc.shapeErr {
			d.errorf(doc.fileRng, "comfy", "is missing: say which ComfyUI to use (repo and commit)")
		}
		return
	}
	c := specs.Comfy{Pos: posOf(b.def)}
	if a := b.get("repo"); a != nil {
		if v, ok := stringVal(a, d); ok {
			if err := specs.CheckGitURL(v); err != nil {
				d.errorf(a.rng, a.path, "%v", err)
			}
			c.Repo = v
		}
	} else if !b.present("repo") {
		c.Repo = DefaultComfyRepo
		d.warnf(b.def, b.path+".repo", "is not set: assumed the upstream ComfyUI repository %s", DefaultComfyRepo)
	}
	c.Ref, c.Commit = gitPin(b, d)
	if a := b.get("install_requirements"); a != nil {
		if v, ok := boolVal(a, d); ok {
			c.InstallRequirements = &v
		}
	}
	s.Comfy = c
}

// gitPin reads commit and ref of a comfy or custom node block, accepting a branch, tag or
// abbreviated commit in commit (it becomes the ref to resolve) with a warning.
func gitPin(b *rawBlock, d *diags) (ref, commit string) {
	if a := b.get("ref"); a != nil {
		if v, ok := stringVal(a, d); ok {
			if err := checkRefName(v); err != nil {
				d.errorf(a.rng, a.path, "%v", err)
			} else {
				ref = v
			}
		}
	}
	a := b.get("commit")
	if a != nil {
		v, ok := stringVal(a, d)
		if !ok {
			return ref, ""
		}
		switch {
		case specs.IsFullCommit(v):
			commit = strings.ToLower(v)
		case specs.IsAbbreviatedCommit(v):
			if ref != "" {
				d.errorf(a.rng, a.path, "%q is an abbreviated commit and ref %q is also set: write the full 40-hex commit", v, ref)
				return ref, ""
			}
			d.warnf(a.rng, a.path, "%q is an abbreviated commit: it is resolved like a ref to the full commit in the lock; write the full 40-hex commit to pin it here", v)
			ref = strings.ToLower(v)
		case checkRefName(v) == nil:
			if ref != "" && ref != v {
				d.errorf(a.rng, a.path, "%q is a branch or tag name, not a commit, and ref is %q: move it to ref or write a commit", v, ref)
				return ref, ""
			}
			d.warnf(a.rng, a.path, "%q is a branch or tag name, not a commit: taken as ref %q, resolved to a commit in the lock", v, v)
			ref = v
		default:
			d.errorf(a.rng, a.path, "%q is neither a commit (40 or 64 hex digits) nor a branch or tag name", v)
		}
	}
	if ref == "" && commit == "" && a == nil {
		d.warnf(b.def, b.path, "has no commit or ref: the repository's default branch (HEAD) is resolved and pinned in the lock")
		ref = "HEAD"
	}
	return ref, commit
}

// checkRefName applies git's rules for ref names (git check-ref-format, one level allowed).
func checkRefName(s string) error {
	bad := s == "" || s == "@" || strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") ||
		strings.HasPrefix(s, "-") || strings.HasSuffix(s, ".") || strings.HasSuffix(s, ".lock") ||
		strings.Contains(s, "..") || strings.Contains(s, "@{") || strings.Contains(s, "//") ||
		strings.ContainsAny(s, " ~^:?*[\\\t\n\r\x7f")
	for _, c := range s {
		if c < 0x20 {
			bad = true
		}
	}
	for _, el := range strings.Split(s, "/") {
		if strings.HasPrefix(el, ".") {
			bad = true
		}
	}
	if bad {
		return fmt.Errorf("%q is not a valid branch or tag name", s)
	}
	return nil
}

// legacyNodeDir reads a legacy target_dir, "$COMFY_HOME/custom_nodes/<dir>".
func legacyNodeDir(s string) (string, bool) {
	s = strings.TrimRight(s, "/")
	for _, pre := range []string{"$COMFY_HOME/custom_nodes/", "${COMFY_HOME}/custom_nodes/"} {
		if rest, ok := strings.CutPrefix(s, pre); ok && rest != "" && !strings.Contains(rest, "/") {
			return rest, true
		}
	}
	return "", false
}

func buildNodes(doc *rawDoc, s *specs.Spec, d *diags) {
	type first struct {
		path string
		pos  specs.Pos
	}
	seen := map[string]first{}
	seenID := map[string]first{}
	for _, b := range doc.nodes {
		n := specs.CustomNode{Pos: posOf(b.def)}
		nameRng := b.def
		nameSet := false
		if b.label != "" {
			n.Name, nameRng, nameSet = b.label, b.labelRng, true
		} else if a := b.get("name"); a != nil {
			if v, ok := stringVal(a, d); ok {
				n.Name, nameRng, nameSet = v, a.rng, true
			}
		}
		if a := b.get("target_dir"); a != nil {
			if v, ok := stringVal(a, d); ok {
				dir, ok := legacyNodeDir(v)
				switch {
				case !ok:
					d.errorf(a.rng, a.path, "%q is not understood: a legacy target_dir must be \"$COMFY_HOME/custom_nodes/<dir>\"; prefer name = \"<dir>\"", v)
				case nameSet && n.Name != dir:
					d.errorf(a.rng, a.path, "%q names directory %q but the node's name is %q: drop target_dir", v, dir, n.Name)
				default:
					d.warnf(a.rng, a.path, "legacy target_dir %q: taken as the node's directory name %q (write name = %q instead)", v, dir, dir)
					n.Name, nameRng, nameSet = dir, a.rng, true
				}
			}
		}
		repoA := b.get("repo")
		switch {
		case b.present("registry") && b.present("repo"):
			d.errorf(b.def, b.path, "sets both repo and registry: a custom node comes from git (repo) or from the Comfy Registry (registry), not both")
		case b.present("registry"):
			registryNode(b, &n, nameSet, &nameRng, d)
		case repoA == nil && !b.present("repo"):
			d.errorf(b.def, b.path+".repo", "is missing: a custom node needs the git URL of its repository (repo) or its Comfy Registry id (registry)")
		default:
			if v, ok := stringVal(repoA, d); ok {
				n.Repo = v
				if err := specs.CheckGitURL(v); err != nil {
					d.errorf(repoA.rng, repoA.path, "%v", err)
				} else if !nameSet {
					n.Name, nameRng = specs.NodeNameFromRepo(v), repoA.rng
				}
			}
			if a := b.get("version"); a != nil {
				d.errorf(a.rng, a.path, "applies to registry nodes only: a git node is pinned by commit or ref")
			}
			n.Ref, n.Commit = gitPin(b, d)
		}
		if a := b.get("install_requirements"); a != nil {
			if v, ok := boolVal(a, d); ok {
				n.InstallRequirements = &v
			}
		}
		if a := b.get("writable"); a != nil {
			n.Writable, _ = boolVal(a, d)
		}
		if a := b.get("submodules"); a != nil {
			n.Submodules, _ = boolVal(a, d)
		}
		if n.Name != "" || nameSet {
			if err := specs.CheckNodeName(n.Name); err != nil {
				d.errorf(nameRng, b.path, "%v", err)
			} else if f, dup := seen[n.Name]; dup {
				d.errorf(b.def, b.path, "shares the directory custom_nodes/%s with %s (%s): give one of them another name", n.Name, f.path, f.pos)
			} else {
				seen[n.Name] = first{b.path, posOf(b.def)}
			}
		}
		if n.Registry != "" {
			if f, dup := seenID[n.Registry]; dup {
				d.errorf(b.def, b.path, "installs registry node %s, as %s (%s) does: declare it once", n.Registry, f.path, f.pos)
			} else {
				seenID[n.Registry] = first{b.path, posOf(b.def)}
			}
		}
		s.CustomNodes = append(s.CustomNodes, n)
	}
}

// registryNode reads the registry and version of a Comfy Registry node into n. The id is
// written in lowercase (ids compare case-insensitively); a missing version is "latest",
// resolved once and pinned in the lock. Git's ref, commit and submodules do not apply.
func registryNode(b *rawBlock, n *specs.CustomNode, nameSet bool, nameRng *hcl.Range, d *diags) {
	a := b.get("registry")
	if a == nil {
		return // present but not evaluated: reported
	}
	v, ok := stringVal(a, d)
	if !ok {
		return
	}
	if err := specs.CheckRegistryID(v); err != nil {
		d.errorf(a.rng, a.path, "%v", err)
		return
	}
	if low := strings.ToLower(v); low != v {
		d.warnf(a.rng, a.path, "%q: registry ids compare case-insensitively: taken as %q", v, low)
		v = low
	}
	n.Registry = v
	if !nameSet {
		n.Name, *nameRng = v, a.rng
	}
	for _, git := range []string{"ref", "commit", "submodules"} {
		if g := b.get(git); g != nil {
			d.errorf(g.rng, g.path, "applies to git nodes only: a registry node is pinned by version")
		}
	}
	va := b.get("version")
	switch {
	case va == nil && !b.present("version"):
		d.warnf(a.rng, b.path, "has no version: the registry's latest version is resolved and pinned in the lock")
		n.Version = "latest"
	case va == nil:
	default:
		if ver, ok := stringVal(va, d); ok {
			if err := specs.CheckRegistryVersion(ver); err != nil {
				d.errorf(va.rng, va.path, "%v", err)
			}
			n.Version = ver
		}
	}
}

func buildModels(doc *rawDoc, s *specs.Spec, d *diags) {
	type first struct {
		path string
		pos  specs.Pos
	}
	seen := map[string]first{}
	for _, b := range doc.models {
		m := specs.Model{Pos: posOf(b.def)}
		if len(b.attrs) == 0 && len(b.failed) == 0 {
			d.errorf(b.def, b.path, "empty model object: a model needs at least source and target_subdir (or target_path)")
			continue
		}
		bad := false
		str := func(name string) (string, *rawAttr) {
			a := b.get(name)
			if a == nil {
				if b.failed[name] {
					bad = true
				}
				return "", nil
			}
			v, ok := stringVal(a, d)
			if !ok {
				bad = true
				return "", nil
			}
			return v, a
		}
		var srcA, subA, pathA, aliasA, nameA, sumA *rawAttr
		m.Source, srcA = str("source")
		m.TargetSubdir, subA = str("target_subdir")
		m.TargetPath, pathA = str("target_path")
		var alias string
		alias, aliasA = str("path")
		m.Name, nameA = str("name")
		m.Checksum, sumA = str("checksum")
		if bad {
			continue // reported; the target cannot be told
		}
		if aliasA != nil {
			// The seed tool's path: an alias of target_path (target_path wins there).
			switch {
			case pathA != nil && alias != m.TargetPath:
				d.errorf(aliasA.rng, aliasA.path, "%q differs from target_path %q: path is the seed tool's alias of target_path; keep one", alias, m.TargetPath)
				continue
			case pathA != nil:
				d.warnf(aliasA.rng, aliasA.path, "the seed tool's alias of target_path, which is also set: drop path")
			default:
				d.warnf(aliasA.rng, aliasA.path, "the seed tool's alias of target_path: taken as target_path %q (write target_path instead)", alias)
				m.TargetPath, pathA = alias, aliasA
			}
		}
		if !b.present("source") {
			d.errorf(b.def, b.path+".source", "is missing: a model needs a source (https://, hf://, gs://, file:// or a path)")
			continue
		} else if strings.TrimSpace(m.Source) == "" {
			d.errorf(srcA.rng, srcA.path, "is empty")
		} else if err := specs.CheckCivitaiSource(m.Source); err != nil {
			d.errorf(srcA.rng, srcA.path, "%v", err)
		}
		if sumA != nil {
			if algo := specs.BareChecksumAlgo(m.Checksum); algo != "" {
				d.warnf(sumA.rng, sumA.path, "%q has no algorithm: taken as %s by its length (write \"%s:<hex>\")", m.Checksum, algo, algo)
				m.Checksum = algo + ":" + m.Checksum
			}
			if err := specs.CheckChecksum(m.Checksum); err != nil {
				d.errorf(sumA.rng, sumA.path, "%v", err)
			} else {
				m.Checksum = strings.ToLower(m.Checksum)
			}
		}
		if nameA != nil && (m.Name == "" || strings.ContainsAny(m.Name, `/\`)) {
			if pathA == nil || strings.HasSuffix(m.TargetPath, "/") {
				d.errorf(nameA.rng, nameA.path, "%q must be a file name, not a path", m.Name)
				continue
			}
		}
		if nameA != nil && pathA != nil && !strings.HasSuffix(m.TargetPath, "/") && specs.TargetPathNamesFile(m.TargetPath) {
			// Beside a target_path naming the file, the seed tool used name only in its
			// messages: a label, as an HCL block label is.
			m.Name = ""
		}
		for _, a := range []*rawAttr{subA, pathA} {
			if a == nil {
				continue
			}
			v := a.val.AsString()
			if _, found := specs.CutModelsPrefix(strings.ReplaceAll(v, `\`, "/")); found {
				d.warnf(a.rng, a.path, "%q: $MODELS_DIR and $COMFY_HOME/models are taken as the runtime root's models/ directory", v)
			}
		}
		target, err := specs.ModelTarget(m)
		if err != nil {
			at := b.def
			switch {
			case pathA != nil:
				at = pathA.rng
			case subA != nil:
				at = subA.rng
			case srcA != nil:
				at = srcA.rng
			}
			d.errorf(at, b.path, "%v", err)
			continue
		}
		// Rewrite the quirks into their meaning: a clean path relative to models/.
		if pathA != nil {
			m.TargetPath, m.Name = target, ""
		} else if subA != nil {
			dir, _ := splitDir(target)
			m.TargetSubdir = dir
		}
		if f, dup := seen[target]; dup {
			d.errorf(b.def, b.path, "targets models/%s, as %s (%s) does: two models cannot share one target", target, f.path, f.pos)
			continue
		}
		clash := ""
		for other := range seen {
			if specs.TargetsConflict(other, target) && (clash == "" || other < clash) {
				clash = other
			}
		}
		if clash != "" {
			f := seen[clash]
			d.errorf(b.def, b.path, "targets models/%s, and %s (%s) targets models/%s: one would have to be a directory holding the other; move one of them", target, f.path, f.pos, clash)
			continue
		}
		seen[target] = first{b.path, posOf(b.def)}
		s.Models = append(s.Models, m)
	}
}

func splitDir(p string) (dir, file string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

func buildPython(doc *rawDoc, s *specs.Spec, d *diags) {
	b := doc.python
	if b == nil {
		return
	}
	p := &specs.Python{Pos: posOf(b.def)}
	if a := b.get("version"); a != nil {
		if v, ok := stringVal(a, d); ok {
			if err := specs.CheckPythonVersion(v); err != nil {
				d.errorf(a.rng, a.path, "%v", err)
			}
			p.Version = v
		}
	}
	lists := []struct {
		name string
		dst  *[]string
		url  bool
	}{{"packages", &p.Packages, false}, {"extra_index_urls", &p.ExtraIndexURLs, true}, {"find_links", &p.FindLinks, false}, {"constraints", &p.Constraints, false}}
	for _, l := range lists {
		a := b.get(l.name)
		if a == nil {
			continue
		}
		vs, ok := stringList(a, d)
		if !ok {
			continue
		}
		for i, v := range vs {
			switch {
			case strings.TrimSpace(v) == "":
				d.errorf(a.rng, fmt.Sprintf("%s[%d]", a.path, i), "is empty")
			case strings.ContainsAny(v, "\n\r"):
				d.errorf(a.rng, fmt.Sprintf("%s[%d]", a.path, i), "holds a line break")
			case l.url:
				if err := checkIndexURL(v); err != nil {
					d.errorf(a.rng, fmt.Sprintf("%s[%d]", a.path, i), "%v", err)
				}
			}
		}
		*l.dst = vs
	}
	if a := b.get("index_url"); a != nil {
		if v, ok := stringVal(a, d); ok {
			if err := checkIndexURL(v); err != nil {
				d.errorf(a.rng, a.path, "%v", err)
			}
			p.IndexURL = v
		}
	}
	if a := b.get("system_site_packages"); a != nil {
		p.SystemSitePackages, _ = boolVal(a, d)
	}
	s.Python = p
}

var indexURLRe = regexp.MustCompile(`^(https?|file)://[^\s]+$`)

func checkIndexURL(u string) error {
	if !indexURLRe.MatchString(u) {
		return fmt.Errorf("%q is not an http(s):// or file:// URL", u)
	}
	if i := strings.Index(u, "://"); i >= 0 {
		host := u[i+3:]
		if j := strings.IndexByte(host, '/'); j >= 0 {
			host = host[:j]
		}
		if at := strings.LastIndexByte(host, '@'); at >= 0 && strings.Contains(host[:at], ":") {
			return fmt.Errorf("index URL carries a password: remove it (pip reads credentials from its keyring or netrc) so that it never reaches the lock")
		}
	}
	return nil
}

var envNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func buildEnv(doc *rawDoc, s *specs.Spec, d *diags) {
	if len(doc.env) == 0 {
		return
	}
	s.Env = map[string]string{}
	for k, e := range doc.env {
		if !envNameRe.MatchString(k) {
			d.errorf(e.rng, e.path, "%q is not an environment variable name (letters, digits and _, not starting with a digit)", k)
			continue
		}
		if e.val.IsNull() {
			d.errorf(e.rng, e.path, "is null: leave it out instead")
			continue
		}
		if e.val.Type() != cty.String {
			d.errorf(e.rng, e.path, "must be a string, got %s", typeName(e.val.Type()))
			continue
		}
		v := e.val.AsString()
		if k == "COMFY_PYTHON" {
			d.warnf(e.rng, e.path, "%q is taken as the Python interpreter the venv is built with (the python builder reads env.COMFY_PYTHON)", v)
		}
		s.Env[k] = v
	}
}

func buildOptions(doc *rawDoc, s *specs.Spec, d *diags) {
	b := doc.options
	if b == nil {
		return
	}
	if a := b.get("offline"); a != nil {
		s.Options.Offline, _ = boolVal(a, d)
	}
	if a := b.get("skip_models"); a != nil {
		s.Options.SkipModels, _ = boolVal(a, d)
	}
	if a := b.get("substituters"); a != nil {
		if vs, ok := stringList(a, d); ok {
			s.Options.Substituters = vs
		}
	}
	if a := b.get("download_connections"); a != nil {
		if n, ok := intVal(a, d); ok {
			if n < 1 || n > specs.MaxDownloadConnections {
				d.errorf(a.rng, a.path, "must be from 1 to %d (connections one model file is downloaded over), got %d", specs.MaxDownloadConnections, n)
			} else {
				s.Options.DownloadConnections = n
			}
		}
	}
}

// Value conversions: strict, so that the JSON schema and this reader agree.

func stringVal(a *rawAttr, d *diags) (string, bool) {
	if a.val.Type() != cty.String {
		d.errorf(a.rng, a.path, "must be a string, got %s", typeName(a.val.Type()))
		return "", false
	}
	return a.val.AsString(), true
}

func boolVal(a *rawAttr, d *diags) (bool, bool) {
	if a.val.Type() != cty.Bool {
		d.errorf(a.rng, a.path, "must be true or false, got %s", typeName(a.val.Type()))
		return false, false
	}
	return a.val.True(), true
}

func intVal(a *rawAttr, d *diags) (int, bool) {
	n, ok := intValQuiet(a)
	if !ok {
		d.errorf(a.rng, a.path, "must be a whole number, got %s", typeName(a.val.Type()))
	}
	return n, ok
}

func intValQuiet(a *rawAttr) (int, bool) {
	if a.val.Type() != cty.Number {
		return 0, false
	}
	bf := a.val.AsBigFloat()
	if !bf.IsInt() {
		return 0, false
	}
	i, acc := bf.Int64()
	if acc != big.Exact || i > 1<<31 || i < -(1<<31) {
		return 0, false
	}
	return int(i), true
}

func stringList(a *rawAttr, d *diags) ([]string, bool) {
	t := a.val.Type()
	if !(t.IsTupleType() || t.IsListType() || t.IsSetType()) {
		d.errorf(a.rng, a.path, "must be a list of strings, got %s", typeName(t))
		return nil, false
	}
	out := []string{}
	i := 0
	ok := true
	for it := a.val.ElementIterator(); it.Next(); i++ {
		_, v := it.Element()
		if v.IsNull() || v.Type() != cty.String {
			d.errorf(a.rng, fmt.Sprintf("%s[%d]", a.path, i), "must be a string, got %s", typeName(v.Type()))
			ok = false
			continue
		}
		out = append(out, v.AsString())
	}
	return out, ok
}
