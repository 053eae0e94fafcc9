package lang

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/runpod-comfy/runpod-comfy/specs"
)

// Options tune how a spec is read.
type Options struct {
	// Vars override the defaults of HCL variable blocks (--var name=value). A name that no
	// file of the spec declares is an error.
	Vars map[string]string
	// VersionsDir is where `extends = "<base id>"` finds its base; empty means the directory
	// of the file being read.
	VersionsDir string
}

// ErrNotFound is returned (wrapped) by LoadVersion when the versions directory holds no spec of
// that id.
var ErrNotFound = errors.New("no such version")

// FindVersion returns the spec file of version id in versionsDir: <id>.json or <id>.hcl. Both
// present is an error, as is neither (wrapping ErrNotFound).
func FindVersion(versionsDir, id string) (string, error) {
	if err := specs.CheckVersionID(id); err != nil {
		return "", err
	}
	var found []string
	for _, ext := range []string{".json", ".hcl"} {
		p := filepath.Join(versionsDir, id+ext)
		if _, err := os.Stat(p); err == nil {
			found = append(found, p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("looking for version %q: %w", id, err)
		}
	}
	switch len(found) {
	case 0:
		// The seed tool's specs may declare a version_id other than their file name: find
		// the one file declaring it.
		list, err := claimants(versionsDir, id)
		if err != nil {
			return "", fmt.Errorf("looking for version %q: %w", id, err)
		}
		switch len(list) {
		case 0:
			return "", fmt.Errorf("%w %q in %s (looked for %s.json and %s.hcl, and for a spec declaring version_id %q)", ErrNotFound, id, versionsDir, id, id, id)
		case 1:
			return list[0], nil
		default:
			return "", &SpecError{Diags: Diagnostics{{Severity: Error, Pos: specs.Pos{File: list[1]},
				Message: fmt.Sprintf("version %q is declared by two files, %s and %s: change the version_id of one", id, filepath.Base(list[0]), filepath.Base(list[1]))}}}
		}
	case 1:
		return found[0], nil
	default:
		return "", &SpecError{Diags: Diagnostics{{Severity: Error, Pos: specs.Pos{File: found[1]},
			Message: fmt.Sprintf("version %q is declared twice, in %s and %s: keep one", id, filepath.Base(found[0]), filepath.Base(found[1]))}}}
	}
}

// LoadVersion reads version id from versionsDir (<id>.json or <id>.hcl) and evaluates it. The
// diagnostics hold every warning (accepted quirks) and error; when there are errors the spec is
// nil and the error is a *SpecError listing them.
func LoadVersion(ctx context.Context, versionsDir, id string, opts Options) (*specs.Spec, Diagnostics, error) {
	path, err := FindVersion(versionsDir, id)
	if err != nil {
		var se *SpecError
		if errors.As(err, &se) {
			return nil, se.Diags, err
		}
		return nil, nil, err
	}
	if opts.VersionsDir == "" {
		opts.VersionsDir = versionsDir
	}
	return LoadFile(ctx, path, opts)
}

// LoadFile reads the spec file at path (.json or .hcl) and evaluates it, as LoadVersion.
func LoadFile(ctx context.Context, path string, opts Options) (*specs.Spec, Diagnostics, error) {
	src, err := readSpecFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading spec: %w", err)
	}
	return load(ctx, path, src, opts)
}

// LoadBytes evaluates a spec given as bytes; path names it in diagnostics, gives its version
// id and, by its suffix, its language.
func LoadBytes(ctx context.Context, path string, src []byte, opts Options) (*specs.Spec, Diagnostics, error) {
	return load(ctx, path, src, opts)
}

func load(ctx context.Context, path string, src []byte, opts Options) (*specs.Spec, Diagnostics, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	l := &loader{ctx: ctx, parser: hclparse.NewParser(), opts: opts, used: map[string]bool{}, d: &diags{}}
	doc := l.chain(path, src, nil)
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	var names []string
	for k := range opts.Vars {
		if !l.used[k] {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		l.d.list = append(l.d.list, Diagnostic{Severity: Error, Pos: specs.Pos{File: path}, Field: "--var " + k,
			Message: fmt.Sprintf("--var %s: no variable %q is declared by this spec", k, k)})
	}
	var spec *specs.Spec
	if doc != nil {
		spec = build(doc, l.d)
		if !l.d.list.HasErrors() {
			dir := opts.VersionsDir
			if dir == "" {
				dir = filepath.Dir(path)
			}
			checkClaim(doc, spec.VersionID, dir, l.d)
		}
	}
	l.d.list.sort()
	if l.d.list.HasErrors() || spec == nil {
		errs := l.d.list.Errors()
		if len(errs) == 0 {
			errs = Diagnostics{{Severity: Error, Pos: specs.Pos{File: path}, Message: "spec could not be read"}}
		}
		return nil, l.d.list, &SpecError{Diags: errs}
	}
	return spec, l.d.list, nil
}

type loader struct {
	ctx    context.Context
	parser *hclparse.Parser
	opts   Options
	used   map[string]bool
	d      *diags
}

// chain reads path and, through extends, its bases, and returns the merged document. stack
// holds the version ids being read, to catch cycles.
func (l *loader) chain(path string, src []byte, stack []string) *rawDoc {
	doc := readFile(l.parser, path, src, l.opts.Vars, l.used, l.d)
	if doc == nil {
		return nil
	}
	checkDoc(doc, l.d)
	if doc.extends == nil {
		return doc
	}
	ext := doc.extends
	baseID, ok := stringVal(ext, l.d)
	if !ok {
		return doc
	}
	stack = append(stack, doc.id)
	for i, s := range stack {
		if s == baseID {
			cycle := append(append([]string{}, stack[i:]...), baseID)
			l.d.errorf(ext.rng, "extends", "%q makes a cycle: %s", baseID, strings.Join(cycle, " -> "))
			return doc
		}
	}
	dir := l.opts.VersionsDir
	if dir == "" {
		dir = filepath.Dir(path)
	}
	basePath, err := FindVersion(dir, baseID)
	if err != nil {
		l.d.errorf(ext.rng, "extends", "%v", err)
		return doc
	}
	baseSrc, err := readSpecFile(basePath)
	if err != nil {
		l.d.errorf(ext.rng, "extends", "reading base: %v", err)
		return doc
	}
	base := l.chain(basePath, baseSrc, stack)
	if base == nil {
		l.d.errorf(ext.rng, "extends", "base version %q could not be read (see its errors)", baseID)
		return doc
	}
	return merge(base, doc)
}

// checkDoc checks what belongs to one file rather than to the merged spec: schema_version and
// version_id.
func checkDoc(doc *rawDoc, d *diags) {
	if a := doc.schemaVersion; a != nil {
		if n, ok := intVal(a, d); ok && n != specs.SchemaVersion {
			d.errorf(a.rng, "schema_version", "is %d, but runpod-comfy reads schema_version %d only", n, specs.SchemaVersion)
		}
	} else if !doc.isHCL {
		d.errorf(doc.fileRng, "schema_version", "is missing: add \"schema_version\": %d", specs.SchemaVersion)
	}
	checkSeedID(doc, d)
	if a := doc.versionID; a != nil {
		if id, ok := stringVal(a, d); ok && id != doc.id {
			if err := specs.CheckVersionID(id); err != nil {
				d.errorf(a.rng, a.path, "%v", err)
			} else {
				d.warnf(a.rng, a.path, "is %q but the file is named %s: the version is %q (its lock, builds/comfy-%s), found by either name as the seed tool did; rename the file to %s%s to silence this",
					id, filepath.Base(doc.file), id, id, id, filepath.Ext(doc.file))
			}
		}
	} else if !doc.isHCL {
		d.errorf(doc.fileRng, "version_id", "is missing: add \"version_id\": %q", doc.id)
	}
	if err := specs.CheckVersionID(doc.id); err != nil {
		d.errorf(doc.fileRng, "", "file name: %v", err)
	}
}

// merge applies doc over base (extends): comfy, python and options attribute by attribute,
// custom nodes by name (attribute by attribute), models by target, env key by key. The
// schema_version and version_id are the child's own.
func merge(base, doc *rawDoc) *rawDoc {
	out := *doc
	out.comfy = mergeBlock(base.comfy, doc.comfy)
	out.python = mergeBlock(base.python, doc.python)
	out.options = mergeBlock(base.options, doc.options)
	out.env = map[string]*envEntry{}
	for k, v := range base.env {
		out.env[k] = v
	}
	for k, v := range doc.env {
		out.env[k] = v
	}
	out.nodes = nil
	index := map[string]int{}
	for _, n := range base.nodes {
		if k := nodeKey(n); k != "" {
			index[k] = len(out.nodes)
		}
		out.nodes = append(out.nodes, n)
	}
	for _, n := range doc.nodes {
		if i, ok := index[nodeKey(n)]; ok && nodeKey(n) != "" {
			out.nodes[i] = mergeBlock(out.nodes[i], n)
			continue
		}
		out.nodes = append(out.nodes, n)
	}
	out.models = nil
	mindex := map[string]int{}
	for _, m := range base.models {
		if k := modelKey(m); k != "" {
			mindex[k] = len(out.models)
		}
		out.models = append(out.models, m)
	}
	for _, m := range doc.models {
		if i, ok := mindex[modelKey(m)]; ok && modelKey(m) != "" {
			out.models[i] = m
			continue
		}
		out.models = append(out.models, m)
	}
	return &out
}

func mergeBlock(base, over *rawBlock) *rawBlock {
	switch {
	case base == nil:
		return over
	case over == nil:
		return base
	}
	out := *over
	out.attrs = map[string]*rawAttr{}
	for k, v := range base.attrs {
		out.attrs[k] = v
	}
	for k, v := range over.attrs {
		out.attrs[k] = v
	}
	return &out
}

// nodeKey is the directory name a raw node will get, for merging; "" when it cannot be told.
func nodeKey(b *rawBlock) string {
	if b.label != "" {
		return b.label
	}
	if s := looseString(b.get("name")); s != "" {
		return s
	}
	if s := looseString(b.get("target_dir")); s != "" {
		if dir, ok := legacyNodeDir(s); ok {
			return dir
		}
	}
	return specs.NodeNameFromRepo(looseString(b.get("repo")))
}

// modelKey is the target a raw model will get, for merging; "" when it cannot be told.
func modelKey(b *rawBlock) string {
	m := specs.Model{
		Source:       looseString(b.get("source")),
		TargetSubdir: looseString(b.get("target_subdir")),
		TargetPath:   looseString(b.get("target_path")),
		Name:         looseString(b.get("name")),
	}
	t, err := specs.ModelTarget(m)
	if err != nil {
		return ""
	}
	return t
}

func looseString(a *rawAttr) string {
	if a == nil || a.val.Type() != ctyString {
		return ""
	}
	return a.val.AsString()
}

// BaseOf returns the base version id a spec file extends, or "" when it extends none (JSON
// specs never do). Only a literal extends is seen; the file is not otherwise checked.
func BaseOf(path string) (string, error) {
	if !strings.HasSuffix(path, ".hcl") {
		return "", nil
	}
	src, err := readSpecFile(path)
	if err != nil {
		return "", fmt.Errorf("reading spec: %w", err)
	}
	d := &diags{}
	if !checkSource(path, src, true, d) {
		return "", &SpecError{Diags: d.list}
	}
	f, hd := hclparse.NewParser().ParseHCL(src, path)
	if hd.HasErrors() {
		return "", &SpecError{Diags: convertHCL(hd)}
	}
	content, _, _ := f.Body.PartialContent(&hcl.BodySchema{Attributes: attrSchema("extends")})
	a := content.Attributes["extends"]
	if a == nil {
		return "", nil
	}
	v, hd := a.Expr.Value(nil)
	if hd.HasErrors() || v.IsNull() || !v.IsKnown() || v.Type() != ctyString {
		return "", nil
	}
	return v.AsString(), nil
}

func convertHCL(hd hcl.Diagnostics) Diagnostics {
	d := &diags{}
	d.addHCL(hd)
	return d.list.Errors()
}

// readSpecFile reads a spec file, at most MaxFileBytes+1 bytes of it: checkSource reports a
// longer file without this process reading all of it.
func readSpecFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
}
