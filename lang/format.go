package lang

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/runpod-comfy/runpod-comfy/specs"
)

// FormatJSON writes s as a schema v2 JSON spec: two-space indentation, fields in the order of
// the schema, a trailing newline. Reading the result back gives a spec with the same
// specs.Hash.
func FormatJSON(s *specs.Spec) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return nil, fmt.Errorf("encoding spec: %w", err)
	}
	return buf.Bytes(), nil
}

// FormatHCL writes s as an HCL spec: comfy, one custom_node block per node labelled with its
// name, one model block per model labelled with its target, python, env and options. Reading
// the result back gives a spec with the same specs.Hash. Strings are escaped so that "${" and
// "%{" stay literal.
func FormatHCL(s *specs.Spec) ([]byte, error) {
	f := hclwrite.NewEmptyFile()
	body := f.Body()
	body.SetAttributeValue("schema_version", cty.NumberIntVal(int64(s.SchemaVersion)))
	body.SetAttributeValue("version_id", cty.StringVal(s.VersionID))

	body.AppendNewline()
	cb := body.AppendNewBlock("comfy", nil).Body()
	setString(cb, "repo", s.Comfy.Repo)
	setString(cb, "ref", s.Comfy.Ref)
	setString(cb, "commit", s.Comfy.Commit)
	setBoolPtr(cb, "install_requirements", s.Comfy.InstallRequirements)

	for _, n := range s.CustomNodes {
		body.AppendNewline()
		nb := body.AppendNewBlock("custom_node", []string{n.Name}).Body()
		setString(nb, "repo", n.Repo)
		setString(nb, "ref", n.Ref)
		setString(nb, "commit", n.Commit)
		setString(nb, "registry", n.Registry)
		setString(nb, "version", n.Version)
		setBoolPtr(nb, "install_requirements", n.InstallRequirements)
		setBool(nb, "writable", n.Writable)
		setBool(nb, "submodules", n.Submodules)
	}
	for _, m := range s.Models {
		label, err := specs.ModelTarget(m)
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", m.Source, err)
		}
		body.AppendNewline()
		mb := body.AppendNewBlock("model", []string{label}).Body()
		setString(mb, "source", m.Source)
		setString(mb, "target_subdir", m.TargetSubdir)
		setString(mb, "target_path", m.TargetPath)
		setString(mb, "name", m.Name)
		setString(mb, "checksum", m.Checksum)
	}
	if p := s.Python; p != nil {
		body.AppendNewline()
		pb := body.AppendNewBlock("python", nil).Body()
		setString(pb, "version", p.Version)
		setList(pb, "packages", p.Packages)
		setString(pb, "index_url", p.IndexURL)
		setList(pb, "extra_index_urls", p.ExtraIndexURLs)
		setList(pb, "find_links", p.FindLinks)
		setList(pb, "constraints", p.Constraints)
		setBool(pb, "system_site_packages", p.SystemSitePackages)
	}
	if len(s.Env) > 0 {
		body.AppendNewline()
		keys := make([]string, 0, len(s.Env))
		for k := range s.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		vals := map[string]cty.Value{}
		for _, k := range keys {
			vals[k] = cty.StringVal(s.Env[k])
		}
		body.SetAttributeValue("env", cty.ObjectVal(vals))
	}
	o := s.Options
	if o.Offline || o.SkipModels || len(o.Substituters) > 0 || o.DownloadConnections > 0 {
		body.AppendNewline()
		ob := body.AppendNewBlock("options", nil).Body()
		setBool(ob, "offline", o.Offline)
		setBool(ob, "skip_models", o.SkipModels)
		setList(ob, "substituters", o.Substituters)
		if o.DownloadConnections > 0 {
			ob.SetAttributeValue("download_connections", cty.NumberIntVal(int64(o.DownloadConnections)))
		}
	}
	return hclwrite.Format(f.Bytes()), nil
}

func setString(b *hclwrite.Body, name, v string) {
	if v != "" {
		b.SetAttributeValue(name, cty.StringVal(v))
	}
}

func setBool(b *hclwrite.Body, name string, v bool) {
	if v {
		b.SetAttributeValue(name, cty.True)
	}
}

func setBoolPtr(b *hclwrite.Body, name string, v *bool) {
	if v != nil {
		b.SetAttributeValue(name, cty.BoolVal(*v))
	}
}

func setList(b *hclwrite.Body, name string, vs []string) {
	if vs == nil {
		return
	}
	if len(vs) == 0 {
		b.SetAttributeValue(name, cty.ListValEmpty(cty.String))
		return
	}
	vals := make([]cty.Value, len(vs))
	for i, v := range vs {
		vals[i] = cty.StringVal(v)
	}
	b.SetAttributeValue(name, cty.TupleVal(vals))
}

// SetVersionID returns src, a spec file of the language its path's suffix says, with its
// version_id set to id and nothing else changed (comments, layout and key order kept). An
// HCL spec without version_id gets none (its file name gives it); a JSON spec must have one.
func SetVersionID(path string, src []byte, id string) ([]byte, error) {
	switch {
	case strings.HasSuffix(path, ".hcl"):
		f, hd := hclwrite.ParseConfig(src, path, hcl.InitialPos)
		if hd.HasErrors() {
			return nil, &SpecError{Diags: convertHCL(hd)}
		}
		if f.Body().GetAttribute("version_id") != nil {
			f.Body().SetAttributeValue("version_id", cty.StringVal(id))
		}
		return f.Bytes(), nil
	case strings.HasSuffix(path, ".json"):
		f, hd := hclparse.NewParser().ParseJSON(src, path)
		if hd.HasErrors() {
			return nil, &SpecError{Diags: convertHCL(hd)}
		}
		content, _, hd := f.Body.PartialContent(&hcl.BodySchema{Attributes: attrSchema("version_id")})
		if hd.HasErrors() {
			return nil, &SpecError{Diags: convertHCL(hd)}
		}
		a := content.Attributes["version_id"]
		if a == nil {
			return nil, fmt.Errorf("%s has no version_id to rewrite", path)
		}
		r := a.Expr.Range()
		lit, err := json.Marshal(id)
		if err != nil {
			return nil, err
		}
		out := append([]byte{}, src[:r.Start.Byte]...)
		out = append(out, lit...)
		return append(out, src[r.End.Byte:]...), nil
	default:
		return nil, fmt.Errorf("%s: spec files end in .json or .hcl", path)
	}
}
