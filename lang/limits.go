package lang

import (
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// Limits on what a spec may ask of the machine reading it. A spec is a few kilobytes; these
// leave room for any real one and refuse, with the position, input built to exhaust memory,
// stack or time. docs/spec.md lists them.
const (
	// MaxFileBytes is the size of one spec file.
	MaxFileBytes = 256 << 10
	// MaxNesting is how deep brackets ({ [ ( and template interpolations) may nest.
	MaxNesting = 64
	// MaxStringBytes is the length of any string value.
	MaxStringBytes = 64 << 10
	// MaxElements is the number of elements of any list, set, map or object value.
	MaxElements = 1024
	// MaxValueBytes is the size of one evaluated attribute, local or variable: its string
	// bytes plus 8 per element.
	MaxValueBytes = 1 << 20
	// MaxBuildBytes is how much one expression may build while it is evaluated: every template
	// part, every element a for expression makes and every function result is counted.
	MaxBuildBytes = 16 << 20
)

// checkSource refuses a spec file that is too big, is not UTF-8 or nests too deep, before
// a parser sees it (the parsers recurse once per level, so a file nested 200,000 deep
// overflowed the stack). It reports at the offending byte.
func checkSource(path string, src []byte, isHCL bool, d *diags) bool {
	if len(src) > MaxFileBytes {
		d.errorf(rangeAt(path, src, 0), "", "the file is larger than %d bytes (%d KiB), the most a spec file may have", MaxFileBytes, MaxFileBytes>>10)
		return false
	}
	if i := invalidUTF8(src); i >= 0 {
		d.errorf(rangeAt(path, src, i), "", "invalid UTF-8 (byte 0x%02x): a spec file is UTF-8 text", src[i])
		return false
	}
	if i := tooDeep(src, isHCL); i >= 0 {
		d.errorf(rangeAt(path, src, i), "", "nested more than %d deep", MaxNesting)
		return false
	}
	return true
}

// invalidUTF8 returns the offset of the first byte that is not valid UTF-8, or -1.
func invalidUTF8(src []byte) int {
	for i := 0; i < len(src); {
		r, n := utf8.DecodeRune(src[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}

// tooDeep returns the offset of the first bracket (or HCL template interpolation) that opens
// level MaxNesting+1, or -1. JSON strings are skipped; in HCL, quoted strings and comments
// are skipped except for their ${ } and %{ } interpolations, which count as levels.
// Heredocs are scanned as code, which can only overcount.
func tooDeep(src []byte, isHCL bool) int {
	// stack holds what each level is: a bracket, or a template interpolation inside a string.
	type level byte
	const (
		bracket level = iota
		interp
	)
	var stack []level
	inString := false
	for i := 0; i < len(src); i++ {
		c := src[i]
		if inString {
			switch {
			case c == '\\':
				i++
			case c == '"':
				inString = false
			case isHCL && (c == '$' || c == '%') && i+1 < len(src) && src[i+1] == '{':
				if i > 0 && src[i-1] == c { // $${ and %%{ are escapes
					continue
				}
				stack = append(stack, interp)
				if len(stack) > MaxNesting {
					return i
				}
				inString = false
				i++
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[', '(':
			stack = append(stack, bracket)
			if len(stack) > MaxNesting {
				return i
			}
		case '}', ']', ')':
			if n := len(stack); n > 0 {
				if stack[n-1] == interp && c == '}' {
					inString = true
				}
				stack = stack[:n-1]
			}
		case '#':
			if isHCL {
				for i < len(src) && src[i] != '\n' {
					i++
				}
			}
		case '/':
			if isHCL && i+1 < len(src) && src[i+1] == '/' {
				for i < len(src) && src[i] != '\n' {
					i++
				}
			} else if isHCL && i+1 < len(src) && src[i+1] == '*' {
				end := strings.Index(string(src[i+2:]), "*/")
				if end < 0 {
					return -1 // the parser reports the unterminated comment
				}
				i += end + 3
			}
		}
	}
	return -1
}

// valueProblem describes how v exceeds the limits on values, or returns "".
func valueProblem(v cty.Value) string {
	var size int64
	var walk func(v cty.Value) string
	walk = func(v cty.Value) string {
		if v.IsMarked() {
			v, _ = v.Unmark()
		}
		if !v.IsKnown() || v.IsNull() {
			return ""
		}
		t := v.Type()
		switch {
		case t == cty.String:
			n := len(v.AsString())
			if n > MaxStringBytes {
				return fmt.Sprintf("a string of %d bytes; a string may have at most %d (%d KiB)", n, MaxStringBytes, MaxStringBytes>>10)
			}
			size += int64(n)
		case t.IsListType() || t.IsSetType() || t.IsMapType() || t.IsTupleType() || t.IsObjectType():
			n := v.LengthInt()
			if n > MaxElements {
				return fmt.Sprintf("%d elements; a list, set, map or object may have at most %d", n, MaxElements)
			}
			size += 8 * int64(n)
			for it := v.ElementIterator(); it.Next(); {
				_, e := it.Element()
				if msg := walk(e); msg != "" {
					return msg
				}
				if size > MaxValueBytes {
					break
				}
			}
		default:
			size += 8
		}
		if size > MaxValueBytes {
			return fmt.Sprintf("a value of more than %d bytes (%d MiB), the most one attribute, local or variable may hold", MaxValueBytes, MaxValueBytes>>20)
		}
		return ""
	}
	return walk(v)
}

// valueBytes is v's size as valueProblem counts it, stopping past limit.
func valueBytes(v cty.Value, limit int64) int64 {
	var size int64
	var walk func(v cty.Value)
	walk = func(v cty.Value) {
		if v.IsMarked() {
			v, _ = v.Unmark()
		}
		if size > limit || !v.IsKnown() || v.IsNull() {
			return
		}
		t := v.Type()
		switch {
		case t == cty.String:
			size += int64(len(v.AsString()))
		case t.IsListType() || t.IsSetType() || t.IsMapType() || t.IsTupleType() || t.IsObjectType():
			size += 8 * int64(v.LengthInt())
			for it := v.ElementIterator(); it.Next() && size <= limit; {
				_, e := it.Element()
				walk(e)
			}
		default:
			size += 8
		}
	}
	walk(v)
	return size
}

// budget counts what one expression builds while it is evaluated (MaxBuildBytes).
type budget struct {
	used int64
}

func (b *budget) reset() { b.used = 0 }

func (b *budget) charge(n int64) error {
	b.used += n
	if b.used > MaxBuildBytes {
		return fmt.Errorf("this expression builds more than %d MiB while it is evaluated, the most one expression may build; a spec needs far less", MaxBuildBytes>>20)
	}
	return nil
}

// chargeFunc is the name of the function the evaluator's expressions are rewritten to call
// around every template part and for-expression element (see meter). Its "::" keeps it out
// of what a spec can spell as a plain function name.
const chargeFunc = "runpod-comfy::charge"

// chargeFunction passes its argument through, charging its size to b.
func chargeFunction(b *budget) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "v", Type: cty.DynamicPseudoType, AllowNull: true, AllowUnknown: true, AllowDynamicType: true, AllowMarked: true}},
		Type:   func(args []cty.Value) (cty.Type, error) { return args[0].Type(), nil },
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if err := b.charge(valueBytes(args[0], MaxBuildBytes)); err != nil {
				return cty.NilVal, err
			}
			return args[0], nil
		},
	})
}

// meter rewrites expr in place so that every template part and every element a for
// expression makes passes through chargeFunc: building a huge string or list in one
// expression (a template repeating a long local, a for over a list) then stops at
// MaxBuildBytes instead of exhausting memory. A for expression nested in another, which
// multiplies the elements built, is an error.
func meter(expr hcl.Expression) hcl.Diagnostics {
	e, ok := expr.(hclsyntax.Expression)
	if !ok {
		return nil
	}
	w := &meterWalker{}
	hclsyntax.Walk(e, w)
	return w.diags
}

type meterWalker struct {
	fors  int
	diags hcl.Diagnostics
}

func charged(x hclsyntax.Expression) hclsyntax.Expression {
	if x == nil {
		return nil
	}
	if c, ok := x.(*hclsyntax.FunctionCallExpr); ok && c.Name == chargeFunc {
		return x
	}
	r := x.Range()
	return &hclsyntax.FunctionCallExpr{Name: chargeFunc, Args: []hclsyntax.Expression{x}, NameRange: r, OpenParenRange: r, CloseParenRange: r}
}

func (w *meterWalker) Enter(n hclsyntax.Node) hcl.Diagnostics {
	switch x := n.(type) {
	case *hclsyntax.TemplateExpr:
		for i, p := range x.Parts {
			if _, lit := p.(*hclsyntax.LiteralValueExpr); !lit {
				x.Parts[i] = charged(p)
			}
		}
	case *hclsyntax.ForExpr:
		if w.fors > 0 {
			r := x.Range()
			w.diags = append(w.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Nested for expression",
				Detail: "a for expression inside another is not allowed in a spec: it multiplies the values built", Subject: &r})
		}
		w.fors++
		x.ValExpr = charged(x.ValExpr)
		x.KeyExpr = charged(x.KeyExpr)
	}
	return nil
}

func (w *meterWalker) Exit(n hclsyntax.Node) hcl.Diagnostics {
	if _, ok := n.(*hclsyntax.ForExpr); ok {
		w.fors--
	}
	return nil
}

var formatWidth = regexp.MustCompile(`%[-+# 0]*(\d*)(?:\.(\d*))?`)

// guard wraps function f (named name) so that a call cannot build a huge value: arguments
// that would make a function amplify (a format width, an indent, a range, a join or replace
// of long strings) are refused before the call, and the result is charged to b.
func guard(name string, f function.Function, b *budget) function.Function {
	spec := &function.Spec{
		Params:   f.Params(),
		VarParam: f.VarParam(),
		Type:     func(args []cty.Value) (cty.Type, error) { return f.ReturnTypeForValues(args) },
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if err := precheck(name, args, b); err != nil {
				return cty.NilVal, err
			}
			v, err := f.Call(args)
			if err != nil {
				return v, err
			}
			if err := b.charge(valueBytes(v, MaxBuildBytes)); err != nil {
				return cty.NilVal, err
			}
			return v, nil
		},
	}
	return function.New(spec)
}

// precheck estimates the size of name's result from its arguments and refuses a call that
// would pass what the budget has left.
func precheck(name string, args []cty.Value, b *budget) error {
	left := int64(MaxBuildBytes) - b.used
	str := func(i int) string {
		if i < len(args) && args[i].IsKnown() && !args[i].IsNull() && args[i].Type() == cty.String {
			return args[i].AsString()
		}
		return ""
	}
	num := func(i int) *big.Float {
		if i < len(args) && args[i].IsKnown() && !args[i].IsNull() && args[i].Type() == cty.Number {
			return args[i].AsBigFloat()
		}
		return new(big.Float)
	}
	tooBig := func(est *big.Float) error {
		if est.Cmp(new(big.Float).SetInt64(left)) > 0 {
			return fmt.Errorf("%s() would build more than %d MiB, the most one expression may build", name, MaxBuildBytes>>20)
		}
		return nil
	}
	f := func(n int64) *big.Float { return new(big.Float).SetInt64(n) }
	switch name {
	case "format", "formatlist":
		for _, m := range formatWidth.FindAllStringSubmatch(str(0), -1) {
			for _, w := range m[1:] {
				if len(w) > 6 {
					return fmt.Errorf("%s(): a width or precision of %s is too large", name, w)
				}
			}
		}
	case "indent":
		s := str(1)
		lines := int64(strings.Count(s, "\n") + 1)
		return tooBig(new(big.Float).Add(new(big.Float).Mul(num(0), f(lines)), f(int64(len(s)))))
	case "range":
		start, limit, step := new(big.Float), num(0), big.NewFloat(1)
		if len(args) >= 2 {
			start, limit = num(0), num(1)
		}
		if len(args) >= 3 {
			step = num(2)
		}
		if step.Sign() == 0 {
			return nil // stdlib reports it
		}
		count := new(big.Float).Quo(new(big.Float).Sub(limit, start), step)
		if count.Cmp(big.NewFloat(MaxElements)) > 0 {
			return fmt.Errorf("range() would make more than %d elements, the most a list may have", MaxElements)
		}
	case "join":
		sep := int64(len(str(0)))
		total := int64(0)
		for _, a := range args[1:] {
			if !a.IsWhollyKnown() || a.IsNull() || !a.CanIterateElements() {
				continue
			}
			for it := a.ElementIterator(); it.Next(); {
				_, e := it.Element()
				total += sep
				if e.IsKnown() && !e.IsNull() && e.Type() == cty.String {
					total += int64(len(e.AsString()))
				}
			}
		}
		return tooBig(f(total))
	case "replace", "regex_replace":
		s, sub, repl := str(0), str(1), str(2)
		matches := int64(len(s) + 1)
		if name == "replace" && sub != "" {
			matches = int64(len(s)/len(sub) + 1)
		}
		per := int64(len(repl))
		if name == "regex_replace" {
			per += int64(strings.Count(repl, "$")) * int64(len(s))
		}
		return tooBig(new(big.Float).Add(new(big.Float).Mul(f(matches), f(per)), f(int64(len(s)))))
	case "concat", "flatten", "setunion", "merge", "zipmap", "chunklist", "coalescelist":
		total := int64(0)
		for _, a := range args {
			total += valueBytes(a, MaxBuildBytes)
		}
		return tooBig(f(total))
	}
	return nil
}
