package lang

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

const header = `comfy {
  commit = "0123456789abcdef0123456789abcdef01234567"
}
`

// doublingLocals is the 1.5 KB attack of issue 14: each local doubles the one before, 40
// times (a terabyte by the end).
func doublingLocals() string {
	var b strings.Builder
	b.WriteString(header + "locals {\n  s0 = \"xxxxxxxx\"\n")
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&b, "  s%d = \"${local.s%d}${local.s%d}\"\n", i, i-1, i-1)
	}
	b.WriteString("}\nenv = { X = local.s40 }\n")
	return b.String()
}

func deep(open, close string, n int) string {
	return strings.Repeat(open, n) + strings.Repeat(close, n)
}

// TestLimitsStopAttacks feeds specs built to exhaust stack, memory or time: each must end
// with an error naming the limit at its position, having allocated little.
func TestLimitsStopAttacks(t *testing.T) {
	longLocal := `locals { s = "` + strings.Repeat("x", 60<<10) + `" }` + "\n"
	for _, tc := range []struct {
		name, file, src string
		want            string // part of the error
		pos             string // file:line:col of the error
	}{
		{"json-deep", "x.json", `{"schema_version": 2, "version_id": "x", "env": {"A": ` + deep("[", "]", 100000) + `}}`,
			"nested more than 64 deep", "x.json:1:117"},
		{"json-deep-200k", "x.json", `{"schema_version": 2, "version_id": "x", "env": {"A": ` + deep("[", "]", 200000) + `}}`,
			"larger than 262144 bytes", "x.json:1:1"},
		{"json-deep-objects", "x.json", `{"a":` + strings.Repeat(`{"a":`, 20000) + `1` + strings.Repeat("}", 20001),
			"nested more than 64 deep", "x.json:1:"},
		{"hcl-deep", "x.hcl", header + "env = { X = " + deep("[", "]", 100000) + " }\n",
			"nested more than 64 deep", "x.hcl:4:76"},
		{"hcl-deep-parens", "x.hcl", header + "env = { X = " + deep("(", ")", 100000) + " }\n",
			"nested more than 64 deep", "x.hcl:4:"},
		{"hcl-deep-template", "x.hcl", header + "env = { X = " + strings.Repeat(`"${`, 40000) + "1" + strings.Repeat(`}"`, 40000) + " }\n",
			"nested more than 64 deep", "x.hcl:4:"},
		{"too-big", "x.json", `{"schema_version": 2, "version_id": "x", "env": {"A": "` + strings.Repeat("x", 300<<10) + `"}}`,
			"larger than 262144 bytes", "x.json:1:1"},
		{"doubling-locals", "x.hcl", doublingLocals(), "local.s14: is a string of 131072 bytes; a string may have at most 65536", "x.hcl:19:3"},
		{"template-repeat", "x.hcl", header + longLocal + "env = { X = \"" + strings.Repeat("${local.s}", 2000) + "\" }\n",
			"builds more than 16 MiB", "x.hcl:5:"},
		{"for-range", "x.hcl", header + longLocal + "locals { l = [for i in range(1000) : local.s] }\nenv = { X = join(\"\", local.l) }\n",
			"local.l: this expression builds more than 16 MiB", "x.hcl:5:38"},
		{"range-huge", "x.hcl", header + "locals { l = range(1000000000) }\n", "range() would make more than 1024 elements", "x.hcl:4:14"},
		{"format-width", "x.hcl", header + "locals { s = format(\"%01000000000d\", 1) }\n", "width or precision", "x.hcl:4:14"},
		{"indent", "x.hcl", header + "locals { s = indent(1000000000, \"a\\nb\") }\n", "indent() would build more than 16 MiB", "x.hcl:4:14"},
		{"replace", "x.hcl", header + longLocal + "locals { t = replace(local.s, \"\", local.s) }\n", "replace() would build more than 16 MiB", "x.hcl:5:14"},
		{"nested-for", "x.hcl", header + "locals { l = [for a in range(1000) : [for b in range(1000) : \"x\"]] }\n", "for expression inside another", "x.hcl:4:"},
		{"var-override", "x.hcl", header + "variable \"v\" {}\nenv = { X = var.v }\n", "a string may have at most", "x.hcl:4:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			opts := Options{}
			if tc.name == "var-override" {
				opts.Vars = map[string]string{"v": strings.Repeat("v", 100<<10)}
			}
			_, diags, err := LoadBytes(context.Background(), tc.file, []byte(tc.src), opts)
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("the attack was accepted")
			}
			found := false
			for _, d := range diags.Errors() {
				if strings.Contains(d.String(), tc.want) && strings.HasPrefix(d.String(), tc.pos) {
					found = true
				}
			}
			if !found {
				t.Errorf("want an error at %s containing %q, got:\n%v", tc.pos, tc.want, err)
			}
			// Reading the spec may allocate a few times the limits, never the attack's size.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 512<<20 {
				t.Errorf("allocated %d MiB", alloc>>20)
			}
		})
	}
}

// TestLimitsAcceptRealSpecs checks the limits leave room for what specs do: a long package
// list, a for over a list, string templates, nesting a few levels deep.
func TestLimitsAcceptRealSpecs(t *testing.T) {
	var pk []string
	for i := 0; i < 300; i++ {
		pk = append(pk, fmt.Sprintf("%q", fmt.Sprintf("package-%d==1.0.%d", i, i)))
	}
	src := header + `locals {
  base  = "https://example.com/models"
  names = ["a", "b", "c"]
  urls  = [for n in local.names : "${local.base}/${n}.safetensors"]
  deep  = {a = {b = {c = {d = [[["x"]]]}}}}
}
python {
  packages = [` + strings.Join(pk, ", ") + `]
}
model "a" {
  source        = local.urls[0]
  target_subdir = "checkpoints"
}
env = { X = format("%08d", 7), Y = join(",", local.names), Z = local.deep.a.b.c.d[0][0][0] }
`
	s, _, err := LoadBytes(context.Background(), "x.hcl", []byte(src), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Env["X"] != "00000007" || s.Models[0].Source != "https://example.com/models/a.safetensors" || s.Env["Z"] != "x" {
		t.Errorf("evaluated wrongly: %+v %+v", s.Env, s.Models)
	}
}

// FuzzJSONDepth reads JSON specs nested to fuzzed depths with fuzzed brackets: never a panic
// or a stack overflow, and past MaxNesting always the nesting error.
func FuzzJSONDepth(f *testing.F) {
	f.Add(uint32(10), "[", "]")
	f.Add(uint32(65), `{"a":`, "}")
	f.Add(uint32(200000), "[", "]")
	f.Add(uint32(300), `["\"[",`, "]")
	f.Fuzz(func(t *testing.T, n uint32, open, close string) {
		n %= 300000
		if len(open)*int(n) > 2*MaxFileBytes {
			return
		}
		src := `{"schema_version": 2, "version_id": "x", "env": {"A": ` + strings.Repeat(open, int(n)) + "1" + strings.Repeat(close, int(n)) + `}}`
		_, diags, err := LoadBytes(context.Background(), "x.json", []byte(src), Options{})
		if err == nil {
			return
		}
		if open == "[" && close == "]" && n > MaxNesting && len(src) <= MaxFileBytes {
			if !strings.Contains(diags.Errors()[0].String(), "nested more than") {
				t.Errorf("depth %d: %v", n, err)
			}
		}
	})
}
