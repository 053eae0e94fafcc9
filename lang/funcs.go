package lang

import (
	"fmt"
	"sort"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// pureFunctions is the one function table of the spec language: cty standard functions whose
// result depends on their arguments only.
var pureFunctions = map[string]function.Function{
	"abs": stdlib.AbsoluteFunc, "ceil": stdlib.CeilFunc, "floor": stdlib.FloorFunc,
	"max": stdlib.MaxFunc, "min": stdlib.MinFunc, "parseint": stdlib.ParseIntFunc,
	"chomp": stdlib.ChompFunc, "format": stdlib.FormatFunc, "formatlist": stdlib.FormatListFunc,
	"indent": stdlib.IndentFunc, "join": stdlib.JoinFunc, "lower": stdlib.LowerFunc,
	"upper": stdlib.UpperFunc, "regex": stdlib.RegexFunc, "regexall": stdlib.RegexAllFunc,
	"regex_replace": stdlib.RegexReplaceFunc, "replace": stdlib.ReplaceFunc,
	"split": stdlib.SplitFunc, "strlen": stdlib.StrlenFunc, "substr": stdlib.SubstrFunc,
	"title": stdlib.TitleFunc, "trim": stdlib.TrimFunc, "trimprefix": stdlib.TrimPrefixFunc,
	"trimsuffix": stdlib.TrimSuffixFunc, "trimspace": stdlib.TrimSpaceFunc,
	"chunklist": stdlib.ChunklistFunc, "coalesce": stdlib.CoalesceFunc,
	"coalescelist": stdlib.CoalesceListFunc, "compact": stdlib.CompactFunc,
	"concat": stdlib.ConcatFunc, "contains": stdlib.ContainsFunc, "distinct": stdlib.DistinctFunc,
	"element": stdlib.ElementFunc, "flatten": stdlib.FlattenFunc, "keys": stdlib.KeysFunc,
	"length": stdlib.LengthFunc, "lookup": stdlib.LookupFunc, "merge": stdlib.MergeFunc,
	"range": stdlib.RangeFunc, "reverse": stdlib.ReverseListFunc, "slice": stdlib.SliceFunc,
	"sort": stdlib.SortFunc, "values": stdlib.ValuesFunc, "zipmap": stdlib.ZipmapFunc,
	"setunion": stdlib.SetUnionFunc, "setintersection": stdlib.SetIntersectionFunc,
	"setsubtract": stdlib.SetSubtractFunc, "jsonencode": stdlib.JSONEncodeFunc,
	"jsondecode": stdlib.JSONDecodeFunc, "csvdecode": stdlib.CSVDecodeFunc,
	"tostring": stdlib.MakeToFunc(cty.String), "tonumber": stdlib.MakeToFunc(cty.Number),
	"tobool": stdlib.MakeToFunc(cty.Bool), "tolist": stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
	"tomap": stdlib.MakeToFunc(cty.Map(cty.DynamicPseudoType)),
}

// impureFunctions are functions people expect from Terraform or Packer that would make a spec
// evaluate differently on another machine or at another time; each is refused with its reason.
var impureFunctions = map[string]string{
	"env":          "it reads the environment of the machine evaluating the spec",
	"file":         "it reads a file, whose content is not part of the spec",
	"fileexists":   "it looks at the file system of the machine evaluating the spec",
	"fileset":      "it looks at the file system of the machine evaluating the spec",
	"filesha256":   "it reads a file, whose content is not part of the spec",
	"templatefile": "it reads a file, whose content is not part of the spec",
	"abspath":      "it depends on the directory the spec is evaluated in",
	"pathexpand":   "it depends on the home directory of the user evaluating the spec",
	"timestamp":    "it returns the current time",
	"formatdate":   "dates have no place in a reproducible spec",
	"timeadd":      "dates have no place in a reproducible spec",
	"uuid":         "it returns a new random value each time",
	"bcrypt":       "it returns a new random value each time",
	"shell":        "it runs commands on the machine evaluating the spec",
}

// functions returns the function table of an evaluation: the pure functions, guarded so that
// what they build is charged to b; for each impure one, a function that fails saying why it
// is refused; and chargeFunc, which meter's rewritten expressions call.
func functions(b *budget) map[string]function.Function {
	out := make(map[string]function.Function, len(pureFunctions)+len(impureFunctions)+1)
	for k, f := range pureFunctions {
		out[k] = guard(k, f, b)
	}
	out[chargeFunc] = chargeFunction(b)
	for name, why := range impureFunctions {
		msg := fmt.Sprintf("%s() is not allowed in a spec: %s, so the spec's hash and lock would change from one machine or run to the next; pass the value with a variable (--var) instead", name, why)
		out[name] = function.New(&function.Spec{
			VarParam: &function.Parameter{Name: "args", Type: cty.DynamicPseudoType, AllowNull: true, AllowUnknown: true, AllowDynamicType: true},
			Type: func(args []cty.Value) (cty.Type, error) {
				return cty.NilType, fmt.Errorf("%s", msg)
			},
			Impl: func(args []cty.Value, retType cty.Type) (cty.Value, error) {
				return cty.NilVal, fmt.Errorf("%s", msg)
			},
		})
	}
	return out
}

// PureFunctionNames lists the functions a spec may call, sorted (for the documentation).
func PureFunctionNames() []string {
	names := make([]string, 0, len(pureFunctions))
	for k := range pureFunctions {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
