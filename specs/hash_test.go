package specs

import (
	"regexp"
	"testing"
)

func sample() *Spec {
	f := false
	return &Spec{
		SchemaVersion: 2, VersionID: "x",
		Comfy: Comfy{Repo: "https://github.com/comfyanonymous/ComfyUI", Commit: "0123456789abcdef0123456789abcdef01234567", Pos: Pos{File: "x.json", Line: 3, Col: 1}},
		CustomNodes: []CustomNode{
			{Name: "b", Repo: "https://github.com/a/b", Ref: "main", InstallRequirements: &f},
			{Name: "a", Repo: "https://github.com/a/a", Commit: "89abcdef0123456789abcdef0123456789abcdef", Pos: Pos{File: "x.json", Line: 9, Col: 5}},
		},
		Models: []Model{
			{Source: "https://e.com/z.safetensors", TargetSubdir: "vae"},
			{Source: "https://e.com/y.safetensors", TargetPath: "checkpoints/y.safetensors"},
		},
		Env: map[string]string{"B": "2", "A": "1"},
	}
}

func TestHashForm(t *testing.T) {
	if h := Hash(sample()); !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(h) {
		t.Fatalf("Hash = %q", h)
	}
}

func TestHashIgnoresPositionsOrderAndDefaults(t *testing.T) {
	a := sample()
	b := sample()
	// Positions, node and model order, explicit defaults and empty containers do not count.
	b.Comfy.Pos = Pos{File: "x.hcl", Line: 40, Col: 2}
	b.CustomNodes[0], b.CustomNodes[1] = b.CustomNodes[1], b.CustomNodes[0]
	b.Models[0], b.Models[1] = b.Models[1], b.Models[0]
	tr := true
	b.Comfy.InstallRequirements = &tr
	b.CustomNodes[0].InstallRequirements = &tr
	b.CustomNodes[0].Pos = Pos{}
	b.Python = &Python{Pos: Pos{File: "x.hcl", Line: 1}}
	b.Options.Substituters = []string{}
	if Hash(a) != Hash(b) {
		t.Errorf("hash differs:\n%s\n%s", CanonicalJSON(a), CanonicalJSON(b))
	}
	if len(b.Models) != 2 || b.Models[0].TargetPath == "" {
		t.Error("Hash modified its argument")
	}
}

func TestHashSeesChanges(t *testing.T) {
	base := Hash(sample())
	changes := map[string]func(s *Spec){
		"comfy commit": func(s *Spec) { s.Comfy.Commit = "1123456789abcdef0123456789abcdef01234567" },
		"node ref":     func(s *Spec) { s.CustomNodes[0].Ref = "dev" },
		"requirements": func(s *Spec) { s.CustomNodes[0].InstallRequirements = nil },
		"model target": func(s *Spec) { s.Models[0].TargetSubdir = "loras" },
		"env value":    func(s *Spec) { s.Env["A"] = "3" },
		"python":       func(s *Spec) { s.Python = &Python{Packages: []string{"numpy<2"}} },
		"offline":      func(s *Spec) { s.Options.Offline = true },
		"package order": func(s *Spec) {
			s.Python = &Python{Packages: []string{"b", "a"}}
		},
	}
	seen := map[string]string{}
	for name, change := range changes {
		s := sample()
		change(s)
		h := Hash(s)
		if h == base {
			t.Errorf("%s: hash unchanged", name)
		}
		if other, dup := seen[h]; dup {
			t.Errorf("%s and %s give one hash", name, other)
		}
		seen[h] = name
	}
}
