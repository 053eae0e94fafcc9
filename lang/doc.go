// Package lang reads version specs: versions/<id>.json (schema v2, the historical format) and
// versions/<id>.hcl (the same model in HCL), both through hcl/v2 so that every problem is
// reported with file:line:col.
//
// Words used here:
//
//   - Diagnostic: one problem or remark about a spec, with its position. An error makes the spec
//     invalid; a warning says which quirk of a spec written in the wild was accepted and what
//     was assumed.
//   - Quirk: a spelling found in specs in the wild that has one clear meaning (a branch name in
//     commit, a legacy target_dir, $COMFY_HOME or $MODELS_DIR in a model path, env.COMFY_PYTHON).
//     Quirks are rewritten into their meaning; the resulting specs.Spec never holds one.
//   - Variable, local: HCL only. `variable "x" { default = ... }` is overridden by
//     Options.Vars (--var x=v); `locals { y = ... }` names values computed from variables.
//   - Function: the pure cty standard functions (lower, format, join, ...). Impure functions
//     (env, file, timestamp, uuid, ...) are refused: a spec must evaluate to the same value on
//     every machine, or its hash and lock would drift.
//   - Extends: HCL only. `extends = "<base id>"` reads the base version first and applies this
//     file over it: custom nodes merged by name (attribute by attribute), models by target,
//     comfy and python attribute by attribute, env and options key by key.
//
// The entry points are LoadVersion (by id from a versions directory) and LoadFile (by path).
// FormatJSON and FormatHCL write an evaluated spec back out (convert), and ImportSnapshot turns
// a ComfyUI-Manager snapshot into a starter spec.
package lang
