package specs

// ManifestVersion is the manifest.json format of runtime roots written by this package.
const ManifestVersion = 1

// Manifest is manifest.json at the top of a runtime root: what the root holds, so that the
// runner, diff and people can read a root without its spec. Store paths are base names; the
// runtime root's own entries are relative symlinks:
//
//	comfyui -> ../<digest>-comfyui
//	custom_nodes/<name> -> ../../<digest>-<name>
//	models/<subdir>/<file> -> ../../../<digest>-<file>
//	venv -> ../<digest>-venv
//	extra_model_paths.yaml, bin/comfyui (launcher), manifest.json
type Manifest struct {
	ManifestVersion int    `json:"manifest_version"`
	VersionID       string `json:"version_id"`

	Comfy ManifestComfy `json:"comfy"`
	// CustomNodes are sorted by name, Models by target.
	CustomNodes []ManifestNode  `json:"custom_nodes"`
	Models      []ManifestModel `json:"models"`
	// Venv is the venv's store path, empty when the version has none.
	Venv string `json:"venv,omitempty"`
	// Env is the spec's env (from the lock), passed to ComfyUI by the runner.
	Env map[string]string `json:"env,omitempty"`
	// ModelsSkipped is true when the root was built with skip_models.
	ModelsSkipped bool `json:"models_skipped,omitempty"`
}

// ManifestComfy describes the ComfyUI checkout of a root.
type ManifestComfy struct {
	Commit    string `json:"commit"`
	StorePath string `json:"store_path"`
	// Flags are the command-line flags the pinned checkout supports, read from its
	// comfy/cli_args.py at build time (e.g. "--output-directory", "--database-url").
	Flags []string `json:"flags"`
}

// ManifestNode describes one custom node of a root.
type ManifestNode struct {
	Name string `json:"name"`
	// Commit is a git node's commit; Registry and Version name a registry node's version.
	Commit    string `json:"commit,omitempty"`
	Registry  string `json:"registry,omitempty"`
	Version   string `json:"version,omitempty"`
	StorePath string `json:"store_path"`
	Writable  bool   `json:"writable,omitempty"`
}

// ManifestModel describes one model of a root.
type ManifestModel struct {
	Target    string `json:"target"`
	StorePath string `json:"store_path"`
	Checksum  string `json:"checksum"`
	Size      int64  `json:"size"`
}
