// Package nar reads and writes the Nix ARchive format byte for byte as Nix does
// (docs/design.md section 4), and computes NAR hashes.
//
// Words:
//   - NAR: the canonical serialisation of a file, a symlink or a directory tree: only
//     regular files (with an executable flag, the owner x bit), symlinks (target verbatim) and
//     directories (entries sorted by the raw bytes of their names). No times, owners or xattrs.
//   - NAR hash: sha256 of the NAR, written "sha256:<nix32>" as in narinfo files.
//   - Header: one node of a NAR as the Reader returns it, with an absolute path inside the
//     archive ("/" is the root, then "/bin", "/bin/run").
//   - File listing: the per-file sha256 of a tree (HashFiles), which lets the store name the
//     file whose bytes changed when a NAR hash no longer matches.
package nar
