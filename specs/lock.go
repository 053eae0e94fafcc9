package specs

// LockVersion is the lock format this package writes. A lock of another version is refused
// loudly rather than half-read.
const LockVersion = 1

// Lock is the resolved form of a Spec: every ref pinned to a commit, every model to a checksum
// and size, every Python package to one file with its sha256. Building from a lock needs no
// resolution and no index. Store paths are base names ("<digest>-<name>"), never absolute, so a
// lock is valid at any mount point.
//
// Hashes use one spelling throughout: NAR hashes "sha256:<nix32>" (as in a narinfo), file
// checksums "sha256:<64 hex>" or "md5:<32 hex>" (as in a spec).
type Lock struct {
	LockVersion int    `json:"lock_version"`
	VersionID   string `json:"version_id"`
	// SpecHash is specs.Hash of the evaluated spec the lock was resolved from.
	SpecHash string `json:"spec_hash"`

	Comfy       GitLock     `json:"comfy"`
	CustomNodes []NodeLock  `json:"custom_nodes"`
	Models      []ModelLock `json:"models"`
	Python      *PythonLock `json:"python,omitempty"`
	// Env is the spec's env, passed to ComfyUI by the runner through the runtime root's
	// manifest. It is in the lock so that the root is a function of the lock alone.
	Env map[string]string `json:"env,omitempty"`
}

// GitLock pins one git source. In a registry node's NodeLock only NarHash and StorePath are
// set (repo and commit are then left out of the file).
type GitLock struct {
	Repo       string `json:"repo,omitempty"`
	Ref        string `json:"ref,omitempty"`
	Commit     string `json:"commit,omitempty"`
	Submodules bool   `json:"submodules,omitempty"`
	// NarHash is recorded the first time the source is exported; a later export whose NAR hash
	// differs fails the build.
	NarHash   string `json:"nar_hash,omitempty"`
	StorePath string `json:"store_path,omitempty"`
}

// NodeLock pins one custom node. Name is its directory under custom_nodes/. A git node pins
// its GitLock; a registry node its Registry (and records NarHash and StorePath in GitLock as a
// git node does).
type NodeLock struct {
	Name string `json:"name"`
	GitLock
	Registry            *RegistryLock `json:"registry,omitempty"`
	InstallRequirements bool          `json:"install_requirements"`
	Writable            bool          `json:"writable,omitempty"`
}

// RegistryLock pins one Comfy Registry node version and its archive.
type RegistryLock struct {
	// ID is the registry id, Request the spec's version request ("^8.8.0", "latest").
	ID      string `json:"id"`
	Request string `json:"request"`
	// Version is the exact version Request resolved to.
	Version string `json:"version"`
	// URL is the version's downloadUrl as the registry gave it.
	URL string `json:"url"`
	// SHA256 is the archive's checksum, "sha256:<64 hex>"; computed when the archive was
	// downloaded at resolve time (the registry publishes none) and checked on every build.
	SHA256 string `json:"sha256"`
}

// IsRegistry reports whether n is a registry node.
func (n NodeLock) IsRegistry() bool { return n.Registry != nil }

// Pin is how messages and diffs name what n is pinned to: "<id>@<version>" for a registry
// node, the commit for a git node.
func (n NodeLock) Pin() string {
	if n.Registry != nil {
		return n.Registry.ID + "@" + n.Registry.Version
	}
	return n.Commit
}

// ModelLock pins one model file.
type ModelLock struct {
	// Target is the path under the runtime root's models/ directory, e.g.
	// "checkpoints/sd_xl_base_1.0.safetensors".
	Target string `json:"target"`
	// Source is the spec's source with any credentials removed.
	Source   string `json:"source"`
	Checksum string `json:"checksum"`
	Size     int64  `json:"size,omitempty"`
	// ChecksumFrom says where the checksum came from: "spec", "source" (HF etag, Civitai
	// metadata) or "first-download" (trusted on first use).
	ChecksumFrom string `json:"checksum_from,omitempty"`
	StorePath    string `json:"store_path,omitempty"`
}

// PythonLock pins the interpreter and every package of the venv.
type PythonLock struct {
	Interpreter PythonIdentity `json:"interpreter"`
	// Installer names the tool and version that resolved the lock, e.g. "pip 23.2.1".
	Installer string        `json:"installer,omitempty"`
	Packages  []PackageLock `json:"packages"`
	// SystemSitePackages lists the distributions found in the interpreter's own site-packages
	// when the spec sets python.system_site_packages.
	SystemSitePackages []Distribution `json:"system_site_packages,omitempty"`
	// InputsHash is the sha256 of everything the resolution read (requirement lines with
	// their origins, python settings, interpreter, site-packages); a later resolve with the
	// same inputs reuses Packages as they are.
	InputsHash string `json:"inputs_hash,omitempty"`
}

// PythonIdentity is what makes two interpreters interchangeable for a venv.
type PythonIdentity struct {
	Version        string `json:"version"`
	Implementation string `json:"implementation"`
	ABI            string `json:"abi"`
	Platform       string `json:"platform"`
	Path           string `json:"path"`
}

// PackageLock is one pinned distribution file.
type PackageLock struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	URL      string `json:"url"`
	Filename string `json:"filename,omitempty"`
	SHA256   string `json:"sha256"`
	// RequestedBy lists the requirement sources that asked for the package directly, e.g.
	// "comfyui/requirements.txt:3" or "spec:python.packages[0]"; empty for a dependency.
	RequestedBy []string `json:"requested_by,omitempty"`
	// Wheel is, for a package locked as a source archive (an sdist), the wheel it was built
	// into (pip wheel) on the first build: later builds use that wheel and fail when a rebuild
	// of the sdist gives other bytes. Nil for a wheel.
	Wheel *BuiltWheel `json:"wheel,omitempty"`
}

// BuiltWheel is the wheel an sdist was built into.
type BuiltWheel struct {
	Filename string `json:"filename"`
	SHA256   string `json:"sha256"`
}

// Distribution is a name and version found installed.
type Distribution struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}
