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
//   - Venv: the output of the venv derivation, input-addressed from the python derivation,
//     the installer, the pins (name, version, filename, sha256; not URLs) and, with
//     system_site_packages, the distributions found there. It is built at its final store
//     path under the store lease (store.AddOptions.AtFinalPath).
//
// Building a venv (Install):
//
//  1. The locked files are put into the wheel cache (Fetch): from the cache, a file:// URL or
//     a local find_links folder, else downloaded; each checked against its sha256. Offline,
//     a file found nowhere local fails the build naming every such file.
//  2. `python -m venv --without-pip --prompt venv` at the final path: the venv carries no pip,
//     so none of pip's own files (with their build-dependent bytes) are in it.
//  3. The base interpreter's pip installs into it (`pip --python <venv>/bin/python install
//     --no-deps --require-hashes --no-index --find-links <links> --no-compile`) from a folder
//     of links to exactly the locked files, named by a requirements file name==version
//     --hash=sha256:...: no resolution, no index, no direct_url.json.
//  4. Relocate: pyvenv.cfg loses its command line (home and executable name the base
//     interpreter, outside the store and part of its identity); entry scripts become a
//     /bin/sh trampoline running the python beside the script (realpath of $0), and their
//     RECORD lines get the new hash; bin/activate computes its own location (bash, zsh);
//     activate.csh, activate.fish and Activate.ps1 are removed; __pycache__ is removed and
//     rebuilt by compileall in one process, folders in sorted order, with unchecked-hash
//     pycs whose recorded source paths are relative to the venv's store name, under
//     PYTHONHASHSEED=0 and SOURCE_DATE_EPOCH=315532800; finally any file still holding the
//     venv's absolute path fails the build.
//
// The store then canonicalises, hashes and registers the venv; an error at any step
// registers nothing. Children run with a minimal environment (PIP_CONFIG_FILE=/dev/null, no
// user site) plus what PassEnv picks (proxies, certificates): a user's pip.conf or
// PIP_FIND_LINKS cannot change a lock or a venv.
package python
