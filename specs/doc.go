// Package specs is the data model of runpod-comfy: what a version declares (Spec), what it
// resolved to (Lock) and what a built runtime root holds (Manifest), with the rules every spec
// obeys whatever language it was written in.
//
// Words used throughout:
//
//   - Spec: one version of a ComfyUI environment, read from versions/<id>.json (schema v2) or
//     versions/<id>.hcl by package lang. A Spec here is always the evaluated form: variables,
//     locals, functions and extends applied, every accepted quirk rewritten into its meaning.
//   - Version id: the spec's name, equal to its file name without the suffix; it names the
//     runtime root (builds/comfy-<id>) and the lock (<id>.lock.json).
//   - Ref: a branch or tag (or "HEAD") still to be resolved to a commit.
//   - Commit: a full git object id, 40 hex digits (SHA-1) or 64 (SHA-256).
//   - Target: where a model goes, as a slash-separated path under the runtime root's models/
//     directory (ModelTarget).
//   - Checksum: "sha256:<64 hex>" or "md5:<32 hex>".
//   - Hash: the spec hash, "sha256:<64 hex>" of the canonical JSON of an evaluated spec; a lock
//     records the hash of the spec it was resolved from.
//   - Lock: the resolved form of a spec (every ref pinned), written stably so that a diff of two
//     locks shows only real changes.
//   - Pos: where something was declared (file:line:col), kept for diagnostics and never part of
//     a hash.
package specs
