package cli

import (
	"fmt"
	"github.com/runpod-comfy/runpod-comfy/internal/layout"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// The settings the seed tool (gen4sp/runpodComfyUICtrlVersion) read from the environment. Each
// is either honoured (with the meaning it had there) or reported, once per command, with what
// replaces it: none is silently ignored. See docs/migrating.md.

// seedIgnored are seed settings runpod-comfy does not use, with their replacement.
var seedIgnored = map[string]string{
	"COMFY_REPO":              "the spec's comfy.repo",
	"COMFY_REF":               "the spec's comfy.ref or comfy.commit",
	"COMFY_VENV_MODE":         "nothing: the venv is built once into the store from the lock",
	"COMFY_USE_SYSTEM_PYTHON": "the spec's python.system_site_packages (and env.COMFY_PYTHON for the interpreter)",
	"COMFY_ENABLE_CACHE":      "nothing: models are always kept once in the store on the volume",
	"COMFY_CACHE":             "nothing: models are always kept once in the store on the volume",
	"COMFY_MODELS_TIMEOUT":    "nothing: downloads retry with backoff and resume (docs/models.md)",
	"COMFY_STARTUP_TIMEOUT":   "RUNPOD_INIT_TIMEOUT (serve) or --ready-timeout",
	"COMFY_RESPOND_TIMEOUT":   "the job's timeout set on the RunPod endpoint",
}

// seedEnv is what the seed settings of the environment come to.
type seedEnv struct {
	// AdoptDirs are the models directories whose files are adopted into the store:
	// $MODELS_DIR, else ROOT/models; and $COMFY_HOME/models.
	AdoptDirs []string
	// Offline is COMFY_OFFLINE (or COMFY_OFFLINE_MODE) set to 1/true/yes/on.
	Offline bool
	// Notes say, for each seed setting that is set, what became of it.
	Notes []string
}

// readSeedEnv reads the seed tool's settings for ROOT root.
func readSeedEnv(root string) seedEnv {
	var e seedEnv
	add := func(dir string) {
		if dir == "" {
			return
		}
		if abs, err := filepath.Abs(dir); err == nil {
			dir = abs
		}
		for _, d := range e.AdoptDirs {
			if d == dir {
				return
			}
		}
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			e.AdoptDirs = append(e.AdoptDirs, dir)
		}
	}
	if md := os.Getenv("MODELS_DIR"); md != "" {
		add(md)
		e.Notes = append(e.Notes, fmt.Sprintf("MODELS_DIR=%s: models already there (at their target paths) are adopted into the store instead of downloaded; the runtime root's models/ replaces it for ComfyUI", md))
	} else {
		add(filepath.Join(root, "models"))
	}
	if ch := os.Getenv("COMFY_HOME"); ch != "" {
		add(filepath.Join(ch, "models"))
		e.Notes = append(e.Notes, fmt.Sprintf("COMFY_HOME=%s: not used to run ComfyUI, which runs from ROOT/builds/comfy-<id> (ROOT is --root or RUNPOD_COMFY_ROOT, now %s); models in $COMFY_HOME/models are adopted", ch, root))
	}
	for _, k := range []string{"COMFY_OFFLINE", "COMFY_OFFLINE_MODE"} {
		if v := strings.ToLower(strings.TrimSpace(os.Getenv(k))); v != "" {
			switch v {
			case "1", "true", "yes", "on":
				e.Offline = true
				e.Notes = append(e.Notes, k+"="+v+": builds run offline, as with --offline")
			case "0", "false", "no", "off":
			default:
				e.Notes = append(e.Notes, fmt.Sprintf("%s=%q is not 1/true/yes/on: not offline (the seed tool read it the same way)", k, v))
			}
		}
	}
	if br := os.Getenv("COMFY_BUILDS_ROOT"); br != "" {
		if filepath.Clean(br) != filepath.Join(root, "builds") {
			e.Notes = append(e.Notes, fmt.Sprintf("COMFY_BUILDS_ROOT=%s: not used: roots are always ROOT/builds/comfy-<id> (%s); set RUNPOD_COMFY_ROOT=%s (or --root) to move them", br, filepath.Join(root, "builds"), filepath.Dir(filepath.Clean(br))))
		}
	}
	if cr := os.Getenv("COMFY_CACHE_ROOT"); cr != "" {
		if filepath.Clean(cr) != layout.New(root).Cache() {
			e.Notes = append(e.Notes, fmt.Sprintf("COMFY_CACHE_ROOT=%s: not used: locks, git mirrors and downloads are always under ROOT/cache/runpod-comfy (%s); set RUNPOD_COMFY_ROOT (or --root) to move them", cr, layout.New(root).Cache()))
		}
	}
	var names []string
	for k := range seedIgnored {
		if os.Getenv(k) != "" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		e.Notes = append(e.Notes, fmt.Sprintf("%s is a setting of the seed tool and is not used: its replacement is %s", k, seedIgnored[k]))
	}
	return e
}

var seedNotesOnce sync.Once

// printSeedNotes prints the notes of env once per process, as warnings.
func printSeedNotes(w io.Writer, env seedEnv) {
	seedNotesOnce.Do(func() {
		for _, n := range env.Notes {
			fmt.Fprintf(w, "warning: %s\n", n)
		}
	})
}
