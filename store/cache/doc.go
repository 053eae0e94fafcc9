// Package cache is a Nix-style binary cache for the store: it pushes store objects into a
// cache and substitutes them back into another store, so that an object is built once and
// fetched everywhere else.
//
// Words used in this package:
//
//   - Cache: a folder (file:///path) or a GCS prefix (gs://bucket/prefix) laid out as Nix lays
//     out a binary cache: nix-cache-info at the top, one <digest>.narinfo per object and the
//     (compressed) NAR of each object under nar/.
//   - Backend: the storage under a cache: get, stat and atomic put of named blobs. FileBackend
//     and GCSBackend are the two implementations.
//   - NarInfo: the small text file describing one object: its store path (under the logical
//     StoreDir), the URL, compression, hash and size of the NAR file, the NAR hash and size,
//     the references and the signatures. Keys are written in Nix's order.
//   - StoreDir: the logical store dir "/runpod-comfy/store" written in every narinfo StorePath
//     and in nix-cache-info. Our store is relocatable and no fingerprint contains a store dir,
//     so the narinfo needs a fixed name only to be a valid Nix narinfo; the object's identity is
//     its base name "<digest>-<name>".
//   - Fingerprint: "1;<StorePath>;<NarHash>;<NarSize>;<comma-separated full reference paths>",
//     the string an ed25519 signature covers (Nix's format).
//   - SecretKey, PublicKey: ed25519 keys in Nix's "name:base64" text form.
//   - Push: upload the closure of some objects; NARs first, then each narinfo once its NAR
//     and the narinfos of all its references are in place, so a visible narinfo implies a
//     complete closure.
//   - Substituter: fetches an object from the first cache that has it, checks signature, file
//     hash and NAR hash while streaming, and registers it in the store through store.Add
//     with Source "substituted:<cache url>".
package cache
