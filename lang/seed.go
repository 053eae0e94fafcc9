package lang

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"
)

// This file holds what the seed tool (gen4sp/runpodComfyUICtrlVersion) accepted in a spec and
// runpod-comfy reads with a warning: its top-level python_packages, its "id" for version_id, a
// version_id that differs from the file name, and the lookup of a version by either name.

// seedNoopPipFlags are pip install options the seed passed through from python_packages that
// mean nothing when every venv is built fresh from a lock.
var seedNoopPipFlags = map[string]bool{
	"--force-reinstall": true, "-U": true, "--upgrade": true, "--no-cache-dir": true,
	"-I": true, "--ignore-installed": true, "-q": true, "--quiet": true, "-v": true,
	"--verbose": true, "--no-input": true, "--disable-pip-version-check": true,
}

// seedPythonPackages moves the seed's top-level python_packages into python.packages (after
// the packages python already lists), with a warning. Entries are trimmed and empty ones
// dropped, as the seed did; pip install flags that mean nothing for a fresh venv
// (--force-reinstall, --upgrade, ...) are dropped with a warning.
func seedPythonPackages(doc *rawDoc, d *diags) {
	a := doc.pyPackages
	if a == nil {
		return
	}
	vs, ok := stringList(a, d)
	if !ok {
		return
	}
	d.warnf(a.rng, a.path, "the seed tool's top-level python_packages is taken as python.packages (move the list there)")
	var keep []cty.Value
	if doc.python != nil {
		if p := doc.python.get("packages"); p != nil {
			if t := p.val.Type(); t.IsTupleType() || t.IsListType() || t.IsSetType() {
				for it := p.val.ElementIterator(); it.Next(); {
					_, v := it.Element()
					keep = append(keep, v)
				}
			} else {
				return // python.packages has the wrong type: reported when it is built
			}
		}
	}
	for i, v := range vs {
		v = strings.TrimSpace(v)
		switch {
		case v == "":
			continue
		case seedNoopPipFlags[v]:
			d.warnf(a.rng, fmt.Sprintf("%s[%d]", a.path, i), "pip option %q dropped: the seed passed it to pip install, but every venv here is built fresh from the lock, so it changes nothing", v)
			continue
		}
		keep = append(keep, cty.StringVal(v))
	}
	val := cty.EmptyTupleVal
	if len(keep) > 0 {
		val = cty.TupleVal(keep)
	}
	if doc.python == nil {
		doc.python = &rawBlock{kind: "python", path: "python", def: a.rng, attrs: map[string]*rawAttr{}, failed: map[string]bool{}}
	}
	doc.python.attrs["packages"] = &rawAttr{name: "packages", val: val, rng: a.rng, path: a.path}
}

// declaredID returns the version id the file declares: version_id, else the seed's id; "" when
// it declares none (or it is not a string: reported elsewhere).
func declaredID(doc *rawDoc) (string, *rawAttr) {
	for _, a := range []*rawAttr{doc.versionID, doc.idAlias} {
		if a != nil && a.val.Type() == cty.String {
			return a.val.AsString(), a
		}
	}
	return "", nil
}

// checkSeedID checks the seed's "id" beside version_id: alone it is taken as version_id with
// a warning; beside a different version_id it is an error.
func checkSeedID(doc *rawDoc, d *diags) {
	a := doc.idAlias
	if a == nil {
		return
	}
	v, ok := stringVal(a, d)
	if !ok {
		return
	}
	if doc.versionID != nil {
		if doc.versionID.val.Type() == cty.String && doc.versionID.val.AsString() != v {
			d.errorf(a.rng, "id", "is %q but version_id is %q: the seed tool's id is an alias of version_id; keep one", v, doc.versionID.val.AsString())
			return
		}
		d.warnf(a.rng, "id", "the seed tool's alias of version_id, which is also set: drop id")
		return
	}
	d.warnf(a.rng, "id", "the seed tool's alias of version_id: taken as version_id (write \"version_id\" instead)")
	doc.versionID = a
}

// maxClaimScan bounds the bytes read from one spec file when looking for the version_id it
// declares.
const maxClaimScan = 4 << 20

// claimedID returns the version id a spec file declares (version_id, else id), reading only
// a literal value; "" when it declares none or cannot be read.
func claimedID(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, maxClaimScan))
	if err != nil {
		return ""
	}
	if strings.HasSuffix(path, ".json") {
		var top map[string]json.RawMessage
		dec := json.NewDecoder(bytes.NewReader(src))
		if dec.Decode(&top) != nil {
			return ""
		}
		for _, k := range []string{"version_id", "id"} {
			var s string
			if raw, ok := top[k]; ok && json.Unmarshal(raw, &s) == nil {
				return s
			}
		}
		return ""
	}
	fl, hd := hclparse.NewParser().ParseHCL(src, path)
	if hd.HasErrors() {
		return ""
	}
	content, _, _ := fl.Body.PartialContent(&hcl.BodySchema{Attributes: attrSchema("version_id", "id")})
	for _, k := range []string{"version_id", "id"} {
		if a := content.Attributes[k]; a != nil {
			v, hd := a.Expr.Value(nil)
			if !hd.HasErrors() && v.IsKnown() && !v.IsNull() && v.Type() == cty.String {
				return v.AsString()
			}
		}
	}
	return ""
}

// claimants returns the spec files of dir that claim version id: named <id>.json or <id>.hcl,
// or declaring version_id (or id) = id. Sorted; the files named so come first.
func claimants(dir, id string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var named, declaring []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".json") || strings.HasSuffix(name, ".hcl")) {
			continue
		}
		p := filepath.Join(dir, name)
		switch {
		case fileID(p) == id:
			named = append(named, p)
		case claimedID(p) == id:
			declaring = append(declaring, p)
		}
	}
	sort.Strings(named)
	sort.Strings(declaring)
	return append(named, declaring...), nil
}

// checkClaim refuses a spec whose declared version_id differs from its file name when another
// file of the versions directory dir claims the same id (by its name or its version_id): both
// would build builds/comfy-<id> and write one lock.
func checkClaim(doc *rawDoc, id, dir string, d *diags) {
	if id == doc.id {
		return
	}
	_, a := declaredID(doc)
	if a == nil {
		return
	}
	list, err := claimants(dir, id)
	if err != nil {
		return
	}
	self, _ := filepath.Abs(doc.file)
	for _, p := range list {
		if ap, _ := filepath.Abs(p); ap == self {
			continue
		}
		how := "declares it"
		if fileID(p) == id {
			how = "is named so"
		}
		d.errorf(a.rng, a.path, "two files claim version %q: %s (by its %s) and %s (which %s): both would write one lock and builds/comfy-%s; change one of them",
			id, filepath.Base(doc.file), a.path, filepath.Base(p), how, id)
		return
	}
}
