// Package registry is the Comfy Registry kind: custom nodes installed by registry id and
// version, as `comfy node install <id>@<version>` and ComfyUI-Manager install them.
//
// Words:
//
//   - The registry is the HTTP API at https://api.comfy.org (or a mirror: the base URL is an
//     option, which cmd/ fills from RUNPOD_COMFY_REGISTRY_URL). Client reads three of its
//     endpoints: GET /nodes/{id}/install?version=V (the version ComfyUI-Manager installs, with
//     its downloadUrl), GET /nodes/{id}/versions/{version} and GET /nodes/{id}/versions (every
//     version, an unpaginated JSON array, filtered by statuses=...). The registry needs no
//     credentials and gets none.
//   - A NodeVersion is the registry's object for one published version: version, downloadUrl,
//     status (NodeVersionStatusActive, ...Pending, ...Flagged, ...Deleted, ...Banned),
//     status_reason, deprecated.
//   - Resolving (Client.Pick) turns a spec's version request (internal/semver) into one
//     NodeVersion: an exact version is asked for directly; "latest" and ranges choose the
//     newest active release the request allows. The lock then pins the exact version, its
//     download URL and the archive's sha256, computed from the archive downloaded at resolve
//     time because the registry publishes no hash (specs.RegistryLock).
//   - The archive is a zip, fetched (Fetcher) into ROOT/cache/runpod-comfy/registry/<sha256>.zip
//     and checked against the lock's sha256 every time it is used.
//   - Unpacking (Unpack) is deterministic and refuses what could leave the tree or the disk:
//     absolute names, "..", backslashes, symlinks pointing out of the tree, entries under a file
//     or link, duplicate entries, devices and pipes, more files or bytes than the limits. The
//     store canonicalises modes and times afterwards, so nothing of the archive's metadata but
//     the executable bit reaches the object.
//   - The node is a fixed derivation (Derivation): its store path comes from
//     store.ArchiveFingerprint (the archive's sha256 and the unpacking logic), its NAR hash is
//     recorded in the lock on the first build and checked on every later one, as for git.
package registry
