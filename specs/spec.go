package specs

import "strconv"

// SchemaVersion is the only spec schema this package reads.
const SchemaVersion = 2

// Spec is one version of a ComfyUI environment, as declared in versions/<id>.json (schema v2) or
// versions/<id>.hcl. It is the evaluated form: variables, locals, functions and extends have
// been applied by package lang, and every accepted quirk has been rewritten into its clear
// meaning (a branch in commit became Ref, target_dir became Name, and so on).
type Spec struct {
	SchemaVersion int               `json:"schema_version"`
	VersionID     string            `json:"version_id"`
	Comfy         Comfy             `json:"comfy"`
	CustomNodes   []CustomNode      `json:"custom_nodes,omitempty"`
	Models        []Model           `json:"models,omitempty"`
	Python        *Python           `json:"python,omitempty"`
	Env           map[string]string `json:"env,omitempty"`
	Options       Options           `json:"options,omitzero"`

	// Pos is where the spec was read from (file only for a whole spec).
	Pos Pos `json:"-"`
}

// Comfy pins ComfyUI itself.
type Comfy struct {
	Repo   string `json:"repo"`
	Ref    string `json:"ref,omitempty"`
	Commit string `json:"commit,omitempty"`
	// InstallRequirements, when false, leaves ComfyUI's requirements.txt to the base image.
	InstallRequirements *bool `json:"install_requirements,omitempty"`

	Pos Pos `json:"-"`
}

// CustomNode is one custom node: fetched from git by commit (Repo) or from the Comfy Registry
// by id and version (Registry); exactly one of the two is set. Name is the directory name
// under custom_nodes/; lang fills it from the repository URL, or with the registry id, when
// the spec leaves it out.
type CustomNode struct {
	Name   string `json:"name,omitempty"`
	Repo   string `json:"repo,omitempty"`
	Ref    string `json:"ref,omitempty"`
	Commit string `json:"commit,omitempty"`
	// Registry is the node's Comfy Registry id (lowercase), e.g. "comfyui-impact-pack".
	Registry string `json:"registry,omitempty"`
	// Version is what the spec asks of the registry: an exact version, a range or "latest"
	// (internal/semver.ParseRequest); resolved once into the lock.
	Version             string `json:"version,omitempty"`
	InstallRequirements *bool  `json:"install_requirements,omitempty"`
	Writable            bool   `json:"writable,omitempty"`
	Submodules          bool   `json:"submodules,omitempty"`

	Pos Pos `json:"-"`
}

// Model is one model file placed under the runtime root's models/ directory.
type Model struct {
	Source       string `json:"source"`
	TargetSubdir string `json:"target_subdir,omitempty"`
	TargetPath   string `json:"target_path,omitempty"`
	Name         string `json:"name,omitempty"`
	// Checksum is "sha256:<64 hex>" or "md5:<32 hex>"; empty means "take it from the source's
	// metadata, else trust on first use".
	Checksum string `json:"checksum,omitempty"`

	Pos Pos `json:"-"`
}

// Python declares the interpreter and the packages of the version's venv.
type Python struct {
	Version            string   `json:"version,omitempty"`
	Packages           []string `json:"packages,omitempty"`
	IndexURL           string   `json:"index_url,omitempty"`
	ExtraIndexURLs     []string `json:"extra_index_urls,omitempty"`
	FindLinks          []string `json:"find_links,omitempty"`
	Constraints        []string `json:"constraints,omitempty"`
	SystemSitePackages bool     `json:"system_site_packages,omitempty"`

	Pos Pos `json:"-"`
}

// Options are build switches stored with the spec.
type Options struct {
	Offline      bool     `json:"offline,omitempty"`
	SkipModels   bool     `json:"skip_models,omitempty"`
	Substituters []string `json:"substituters,omitempty"`
	// DownloadConnections caps the connections one model file is downloaded over (1 to
	// MaxDownloadConnections; 0 means the default, 8). The build flag
	// --download-connections overrides it. It tunes how models are fetched, not what is
	// built: it is left out of the spec hash.
	DownloadConnections int `json:"download_connections,omitempty"`
}

// MaxDownloadConnections is the largest options.download_connections.
const MaxDownloadConnections = 64

// Pos is a position in a spec file, 1-based. The zero Pos means "unknown".
type Pos struct {
	File string
	Line int
	Col  int
}

// String formats p as file:line:col, leaving out what is unknown.
func (p Pos) String() string {
	switch {
	case p.File == "":
		return ""
	case p.Line == 0:
		return p.File
	default:
		return p.File + ":" + strconv.Itoa(p.Line) + ":" + strconv.Itoa(p.Col)
	}
}
