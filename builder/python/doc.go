// Package python is the Python side of runpod-comfy: it chooses and identifies the
// interpreter, gathers every requirement of a version, resolves them together into the lock
// with pip, and builds the python and venv kinds of derivation (docs/design.md sections 6 and 7,
// docs/python.md).
//
// Words:
//
//   - Interpreter: the base Python a venv is made from, chosen by python.version (python3.X on
//     PATH), else env.COMFY_PYTHON, else python3. Its identity (specs.PythonIdentity: version,
//     implementation, ABI and platform tags of its first compatible wheel tag, resolved path of
//     the base executable) is the python derivation, so a changed base image gives a new venv
//     instead of a silently broken one.
//   - Source: a tree whose requirements.txt is gathered (ComfyUI's or one node's), read through
//     a function so that builder can read it straight from a git mirror at the locked commit.
//   - Requirement: one requirement line with its Origin (file and line, or spec field).
//     Requirements files may include others (-r, -c) inside the same tree; index options in
//     them are kept as extra indexes; editable, VCS and bare-URL requirements are refused
//     because they cannot be pinned to a file with a sha256.
//   - Resolution: one `pip install --dry-run --report` over all requirements at once, with the
//     spec's constraints as constraints (-c), and --ignore-installed unless
//     system_site_packages, where every installed distribution becomes a constraint
//     name===version instead. pip runs without --quiet because it prints the cause of a
//     conflict at info level; its output is parsed, never shown raw. Each reported file
//     becomes a specs.PackageLock with its exact URL (credentials removed), file name, sha256
//     and requested_by origins. A failure is a *ResolutionError naming, per project, who wants
//     what with the file and line. (uv is not used, even when on PATH: not implemented yet.)
//   - Wheel cache: ROOT/cache/runpod-comfy/pip, files at files/<sha256>/<filename>, written
//     only after their sha256 matched the lock; pip's own HTTP cache (resolution) is in http/.
//   - Package object: one installed distribution (kind python-package), input-addressed from
//     the python derivation and the pin (name, version, filename, sha256; not URLs): the wheel
//     installed by InstallWheel (PEP 427, our own installer; no pip) into the object as a venv
//     prefix, bytecode compiled by the interpreter in one process per package as
//     unchecked-hash pycs recording prefix-relative paths (the same bytes in every venv and
//     every ROOT), RECORD, and wheel.json naming the wheel installed. An sdist is built into
//     a wheel once by pip wheel; the lock records that wheel (PackageLock.Wheel).
//   - Venv: the output of the venv derivation, input-addressed from the python derivation,
//     every package object and, with system_site_packages, the distributions found there.
//     It is built at its final store path under the store lease (store.AddOptions.AtFinalPath):
//     `python -m venv --without-pip --prompt venv` (the interpreter layer), made relocatable
//     (pyvenv.cfg loses its command line; bin/activate computes its own location; the csh,
//     fish and PowerShell variants are removed; none of its own files may hold its path),
//     then every file of every package object hard-linked at the same relative path (copied
//     where the filesystem refuses links, said once). The store keeps those links
//     (store.AddOptions.LinksFromReferences) and the venv references its packages, so GC,
//     verify, check and the binary cache follow them; the scheduler composes a venv rather
//     than substituting it (drv.Derivation.LinksInputs).
//
// Children run with a minimal environment (PIP_CONFIG_FILE=/dev/null, no user site) plus what
// PassEnv picks (proxies, certificates): a user's pip.conf or PIP_FIND_LINKS cannot change a
// lock or a venv.
package python
