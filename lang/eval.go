package lang

import (
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// evalContext evaluates the variable and locals blocks of one HCL file and returns the context
// its other expressions are evaluated in: var.<name>, local.<name> and the function table.
func evalContext(content *hcl.BodyContent, vars map[string]string, used map[string]bool, d *diags) *hcl.EvalContext {
	funcs := functions()
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
				continue
			}
			def := vc.Attributes["default"]
			if def == nil {
				d.errorf(b.DefRange, "variable "+quote(name), "has no default and no value was given: pass --var %s=VALUE", name)
				varVals[name] = cty.DynamicVal
				continue
			}
			v, hd := def.Expr.Value(base)
			d.addExpr(hd, "variable "+quote(name)+".default")
			if hd.HasErrors() {
				v = cty.DynamicVal
			}
			varVals[name] = v
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
			v, hd := a.Expr.Value(ctx)
			d.addExpr(hd, "local."+a.Name)
			if hd.HasErrors() {
				v = cty.DynamicVal
			}
			localVals[a.Name] = v
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
	return ctx
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
