package lang

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/runpod-comfy/runpod-comfy/specs"
)

// rawAttr is one attribute as written in one file: evaluated, but not yet checked against the
// model.
type rawAttr struct {
	name string
	val  cty.Value // known and not null
	rng  hcl.Range // the whole attribute (starts at its name)
	path string    // field path for messages, e.g. custom_nodes[1].commit
}

// rawBlock is one block (JSON object) of a spec file: comfy, a custom node, a model, python or
// options.
type rawBlock struct {
	kind     string
	label    string // HCL block label (custom_node, model); empty in JSON
	labelRng hcl.Range
	path     string // field path prefix, e.g. custom_nodes[1] or custom_node "x"
	def      hcl.Range
	attrs    map[string]*rawAttr
	failed   map[string]bool // attributes present but not evaluated (already reported)
}

// present reports whether the block declares the attribute, evaluated or not.
func (b *rawBlock) present(name string) bool {
	return b != nil && (b.attrs[name] != nil || b.failed[name])
}

func (b *rawBlock) get(name string) *rawAttr {
	if b == nil {
		return nil
	}
	return b.attrs[name]
}

func rangeLess(a, b hcl.Range) bool {
	if a.Filename != b.Filename {
		return a.Filename < b.Filename
	}
	return a.Start.Byte < b.Start.Byte
}

// envEntry is one env variable as declared.
type envEntry struct {
	val  cty.Value
	rng  hcl.Range
	path string
}

// rawDoc is one spec file read and evaluated, before extends is applied and before the model's
// rules are checked.
type rawDoc struct {
	file  string
	id    string // the file name without suffix
	isHCL bool

	schemaVersion *rawAttr
	versionID     *rawAttr
	idAlias       *rawAttr // the seed tool's "id": an alias of version_id
	pyPackages    *rawAttr // the seed tool's top-level "python_packages"
	extends       *rawAttr
	comfy         *rawBlock
	nodes         []*rawBlock
	models        []*rawBlock
	python        *rawBlock
	options       *rawBlock
	env           map[string]*envEntry
	envRng        hcl.Range
	fileRng       hcl.Range
	shapeErr      bool // a top-level part had the wrong JSON shape (reported)
}

var (
	comfyAttrs   = []string{"repo", "ref", "commit", "install_requirements"}
	nodeAttrs    = []string{"name", "repo", "ref", "commit", "registry", "version", "install_requirements", "writable", "submodules", "target_dir"}
	modelAttrs   = []string{"source", "target_subdir", "target_path", "path", "name", "checksum"}
	pythonAttrs  = []string{"version", "packages", "index_url", "extra_index_urls", "find_links", "constraints", "system_site_packages"}
	optionsAttrs = []string{"offline", "skip_models", "substituters", "download_connections"}
)

func attrSchema(names ...string) []hcl.AttributeSchema {
	out := make([]hcl.AttributeSchema, len(names))
	for i, n := range names {
		out[i] = hcl.AttributeSchema{Name: n}
	}
	return out
}

var jsonTopSchema = &hcl.BodySchema{
	Attributes: attrSchema("$schema", "schema_version", "version_id", "id", "python_packages", "env"),
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "comfy"}, {Type: "custom_nodes"}, {Type: "models"}, {Type: "python"}, {Type: "options"},
	},
}

var hclTopSchema = &hcl.BodySchema{
	Attributes: attrSchema("schema_version", "version_id", "id", "python_packages", "extends", "env"),
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "comfy"}, {Type: "custom_node", LabelNames: []string{"name"}},
		{Type: "model", LabelNames: []string{"label"}}, {Type: "python"}, {Type: "options"},
		{Type: "variable", LabelNames: []string{"name"}}, {Type: "locals"},
	},
}

// fileID is the version id a file name gives: its base name without .json or .hcl.
func fileID(path string) string {
	base := filepath.Base(path)
	return strings.TrimSuffix(strings.TrimSuffix(base, ".json"), ".hcl")
}

// readFile parses and evaluates one spec file. vars are the --var overrides; used records which
// of them a variable block consumed.
func readFile(parser *hclparse.Parser, path string, src []byte, vars map[string]string, used map[string]bool, d *diags) *rawDoc {
	doc := &rawDoc{file: path, id: fileID(path), env: map[string]*envEntry{}}
	var f *hcl.File
	var hd hcl.Diagnostics
	if !checkSource(path, src, strings.HasSuffix(path, ".hcl"), d) {
		return nil
	}
	switch {
	case strings.HasSuffix(path, ".json"):
		f, hd = parser.ParseJSON(src, path)
	case strings.HasSuffix(path, ".hcl"):
		doc.isHCL = true
		f, hd = parser.ParseHCL(src, path)
	default:
		d.errorf(hcl.Range{Filename: path}, "", "spec files end in .json or .hcl")
		return nil
	}
	d.addHCL(hd)
	if f == nil || hd.HasErrors() {
		return nil
	}
	if !doc.isHCL {
		if i := skipSpace(src, 0); i >= len(src) || src[i] != '{' {
			d.errorf(rangeAt(path, src, i), "", "a JSON spec is one object ({...})")
			return nil
		}
	}
	doc.fileRng = hcl.Range{Filename: path, Start: hcl.Pos{Line: 1, Column: 1, Byte: 0}, End: hcl.Pos{Line: 1, Column: 1, Byte: 0}}
	if doc.isHCL {
		if b, ok := f.Body.(*hclsyntax.Body); ok {
			doc.fileRng = hcl.Range{Filename: path, Start: b.SrcRange.Start, End: b.SrcRange.Start}
		}
	}
	schema := jsonTopSchema
	if doc.isHCL {
		schema = hclTopSchema
	}
	content, hd := f.Body.Content(schema)
	d.addHCL(hd)
	if content == nil {
		return doc
	}
	var ctx *hcl.EvalContext
	bud := &budget{}
	if doc.isHCL {
		ctx, bud = evalContext(content, vars, used, d)
	}
	r := reader{d: d, ctx: ctx, bud: bud}
	var lists jsonLists
	if !doc.isHCL {
		lists = scanJSONLists(path, src, "custom_nodes", "models")
		for _, key := range []string{"custom_nodes", "models"} {
			if rng, ok := lists.notList[key]; ok {
				d.errorf(rng, key, "must be a list of objects ([{...}, ...])")
			}
		}
		for _, key := range []string{"comfy", "python", "options"} {
			if rng, ok := lists.notObject[key]; ok {
				d.errorf(rng, key, "must be an object ({...})")
				doc.shapeErr = true
			}
		}
	}
	// jsonDef gives a block from a JSON array its element's position; false when the element
	// is not an object (hcl has reported it).
	jsonDef := func(b *hcl.Block, key string, i int) bool {
		starts := lists.starts[key]
		if i >= len(starts) {
			return true
		}
		b.DefRange = starts[i]
		off := starts[i].Start.Byte
		if off < len(src) && src[off] == '{' {
			return true
		}
		d.errorf(starts[i], fmt.Sprintf("%s[%d]", key, i), "must be an object ({...})")
		return false
	}
	for _, a := range sortedHCLAttrs(content.Attributes) {
		switch a.Name {
		case "$schema":
			// An editor's pointer to the JSON schema: accepted and ignored.
		case "schema_version":
			doc.schemaVersion = r.attr(a, "schema_version")
		case "version_id":
			doc.versionID = r.attr(a, "version_id")
		case "id":
			doc.idAlias = r.attr(a, "id")
		case "python_packages":
			doc.pyPackages = r.attr(a, "python_packages")
		case "extends":
			doc.extends = r.attr(a, "extends")
		case "env":
			r.env(doc, a)
		}
	}
	nodeIndex, modelIndex := 0, 0
	for _, b := range content.Blocks {
		if _, bad := lists.notObject[b.Type]; bad {
			continue
		}
		switch b.Type {
		case "comfy":
			if doc.comfy != nil {
				d.errorf(b.DefRange, "comfy", "declared twice (first at %s)", posOf(doc.comfy.def))
				continue
			}
			doc.comfy = r.block(b, "comfy", "comfy", comfyAttrs)
		case "custom_nodes":
			if _, bad := lists.notList["custom_nodes"]; bad {
				continue
			}
			if !jsonDef(b, "custom_nodes", nodeIndex) {
				nodeIndex++
				continue
			}
			doc.nodes = append(doc.nodes, r.block(b, "custom_node", fmt.Sprintf("custom_nodes[%d]", nodeIndex), nodeAttrs))
			nodeIndex++
		case "custom_node":
			if err := specs.CheckText(b.Labels[0]); err != nil {
				d.errorf(b.LabelRanges[0], "custom_node", "label %q %v", b.Labels[0], err)
				continue
			}
			rb := r.block(b, "custom_node", fmt.Sprintf("custom_node %q", b.Labels[0]), nodeAttrs[1:])
			rb.label, rb.labelRng = b.Labels[0], b.LabelRanges[0]
			doc.nodes = append(doc.nodes, rb)
		case "models":
			if _, bad := lists.notList["models"]; bad {
				continue
			}
			if !jsonDef(b, "models", modelIndex) {
				modelIndex++
				continue
			}
			doc.models = append(doc.models, r.block(b, "model", fmt.Sprintf("models[%d]", modelIndex), modelAttrs))
			modelIndex++
		case "model":
			if err := specs.CheckText(b.Labels[0]); err != nil {
				d.errorf(b.LabelRanges[0], "model", "label %q %v", b.Labels[0], err)
				continue
			}
			rb := r.block(b, "model", fmt.Sprintf("model %q", b.Labels[0]), modelAttrs)
			rb.label, rb.labelRng = b.Labels[0], b.LabelRanges[0]
			doc.models = append(doc.models, rb)
		case "python":
			if doc.python != nil {
				d.errorf(b.DefRange, "python", "declared twice (first at %s)", posOf(doc.python.def))
				continue
			}
			doc.python = r.block(b, "python", "python", pythonAttrs)
		case "options":
			if doc.options != nil {
				d.errorf(b.DefRange, "options", "declared twice (first at %s)", posOf(doc.options.def))
				continue
			}
			doc.options = r.block(b, "options", "options", optionsAttrs)
		}
	}
	seedPythonPackages(doc, d)
	return doc
}

func sortedHCLAttrs(m hcl.Attributes) []*hcl.Attribute {
	out := make([]*hcl.Attribute, 0, len(m))
	for _, a := range m {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return rangeLess(out[i].Range, out[j].Range) })
	return out
}

// reader evaluates attributes of one file.
type reader struct {
	d   *diags
	ctx *hcl.EvalContext // nil for JSON: strings are taken literally
	bud *budget
}

// attr evaluates one attribute; nil when it is null or could not be evaluated (reported).
func (r reader) attr(a *hcl.Attribute, path string) *rawAttr {
	v, ok := evalLimited(a, r.ctx, r.bud, r.d, path)
	if !ok {
		return nil
	}
	if path != "env" && v.IsWhollyKnown() {
		// Every field but env values is a name, path, URL, version or similar: no control
		// characters (env values are checked on their own: no NUL).
		if msg := controlProblem(v); msg != "" {
			r.d.errorf(a.Range, path, "%s", msg)
			return nil
		}
	}
	if v.IsNull() {
		if r.ctx == nil {
			r.d.errorf(a.Range, path, "is null: leave the field out instead")
		}
		return nil
	}
	if !v.IsWhollyKnown() {
		r.d.errorf(a.Range, path, "value is not known when the spec is evaluated")
		return nil
	}
	v, _ = v.UnmarkDeep()
	return &rawAttr{name: a.Name, val: v, rng: a.Range, path: path}
}

func (r reader) block(b *hcl.Block, kind, path string, names []string) *rawBlock {
	rb := &rawBlock{kind: kind, path: path, def: b.DefRange, attrs: map[string]*rawAttr{}, failed: map[string]bool{}}
	content, hd := b.Body.Content(&hcl.BodySchema{Attributes: attrSchema(names...)})
	r.d.addHCLIn(hd, path)
	if content == nil {
		return rb
	}
	for _, a := range sortedHCLAttrs(content.Attributes) {
		if ra := r.attr(a, path+"."+a.Name); ra != nil {
			rb.attrs[a.Name] = ra
		} else {
			rb.failed[a.Name] = true
		}
	}
	return rb
}

func (r reader) env(doc *rawDoc, a *hcl.Attribute) {
	doc.envRng = a.Range
	ra := r.attr(a, "env")
	if ra == nil {
		return
	}
	t := ra.val.Type()
	if !t.IsObjectType() && !t.IsMapType() {
		r.d.errorf(a.Range, "env", "must be an object of strings, got %s", typeName(t))
		return
	}
	// Positions of the keys, when the expression is an object written out in the file.
	keyRng := map[string]hcl.Range{}
	if items, hd := hcl.ExprMap(a.Expr); !hd.HasErrors() {
		for _, it := range items {
			if k, hd := it.Key.Value(nil); !hd.HasErrors() && k.Type() == cty.String && k.IsKnown() && !k.IsNull() {
				keyRng[k.AsString()] = hcl.RangeBetween(it.Key.Range(), it.Value.Range())
			}
		}
	}
	for it := ra.val.ElementIterator(); it.Next(); {
		k, v := it.Element()
		key := k.AsString()
		rng, ok := keyRng[key]
		if !ok {
			rng = a.Range
		}
		if v.IsKnown() && !v.IsNull() && v.Type() == cty.String && strings.ContainsRune(v.AsString(), 0) {
			r.d.errorf(rng, "env."+key, "holds a NUL character, which no environment variable can")
			continue
		}
		doc.env[key] = &envEntry{val: v, rng: rng, path: "env." + key}
	}
}

func typeName(t cty.Type) string {
	switch {
	case t == cty.String:
		return "a string"
	case t == cty.Number:
		return "a number"
	case t == cty.Bool:
		return "a boolean"
	case t.IsTupleType() || t.IsListType() || t.IsSetType():
		return "a list"
	case t.IsObjectType() || t.IsMapType():
		return "an object"
	default:
		return t.FriendlyName()
	}
}

// controlProblem describes the first string in v that specs.CheckText refuses, or "".
func controlProblem(v cty.Value) string {
	if v.IsNull() || !v.IsKnown() {
		return ""
	}
	t := v.Type()
	switch {
	case t == cty.String:
		if err := specs.CheckText(v.AsString()); err != nil {
			return fmt.Sprintf("%q %v", v.AsString(), err)
		}
	case t.IsListType() || t.IsSetType() || t.IsTupleType() || t.IsMapType() || t.IsObjectType():
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			if msg := controlProblem(k); msg != "" && k.Type() == cty.String {
				return msg
			}
			if msg := controlProblem(e); msg != "" {
				return msg
			}
		}
	}
	return ""
}
