package lang

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"

	"github.com/runpod-comfy/runpod-comfy/specs"
)

// Severity says whether a diagnostic makes a spec invalid.
type Severity int

const (
	// Warning is an accepted quirk or a remark: the spec is valid.
	Warning Severity = iota + 1
	// Error makes the spec invalid.
	Error
)

func (s Severity) String() string {
	if s == Warning {
		return "warning"
	}
	return "error"
}

// Diagnostic is one problem or remark about a spec.
type Diagnostic struct {
	Severity Severity
	Pos      specs.Pos
	// Field is the path of the field concerned, e.g. `custom_nodes[1].commit` (JSON) or
	// `custom_node "x".commit` (HCL); empty for a problem of the whole file.
	Field string
	// Message says what is wrong (or what was assumed), starting with the field when there is
	// one.
	Message string
}

// String formats d as "file:line:col: message", warnings with "warning: " before the message.
func (d Diagnostic) String() string {
	var b strings.Builder
	if p := d.Pos.String(); p != "" {
		b.WriteString(p)
		b.WriteString(": ")
	}
	if d.Severity == Warning {
		b.WriteString("warning: ")
	}
	b.WriteString(d.Message)
	return b.String()
}

// Diagnostics is a list of diagnostics in the order of their positions.
type Diagnostics []Diagnostic

// HasErrors reports whether any diagnostic is an error.
func (ds Diagnostics) HasErrors() bool {
	for _, d := range ds {
		if d.Severity == Error {
			return true
		}
	}
	return false
}

// Errors returns the errors only.
func (ds Diagnostics) Errors() Diagnostics { return ds.filter(Error) }

// Warnings returns the warnings only.
func (ds Diagnostics) Warnings() Diagnostics { return ds.filter(Warning) }

func (ds Diagnostics) filter(s Severity) Diagnostics {
	var out Diagnostics
	for _, d := range ds {
		if d.Severity == s {
			out = append(out, d)
		}
	}
	return out
}

func (ds Diagnostics) sort() {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i].Pos, ds[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

// SpecError is the error returned for an invalid spec. Its message lists every error as
// "file:line:col: message", one a line.
type SpecError struct {
	Diags Diagnostics // the errors
}

func (e *SpecError) Error() string {
	lines := make([]string, len(e.Diags))
	for i, d := range e.Diags {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// InvalidSpec reports true: the command line maps it to exit code 2.
func (e *SpecError) InvalidSpec() bool { return true }

// diags collects diagnostics while reading.
type diags struct{ list Diagnostics }

func posOf(r hcl.Range) specs.Pos {
	if r.Filename == "" {
		return specs.Pos{}
	}
	return specs.Pos{File: r.Filename, Line: r.Start.Line, Col: r.Start.Column}
}

func (d *diags) errorf(r hcl.Range, field, format string, args ...any) {
	d.add(Error, r, field, format, args...)
}

func (d *diags) warnf(r hcl.Range, field, format string, args ...any) {
	d.add(Warning, r, field, format, args...)
}

func (d *diags) add(sev Severity, r hcl.Range, field, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if field != "" {
		msg = field + ": " + msg
	}
	d.list = append(d.list, Diagnostic{Severity: sev, Pos: posOf(r), Field: field, Message: msg})
}

var (
	unknownNameRe = regexp.MustCompile(`(?:named|of type) "([^"]*)"`)
)

// addExpr converts the diagnostics of evaluating the expression of field path, naming the
// field and dropping hcl's summaries where the detail says it all.
func (d *diags) addExpr(hd hcl.Diagnostics, path string) {
	for _, h := range hd {
		if h.Severity != hcl.DiagError || h.Subject == nil {
			d.addHCL(hcl.Diagnostics{h})
			continue
		}
		msg := strings.TrimSuffix(h.Detail, ".")
		if m := undeclaredMessage(h); m != "" {
			msg = m
		} else if _, after, ok := strings.Cut(msg, " failed: "); ok && h.Summary == "Error in function call" {
			msg = after
		} else if msg == "" {
			msg = strings.ToLower(h.Summary)
		} else {
			msg = strings.ToLower(h.Summary) + ": " + strings.ToLower(msg[:1]) + msg[1:]
		}
		dup := false
		for _, o := range d.list {
			if o.Pos == posOf(*h.Subject) && strings.HasSuffix(o.Message, msg) {
				dup = true
			}
		}
		if !dup {
			d.errorf(*h.Subject, path, "%s", msg)
		}
	}
}

// undeclaredMessage rewrites hcl's "Unsupported attribute" for var.x and local.x into "no
// variable/local x is declared", with the nearest declared name as a suggestion.
func undeclaredMessage(h *hcl.Diagnostic) string {
	if h.Summary != "Unsupported attribute" || h.Expression == nil || h.EvalContext == nil {
		return ""
	}
	m := unknownNameRe.FindStringSubmatch(h.Detail)
	if m == nil {
		return ""
	}
	for _, tr := range h.Expression.Variables() {
		root := tr.RootName()
		if root != "var" && root != "local" || len(tr) < 2 {
			continue
		}
		if step, ok := tr[1].(hcl.TraverseAttr); !ok || step.Name != m[1] {
			continue
		}
		kind := map[string]string{"var": "variable", "local": "local"}[root]
		msg := fmt.Sprintf("no %s %q is declared", kind, m[1])
		v, ok := h.EvalContext.Variables[root]
		if ok && v.Type().IsObjectType() {
			best, bestD := "", 4
			for name := range v.Type().AttributeTypes() {
				if d := levenshtein.Distance(name, m[1], nil); d < bestD {
					best, bestD = name, d
				}
			}
			if best != "" {
				msg += fmt.Sprintf("; did you mean %s.%s?", root, best)
			}
		}
		return msg
	}
	return ""
}

// addHCL converts hcl's own diagnostics, dropping the follow-ups of an error already reported.
func (d *diags) addHCL(hd hcl.Diagnostics) { d.addHCLIn(hd, "") }

// addHCLIn converts hcl's diagnostics about the body at field path (empty for the top level);
// an unknown field is reported as such, with hcl's "did you mean".
func (d *diags) addHCLIn(hd hcl.Diagnostics, path string) {
	for _, h := range hd {
		switch h.Summary {
		case "Extraneous JSON object property", "Unsupported argument", "Unsupported block type":
			if m := unknownNameRe.FindStringSubmatch(h.Detail); m != nil {
				msg := fmt.Sprintf("unknown field %q", m[1])
				if h.Summary == "Unsupported block type" {
					msg = fmt.Sprintf("unknown block %q", m[1])
				}
				if _, hint, ok := strings.Cut(h.Detail, ". "); ok && hint != "" {
					msg += "; " + strings.ToLower(hint[:1]) + hint[1:]
				}
				field := m[1]
				if path != "" {
					field = path + "." + m[1]
				}
				var r hcl.Range
				if h.Subject != nil {
					r = *h.Subject
				}
				d.errorf(r, field, "%s", msg)
				continue
			}
		}
		sev := Error
		if h.Severity == hcl.DiagWarning {
			sev = Warning
		}
		msg := h.Summary
		if h.Detail != "" {
			msg += ": " + strings.TrimSuffix(h.Detail, ".")
		}
		var p specs.Pos
		if h.Subject != nil {
			p = posOf(*h.Subject)
		}
		dup := false
		for _, o := range d.list {
			if o.Pos == p && o.Message == msg {
				dup = true
				break
			}
		}
		if !dup {
			d.list = append(d.list, Diagnostic{Severity: sev, Pos: p, Message: msg})
		}
	}
}
