// Package comfypaths writes the files through which ComfyUI finds a runtime root's models and
// custom nodes: extra_model_paths.yaml documents and the root's launcher bin/comfyui.
//
// An Entry is one folder line of a yaml section: ComfyUI's folder name (checkpoints, loras,
// custom_nodes, ...) and one path. Every scalar is emitted by a YAML library, double-quoted,
// so no name can add a key or a section; names and paths that ComfyUI itself would read
// differently (a newline, which ComfyUI splits a value on; a key it pops, base_path or
// is_default; any control character) are refused instead.
//
// How ComfyUI reads the yaml depends on its era (see docs/running.md): from commit b9d9bcb
// (2025-01-11) a relative base_path is taken relative to the yaml's directory; from PR #5847
// (December 2024) a relative entry without base_path is too; before, both are relative to the
// process's working directory. The root's own yaml (RootYAML) is relative, so the root is the
// same bytes at every mount point; what starts ComfyUI (the Launcher, the runner) passes a yaml
// with absolute paths computed at start time, which every era reads the same way.
package comfypaths

import (
	"bytes"
	"fmt"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
)

// Section is the name of the one section of the yaml files runpod-comfy writes.
const Section = "runpod_comfy"

// Entry is one folder line of a section: Folder (ComfyUI's folder name, e.g. "checkpoints"
// or "custom_nodes") is searched in Path.
type Entry struct {
	Folder string
	Path   string
}

// maxLen bounds a name or path (Linux's PATH_MAX).
const maxLen = 4096

// checkText refuses what ComfyUI's loader or a YAML reader would read differently from what
// was meant: empty, not UTF-8, too long, or with a control character (a newline makes two
// paths of one, as ComfyUI splits every value on "\n").
func checkText(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is empty", what)
	case len(s) > maxLen:
		return fmt.Errorf("%s is longer than %d bytes", what, maxLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s %q is not valid UTF-8", what, s)
	}
	for i, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || r == '\ufeff' {
			return fmt.Errorf("%s %q has a control character (%U) at byte %d", what, s, r, i)
		}
	}
	return nil
}

// CheckFolder reports whether name can be a folder key of a section: checkText's rules, and
// not one of the keys ComfyUI's loader pops from a section (base_path, is_default).
func CheckFolder(name string) error {
	if err := checkText("model folder name", name); err != nil {
		return err
	}
	switch name {
	case "base_path", "is_default":
		return fmt.Errorf("model folder name %q is a key ComfyUI's extra_model_paths.yaml reserves", name)
	}
	return nil
}

func scalar(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s, Style: yaml.DoubleQuotedStyle}
}

// YAML renders an extra_model_paths.yaml document with one section (Section): comment (may
// be empty; "# " is added to each line), base_path when base is not empty, then the entries
// in order. A section without entries is an empty mapping, which every ComfyUI era skips
// (an empty document would crash them: they iterate over what the yaml holds).
func YAML(comment, base string, entries []Entry) ([]byte, error) {
	sec := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	if base != "" {
		if err := checkText("base_path", base); err != nil {
			return nil, err
		}
		sec.Content = append(sec.Content, scalar("base_path"), scalar(base))
	}
	seen := map[Entry]bool{}
	for _, e := range entries {
		if err := CheckFolder(e.Folder); err != nil {
			return nil, err
		}
		if err := checkText("path of folder "+e.Folder, e.Path); err != nil {
			return nil, err
		}
		if seen[e] {
			continue
		}
		seen[e] = true
		sec.Content = append(sec.Content, scalar(e.Folder), scalar(e.Path))
	}
	if len(sec.Content) == 0 {
		sec.Style = yaml.FlowStyle
	}
	top := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: []*yaml.Node{scalar(Section), sec}}
	if comment != "" {
		top.HeadComment = comment
	}
	doc := &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{top}}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("extra_model_paths.yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("extra_model_paths.yaml: %w", err)
	}
	return b.Bytes(), nil
}

// RootEntries are the entries of a runtime root relative to the root: models/<folder> for
// each folder, sorted as given, and custom_nodes when nodes is true. Only directories the
// root has are named: ComfyUI lists every custom_nodes path at start (os.listdir) and dies
// on one that does not exist.
func RootEntries(folders []string, nodes bool) []Entry {
	var out []Entry
	for _, f := range folders {
		out = append(out, Entry{Folder: f, Path: path.Join("models", f)})
	}
	if nodes {
		out = append(out, Entry{Folder: "custom_nodes", Path: "custom_nodes"})
	}
	return out
}

// RootYAML is a runtime root's extra_model_paths.yaml: entries relative to the file, without
// base_path, so the root is the same bytes at any mount point. ComfyUI from PR #5847
// (December 2024) on reads it from any working directory; older ComfyUI only with the root as
// its working directory. The launcher and the runner therefore pass absolute paths instead.
func RootYAML(id string, entries []Entry) ([]byte, error) {
	return YAML("Generated by runpod-comfy for version "+id+". Paths are relative to this file.\n"+
		"bin/comfyui and the runner pass ComfyUI the same folders as absolute paths, which every\n"+
		"ComfyUI version reads the same way from any working directory.", "", entries)
}

// Launcher returns bin/comfyui for a root with the given entries (relative to the root, as
// RootEntries gives them). The /bin/sh script finds its own root from its location
// (following symlinks to it), so the root works wherever the volume is mounted, and runs
// <root>/venv/bin/python (else $COMFY_PYTHON, else python3) on <root>/comfyui/main.py with
// its arguments and an extra_model_paths.yaml written at start time on file descriptor 9:
// the entries under base_path <root>, an absolute path, which every ComfyUI era joins the
// same way whatever the working directory. Without /dev/fd it passes the root's own
// extra_model_paths.yaml (relative; see RootYAML).
func Launcher(id string, entries []Entry) (string, error) {
	if err := checkText("version id", id); err != nil {
		return "", err
	}
	body, err := YAML("", "", entries)
	if err != nil {
		return "", err
	}
	// body is `"runpod_comfy": {}` or `"runpod_comfy":` and indented entry lines; insert the
	// start-time base_path as the section's first key.
	first, rest, _ := strings.Cut(string(body), "\n")
	head := strings.TrimSuffix(first, " {}")
	yml := head + "\n  \"base_path\": ${yroot}\n"
	if head == first {
		yml += rest
	}
	// Inside an unquoted here-document only \, $ and ` are special to the shell.
	esc := strings.NewReplacer(`\`, `\\`, "$", `\$`, "`", "\\`")
	lines := strings.Split(strings.TrimSuffix(yml, "\n"), "\n")
	for i, l := range lines {
		if strings.Contains(l, "${yroot}") {
			continue // our own line, whose only shell expansion is the root's quoted path
		}
		lines[i] = esc.Replace(l)
	}
	return `#!/bin/sh
# runpod-comfy launcher for version ` + id + `. It finds its own runtime root, so it works
# wherever the volume is mounted. Python: <root>/venv/bin/python, else $COMFY_PYTHON, else python3.
# ComfyUI gets the root's model and custom node folders as absolute paths on fd 9 (see
# docs/running.md: ComfyUI before 2025-01-11 takes relative paths against its working directory).
set -e
self=$0
case $self in
*/*) ;;
*) self=$(command -v -- "$self") ;;
esac
while [ -L "$self" ]; do
	link=$(readlink -- "$self")
	case $link in
	/*) self=$link ;;
	*) self=$(dirname -- "$self")/$link ;;
	esac
done
root=$(cd -P -- "$(dirname -- "$self")/.." && pwd -P)
if [ -x "$root/venv/bin/python" ]; then
	py=$root/venv/bin/python
elif [ -n "${COMFY_PYTHON:-}" ]; then
	py=$COMFY_PYTHON
else
	py=python3
fi
if [ ! -d /dev/fd ]; then
	exec "$py" "$root/comfyui/main.py" --extra-model-paths-config "$root/extra_model_paths.yaml" "$@"
fi
case $root in
*[[:cntrl:]]* | *'$'*)
	echo "runpod-comfy: the runtime root's path $root has a control character or a \$, which ComfyUI would read differently in extra_model_paths.yaml" >&2
	exit 2
	;;
esac
yroot="'"$(printf '%s\n' "$root" | sed "s/'/''/g")"'"
exec "$py" "$root/comfyui/main.py" --extra-model-paths-config /dev/fd/9 "$@" 9<<RUNPOD_COMFY_YAML
` + strings.Join(lines, "\n") + `
RUNPOD_COMFY_YAML
`, nil
}
