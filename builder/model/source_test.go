package model

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseSource(t *testing.T) {
	tests := []struct {
		raw      string
		kind     string
		fileName string
		check    func(Source) string
		err      string
	}{
		{raw: "https://example.com/a/b/model.safetensors?download=true", kind: KindHTTP, fileName: "model.safetensors"},
		{raw: "hf://stabilityai/sdxl/unet/diffusion.safetensors", kind: KindHF, fileName: "diffusion.safetensors",
			check: func(s Source) string {
				return cmp.Diff([]string{"stabilityai/sdxl", "unet/diffusion.safetensors", "main"}, []string{s.HFRepo, s.HFPath, s.HFRevision})
			}},
		{raw: "hf://o/r/m.bin@v1.0", kind: KindHF, fileName: "m.bin",
			check: func(s Source) string { return cmp.Diff("v1.0", s.HFRevision) }},
		{raw: "hf://o/r", err: "want hf://owner/repo/path"},
		{raw: "hf://o/r/m.bin@", err: "empty revision"},
		{raw: "civitai://12345", kind: KindCivitai, check: func(s Source) string { return cmp.Diff("12345", s.CivitaiVersion) }},
		{raw: "https://civitai.com/api/download/models/999?type=Model&format=SafeTensor", kind: KindCivitai,
			check: func(s Source) string { return cmp.Diff("999", s.CivitaiVersion) }},
		{raw: "civitai://abc", err: "digits"},
		// Every form the seed tool accepted (scripts/model_sources.py, verify_models.py).
		{raw: "civitai://models/4321", kind: KindCivitai, check: func(s Source) string { return cmp.Diff("4321", s.CivitaiVersion) }},
		{raw: "civitai://api/download/models/1996092?type=Model&format=SafeTensor", kind: KindCivitai,
			check: func(s Source) string {
				return cmp.Diff([]string{"1996092", "type=Model&format=SafeTensor"}, []string{s.CivitaiVersion, s.CivitaiQuery})
			}},
		{raw: "civitai:///api/download/models/77/", kind: KindCivitai, check: func(s Source) string { return cmp.Diff("77", s.CivitaiVersion) }},
		{raw: "civitai:///models/78", kind: KindCivitai, check: func(s Source) string { return cmp.Diff("78", s.CivitaiVersion) }},
		{raw: "civitai://download/models/79", kind: KindCivitai, check: func(s Source) string { return cmp.Diff("79", s.CivitaiVersion) }},
		{raw: "civitai://models/", err: "want civitai://"},
		{raw: "civitai://api/download/models/x1", err: "want civitai://"},
		{raw: "civitai://images/5", err: "want civitai://"},
		{raw: "file:///data/models/x.ckpt", kind: KindFile, fileName: "x.ckpt",
			check: func(s Source) string { return cmp.Diff("/data/models/x.ckpt", s.Path) }},
		{raw: "models/x.ckpt", kind: KindFile, fileName: "x.ckpt",
			check: func(s Source) string { return cmp.Diff("/base/models/x.ckpt", s.Path) }},
		{raw: "file://otherhost/x", err: "local path"},
		{raw: "gs://bucket/dir/obj.safetensors", kind: KindGCS, fileName: "obj.safetensors",
			check: func(s Source) string {
				return cmp.Diff([]string{"bucket", "dir/obj.safetensors"}, []string{s.Bucket, s.Object})
			}},
		{raw: "gs://bucket", err: "want gs://bucket/object"},
		{raw: "ftp://host/x", err: "unsupported scheme"},
		{raw: "", err: "empty"},
	}
	for _, tt := range tests {
		s, err := ParseSource(tt.raw, "/base")
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseSource(%q) error %v, want %q", tt.raw, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSource(%q): %v", tt.raw, err)
			continue
		}
		if s.Kind != tt.kind || s.FileName() != tt.fileName {
			t.Errorf("ParseSource(%q) = kind %q file %q, want %q %q", tt.raw, s.Kind, s.FileName(), tt.kind, tt.fileName)
		}
		if tt.check != nil {
			if d := tt.check(s); d != "" {
				t.Errorf("ParseSource(%q) (-want +got):\n%s", tt.raw, d)
			}
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:pw@host/x.bin":                                                     "https://host/x.bin",
		"https://civitai.com/api/download/models/1?token=abc&type=Model":                 "https://civitai.com/api/download/models/1?type=Model",
		"https://b.s3.amazonaws.com/x?X-Amz-Signature=s&X-Amz-Credential=c&X-Amz-Date=d": "https://b.s3.amazonaws.com/x?X-Amz-Date=d",
		"hf://o/r/m.bin@main":                                                            "hf://o/r/m.bin@main",
		"./local/x.bin":                                                                  "./local/x.bin",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseChecksum(t *testing.T) {
	hex64 := strings.Repeat("ab", 32)
	for in, want := range map[string]string{
		"sha256:" + strings.ToUpper(hex64): "sha256:" + hex64,
		hex64:                              "sha256:" + hex64,
		"md5:" + strings.Repeat("0f", 16):  "md5:" + strings.Repeat("0f", 16),
	} {
		c, err := ParseChecksum(in)
		if err != nil || c.String() != want {
			t.Errorf("ParseChecksum(%q) = %v, %v; want %s", in, c, err, want)
		}
	}
	for _, bad := range []string{"sha1:" + strings.Repeat("a", 40), "sha256:abc", "md5:" + strings.Repeat("zz", 16)} {
		if _, err := ParseChecksum(bad); err == nil {
			t.Errorf("ParseChecksum(%q) accepted", bad)
		}
	}
}
