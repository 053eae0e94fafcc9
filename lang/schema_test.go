package lang

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	const path = "../specs/schema/v2.json"
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	const url = "https://github.com/runpod-comfy/runpod-comfy/specs/schema/v2.json"
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

func schemaValid(t *testing.T, sch *jsonschema.Schema, data []byte) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}

// TestSchemaAgreesOnVersions: every example under versions/ is valid for the schema (JSON
// ones) and for the Go reader (all of them).
func TestSchemaAgreesOnVersions(t *testing.T) {
	sch := compileSchema(t)
	paths, _ := filepath.Glob("../versions/*")
	if len(paths) < 2 {
		t.Fatalf("expected example versions, found %v", paths)
	}
	for _, p := range paths {
		_, diags, err := LoadFile(context.Background(), p, Options{VersionsDir: "../versions"})
		if err != nil {
			t.Errorf("%s: Go reader rejects it: %v", p, err)
		}
		if len(diags) != 0 {
			t.Errorf("%s: examples should not need warnings: %v", p, diags)
		}
		if strings.HasSuffix(p, ".json") {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := schemaValid(t, sch, data); err != nil {
				t.Errorf("%s: schema rejects it: %v", p, err)
			}
		}
	}
}

// TestSchemaAgreesOnFixtures: for every JSON fixture the schema's verdict is the one the fixture
// states, and it matches the Go reader's unless the fixture says the rule spans fields (schema:
// accept on an invalid spec, with the reason in its comment).
func TestSchemaAgreesOnFixtures(t *testing.T) {
	sch := compileSchema(t)
	n := 0
	for _, f := range readFixtures(t) {
		if f.schema == "" {
			continue
		}
		name := filepath.Base(f.path)
		var data []byte
		for _, af := range f.ar.Files {
			if strings.HasSuffix(af.Name, ".json") && af.Name != "want.json" {
				data = af.Data
				break
			}
		}
		if data == nil {
			t.Errorf("%s: schema line but no JSON spec", name)
			continue
		}
		n++
		err := schemaValid(t, sch, data)
		switch f.schema {
		case "accept":
			if err != nil {
				t.Errorf("%s: schema rejects it, fixture says accept: %v", name, err)
			}
		case "reject":
			if err == nil {
				t.Errorf("%s: schema accepts it, fixture says reject", name)
			}
		default:
			t.Errorf("%s: schema: %q is neither accept nor reject", name, f.schema)
		}
		goInvalid := false
		for _, w := range f.want {
			if !strings.Contains(w, "warning: ") {
				goInvalid = true
			}
		}
		if f.schema == "reject" && !goInvalid {
			t.Errorf("%s: schema rejects a spec the Go reader accepts", name)
		}
		if f.schema == "accept" && goInvalid && !strings.Contains(string(f.ar.Comment), "Cross-field") && !strings.Contains(string(f.ar.Comment), "Beyond the schema") {
			t.Errorf("%s: the Go reader rejects a spec the schema accepts, and the fixture does not say why (a comment \"Cross-field: ...\" or \"Beyond the schema: ...\")", name)
		}
	}
	if n < 10 {
		t.Errorf("only %d JSON fixtures checked against the schema", n)
	}
}
