package lang

import (
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// evalContext evaluates the variable and locals blocks of one HCL file and returns the context
// its other expressions are evaluated in (var.<name>, local.<name> and the function table)
// and the budget those evaluations are charged to.
func evalContext(content *hcl.BodyContent, vars map[string]string, used map[string]bool, d *diags) (*hcl.EvalContext, *budget) {
	bud := &budget{}
	funcs := functions(bud)
	base := &hcl.EvalContext{Functions: funcs}
	varVals := map[string]cty.Value{}
	seenVar := map[string]hcl.Range{}
	var localAttrs []*hcl.Attribute
	seenLocal := map[string]hcl.Range{}
	for _, b := range content.Blocks {
		switch b.Type {
		case "variable":
			name := b.Labels[0]
			if first, dup := seenVar[name]; dup {
				d.errorf(b.DefRange, "variable "+quote(name), "declared twice (first at %s)", posOf(first))
				continue
			}
			seenVar[name] = b.DefRange
			if !hclIdent(name) {
				d.errorf(b.LabelRanges[0], "variable "+quote(name), "a variable name is a letter followed by letters, digits, _ or -")
				continue
			}
			vc, hd := b.Body.Content(&hcl.BodySchema{Attributes: attrSchema("default", "description", "type")})
			d.addHCL(hd)
			if over, ok := vars[name]; ok {
				used[name] = true
				varVals[name] = cty.StringVal(over)
				if msg := valueProblem(varVals[name]); msg != "" {
					d.errorf(b.DefRange, "variable "+quote(name), "--var %s: %s", name, msg)
					varVals[name] = cty.DynamicVal
				}
				continue
			}
			def := vc.Attributes["default"]
			if def == nil {
				d.errorf(b.DefRange, "variable "+quote(name), "has no default and no value was given: pass --var %s=VALUE", name)
				varVals[name] = cty.DynamicVal
				continue
			}
			varVals[name], _ = evalLimited(def, base, bud, d, "variable "+quote(name)+".default")
		case "locals":
			attrs, hd := b.Body.JustAttributes()
			d.addHCL(hd)
			for _, a := range sortedHCLAttrs(attrs) {
				if first, dup := seenLocal[a.Name]; dup {
					d.errorf(a.Range, "local."+a.Name, "declared twice (first at %s)", posOf(first))
					continue
				}
				seenLocal[a.Name] = a.Range
				localAttrs = append(localAttrs, a)
			}
		}
	}
	ctx := &hcl.EvalContext{
		Functions: funcs,
		Variables: map[string]cty.Value{"var": cty.ObjectVal(varVals), "local": cty.EmptyObjectVal},
	}
	// Locals may refer to each other: evaluate those whose references are all known, until no
	// more can be; what remains is a cycle or refers to a local that does not exist.
	localVals := map[string]cty.Value{}
	pending := localAttrs
	for len(pending) > 0 {
		var next []*hcl.Attribute
		progress := false
		for _, a := range pending {
			if !localDepsReady(a, seenLocal, localVals) {
				next = append(next, a)
				continue
			}
			ctx.Variables["local"] = cty.ObjectVal(localVals)
			localVals[a.Name], _ = evalLimited(a, ctx, bud, d, "local."+a.Name)
			progress = true
		}
		if !progress {
			var names []string
			for _, a := range next {
				names = append(names, "local."+a.Name)
			}
			sort.Strings(names)
			for _, a := range next {
				d.errorf(a.Range, "local."+a.Name, "cannot be evaluated: the locals %s refer to each other in a cycle", strings.Join(names, ", "))
				localVals[a.Name] = cty.DynamicVal
			}
			break
		}
		pending = next
	}
	ctx.Variables["local"] = cty.ObjectVal(localVals)
	return ctx, bud
}

// maxExprDiags is how many diagnostics of one expression are kept.
const maxExprDiags = 10

// evalLimited evaluates attribute a of field path within the limits (see limits.go): the
// expression is metered, the budget starts afresh, and a value over the limits is an error
// at a. It returns cty.DynamicVal and false when evaluation failed (reported).
func evalLimited(a *hcl.Attribute, ctx *hcl.EvalContext, b *budget, d *diags, path string) (cty.Value, bool) {
	if hd := meter(a.Expr); hd.HasErrors() {
		d.addExpr(hd, path)
		return cty.DynamicVal, false
	}
	b.reset()
	v, hd := a.Expr.Value(ctx)
	if len(hd) > maxExprDiags {
		// A template of thousands of parts past the budget gives an error per part: the first
		// few say it all.
		hd = hd[:maxExprDiags]
	}
	d.addExpr(hd, path)
	if hd.HasErrors() {
		return cty.DynamicVal, false
	}
	if msg := valueProblem(v); msg != "" {
		d.errorf(a.Range, path, "is %s", msg)
		return cty.DynamicVal, false
	}
	return v, true
}

// localDepsReady reports whether every local.<name> a refers to is evaluated (or does not
// exist, which evaluation then reports).
func localDepsReady(a *hcl.Attribute, declared map[string]hcl.Range, done map[string]cty.Value) bool {
	for _, tr := range a.Expr.Variables() {
		if tr.RootName() != "local" || len(tr) < 2 {
			continue
		}
		step, ok := tr[1].(hcl.TraverseAttr)
		if !ok {
			continue
		}
		if _, exists := declared[step.Name]; !exists {
			continue
		}
		if _, ok := done[step.Name]; !ok {
			return false
		}
	}
	return true
}

func hclIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		letter := c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if i == 0 && !letter {
			return false
		}
		if !letter && c != '-' && !('0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

func quote(s string) string { return `"` + s + `"` }
