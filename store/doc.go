// Package store is the content-addressed store of runpod-comfy on a shared volume
// (docs/design.md sections 3-5 and 9). It imports nothing of ours but
// internal/.
//
// Words:
//
//   - Store: ROOT/store, holding objects, with .meta (metadata), .locks (leases), .roots
//     (temporary roots), .tmp (staging) and .trash (deletion staging). ROOT/builds holds the
//     roots.
//   - Object: an immutable file, symlink or directory tree at ROOT/store/<digest>-<name>,
//     canonicalised (mtime 1, modes 0444/0555, no setuid, no hard links, relative symlinks).
//   - Path: an object's base name "<digest>-<name>", never with the store directory, so the
//     store is relocatable (mounted at /workspace on pods and /runpod-volume on serverless).
//     Every API that names objects takes and returns Paths (Meta.References, LeaseRecord,
//     TempRoot.Paths, GCResult.Kept, VerifyReport.Unregistered, ObjectInfo.Referrers, the
//     cache's NarInfo.References); a Path is parsed where it is read from a file, so a
//     metadata file or narinfo with a malformed reference is refused as a whole.
//   - Digest: the 32-character nix32 hash part of a Path: nix32(xorfold20(sha256(fingerprint))).
//   - Fingerprint: the string an object's Digest is hashed from. It holds no store directory
//     and starts with the scheme word and version FingerprintScheme ("runpod-comfy/1"):
//     "runpod-comfy/1:fixed:<algo>:<hex>:<name>" for content-addressed files (models),
//     "runpod-comfy/1:git:<commit>:<true|false>:<name>" for git trees (the bool says whether
//     submodules are included), "runpod-comfy/1:archive:<unpack>:sha256:<hex>:<name>" for
//     trees unpacked from an archive (Comfy Registry nodes), "runpod-comfy/1:drv:<sha256 hex of the canonical derivation
//     JSON>:<name>" for input-addressed objects (python, venv, root). Hex is lowercase.
//   - Meta: an object's metadata, .meta/<digest>.json, a narinfo superset in JSON (path,
//     nar_hash "sha256:<nix32>", nar_size, references as sorted base names, kind, derivation,
//     ca, source "built" or "substituted:<url>", created_at). Writing it, atomically and only
//     after every reference's metadata exists, is the commit point: an object without
//     metadata is not valid, whatever is on disk. A directory object also has a file listing
//     .meta/<digest>.files (one JSON line per node with each file's sha256) so that verify can
//     name the file whose bytes changed.
//   - Lease: .locks/<digest>.lease, created with O_CREAT|O_EXCL, holding host, pid, started,
//     expires; renewed while held; an expired lease (or one whose holder's process is gone on
//     this host) is broken by renaming it to a unique tombstone, so only one breaker wins.
//     .locks/gc.lease is the GC lease.
//   - Root: ROOT/builds/comfy-<id>, a relative symlink to a runtime root object. GC keeps
//     everything reachable from roots.
//   - Generation: ROOT/builds/.generations/comfy-<id>-<n>, each object a root ever named, for
//     rollback; also GC roots until pruned (--keep-generations).
//   - TempRoot: .roots/<host>-<pid>-<rand>.json listing objects a running build or worker
//     uses (run-ui, run-handler and serve hold one for the root ComfyUI runs from), with an
//     expiry refreshed until it is closed.
//   - Debris: what a crash leaves: objects without metadata, stages under .tmp, entries of
//     .trash. GC removes debris older than the grace window with no live lease.
//
// Adding an object is Add: it makes a Path valid exactly once across processes and hosts,
// calling a MakeFunc (which makes the object's content at a path it is given) under the
// object's lease; AddOptions describe the object. AddKnown is Add with a MakeKnownFunc, which
// also returns the KnownNar of what it made (a model hashed while it downloaded), so that a
// large file is not read twice. A NarHashMismatchError is an object whose NAR hash is not
// AddOptions.ExpectNarHash; nothing is registered then.
// A binary cache registers a substituted object with Add too: a MakeFunc that restores a
// NAR into out (nar.Restore), AddOptions.ExpectNarHash set to the narinfo's NarHash (which the
// cache checked against the lock), AddOptions.Fingerprint (a model's content is checked
// against it before registration) and AddOptions.Source "substituted:<cache url>".
//
// Metadata that exists but cannot be read (a *MetaError, ErrCorruptMeta) makes only its
// object not valid: List, Verify and GC report it and go on; GC keeps it; Add makes it again.
package store
