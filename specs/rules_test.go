package specs

import (
	"strings"
	"testing"
)

func TestIsFullCommit(t *testing.T) {
	for s, want := range map[string]bool{
		"0123456789abcdef0123456789abcdef01234567":                         true,
		"0123456789ABCDEF0123456789abcdef01234567":                         true,
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef": true,
		"0123456789abcdef0123456789abcdef0123456":                          false,
		"0123456789abcdef0123456789abcdef0123456g":                         false,
		"main": false, "": false,
	} {
		if got := IsFullCommit(s); got != want {
			t.Errorf("IsFullCommit(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestCheckGitURL(t *testing.T) {
	ok := []string{
		"https://github.com/comfyanonymous/ComfyUI", "https://github.com/a/b.git", "ssh://git@github.com/a/b.git",
		"ssh://git@host:2222/a/b", "git@github.com:a/b.git", "git@myhost:repo", "github.com:a/b",
		"file:///srv/git/x", "file://localhost/srv/x", "/srv/git/x", "http://127.0.0.1:8080/x.git", "http://localhost/x",
	}
	bad := map[string]string{
		"":                                  `git URL is empty`,
		"git://github.com/a/b":              `git URL "git://github.com/a/b": scheme "git" is not accepted: use https://, ssh:// (or git@host:path), file:// or an absolute path`,
		"http://github.com/a/b":             `git URL "http://github.com/a/b" uses plain http, which is accepted only on loopback: use https://`,
		"relative/x":                        `git URL "relative/x" is neither a URL nor an absolute path: use https://, ssh:// (or git@host:path), file:// or an absolute path`,
		"https://u:p@github.com/a/b":        `git URL "https://u:xxxxx@github.com/a/b" carries a password: remove it (https remotes get $GIT_TOKEN, ssh ones the ssh agent)`,
		"https://github.com/":               `git URL "https://github.com/" has no repository path`,
		"file://host/x":                     `git URL "file://host/x": a file URL needs an absolute path (file:///path)`,
		" https://github.com/a/b":           `git URL " https://github.com/a/b" has leading or trailing spaces`,
		"ftp://example.com/x.git":           `git URL "ftp://example.com/x.git": scheme "ftp" is not accepted: use https://, ssh:// (or git@host:path), file:// or an absolute path`,
		"C:relative":                        `git URL "C:relative" is neither a URL nor an absolute path: use https://, ssh:// (or git@host:path), file:// or an absolute path`,
		"https:///nohost/x":                 `git URL "https:///nohost/x" has no host`,
		"ssh://git@github.com":              `git URL "ssh://git@github.com" has no repository path`,
		"https://github.com/a b\x7f/c":      `git URL holds the control character U+007F at byte 22 (not shown: it may hold credentials)`,
		"https://git hub.com/a/b":           `git URL does not parse (not shown: it may hold credentials): invalid character " " in host name`,
		"git@github.com:/abs/not-scp":       `git URL "git@github.com:/abs/not-scp" is neither a URL nor an absolute path: use https://, ssh:// (or git@host:path), file:// or an absolute path`,
		"https://user:@github.com/a/b":      `git URL "https://user:xxxxx@github.com/a/b" carries a password: remove it (https remotes get $GIT_TOKEN, ssh ones the ssh agent)`,
		"ssh://u:pw@github.com/a/b.git":     `git URL "ssh://u:xxxxx@github.com/a/b.git" carries a password: remove it (https remotes get $GIT_TOKEN, ssh ones the ssh agent)`,
		"https://ghp_secret@github.com/a/b": `git URL "https://xxxxx@github.com/a/b" carries a user name, which may be a token: remove it (https remotes get $GIT_TOKEN)`,
		"https://github.com/a/b\nx":         `git URL holds the control character U+000A at byte 22 (not shown: it may hold credentials)`,
		"https://github.com/a/b\u0085":      `git URL holds the control character U+0085 at byte 22 (not shown: it may hold credentials)`,
		"https://github.com/a/\xffb":        `git URL is not valid UTF-8 (byte 21) (not shown: it may hold credentials)`,
	}
	for _, u := range ok {
		if err := CheckGitURL(u); err != nil {
			t.Errorf("CheckGitURL(%q) = %v, want nil", u, err)
		}
	}
	for u, want := range bad {
		err := CheckGitURL(u)
		if err == nil {
			t.Errorf("CheckGitURL(%q) = nil, want %q", u, want)
			continue
		}
		if err.Error() != want {
			t.Errorf("CheckGitURL(%q) =\n  %s\nwant\n  %s", u, err, want)
		}
	}
}

func TestCheckChecksum(t *testing.T) {
	for _, s := range []string{"sha256:31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6174b4f9ac1fc", "md5:D41D8CD98F00B204E9800998ECF8427E"} {
		if err := CheckChecksum(s); err != nil {
			t.Errorf("CheckChecksum(%q) = %v", s, err)
		}
	}
	for s, want := range map[string]string{
		"31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6174b4f9ac1fc": `checksum "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6174b4f9ac1fc" has no algorithm: write it as "sha256:<64 hex>" or "md5:<32 hex>"`,
		"sha256:abc":  `checksum "sha256:abc": sha256 needs 64 hex digits, got "abc"`,
		"sha1:abc":    `checksum "sha1:abc": algorithm "sha1" is not accepted (sha256 or md5)`,
		"whatever":    `checksum "whatever" is not of the form "sha256:<64 hex>" or "md5:<32 hex>"`,
		"md5:" + "zz": `checksum "md5:zz": md5 needs 32 hex digits, got "zz"`,
	} {
		err := CheckChecksum(s)
		if err == nil || err.Error() != want {
			t.Errorf("CheckChecksum(%q) = %v, want %s", s, err, want)
		}
	}
}

func TestModelTarget(t *testing.T) {
	src := "https://huggingface.co/x/y/resolve/main/sd_xl_base_1.0.safetensors?download=true"
	cases := []struct {
		m       Model
		want    string
		wantErr string
	}{
		{Model{Source: src, TargetSubdir: "checkpoints"}, "checkpoints/sd_xl_base_1.0.safetensors", ""},
		{Model{Source: src, TargetSubdir: "checkpoints/sdxl/"}, "checkpoints/sdxl/sd_xl_base_1.0.safetensors", ""},
		{Model{Source: src, TargetSubdir: "checkpoints", Name: "base.safetensors"}, "checkpoints/base.safetensors", ""},
		{Model{Source: src, TargetPath: "checkpoints/x.safetensors"}, "checkpoints/x.safetensors", ""},
		{Model{Source: src, TargetPath: "checkpoints/"}, "checkpoints/sd_xl_base_1.0.safetensors", ""},
		{Model{Source: src, TargetPath: "$MODELS_DIR/vae/v.safetensors"}, "vae/v.safetensors", ""},
		{Model{Source: src, TargetPath: "${MODELS_DIR}/vae/"}, "vae/sd_xl_base_1.0.safetensors", ""},
		{Model{Source: src, TargetPath: "$COMFY_HOME/models/loras/l.safetensors"}, "loras/l.safetensors", ""},
		{Model{Source: src, TargetSubdir: "$MODELS_DIR/loras"}, "loras/sd_xl_base_1.0.safetensors", ""},
		{Model{Source: "hf://owner/repo/dir/file.bin@v2", TargetSubdir: "clip"}, "clip/file.bin", ""},
		{Model{Source: "/srv/models/a%20b.pt", TargetSubdir: "upscale_models"}, "upscale_models/a b.pt", ""},
		{Model{Source: src, TargetSubdir: "./checkpoints//a/"}, "checkpoints/a/sd_xl_base_1.0.safetensors", ""},
		{Model{Source: src, TargetPath: "checkpoints/x.safetensors", Name: "x.safetensors"}, "checkpoints/x.safetensors", ""},

		{Model{Source: src}, "", `no target_subdir or target_path: say where the model goes under models/ (e.g. target_subdir = "checkpoints")`},
		{Model{Source: src, TargetSubdir: "a", TargetPath: "b/c"}, "", "target_subdir and target_path are both set: use one"},
		{Model{Source: src, TargetSubdir: "../x"}, "", `target_subdir "../x" escapes the models directory`},
		{Model{Source: src, TargetPath: "a/../../x"}, "", `target_path "a/../../x" escapes the models directory`},
		{Model{Source: src, TargetPath: "/etc/x"}, "", `target_path "/etc/x" is absolute and escapes the models directory`},
		{Model{Source: src, TargetPath: "$HOME/x"}, "", `target_path "$HOME/x" starts with an unknown variable: only $MODELS_DIR and $COMFY_HOME/models are understood`},
		{Model{Source: src, TargetPath: `..\x`}, "", `target_path "..\\x" escapes the models directory`},
		{Model{Source: "https://example.com/", TargetSubdir: "vae"}, "", `source "https://example.com/" has no file name: set name`},
		{Model{Source: src, TargetSubdir: "vae", Name: "a/b"}, "", `name "a/b" must be a file name, not a path`},
		// Beside a target_path naming the file, name is a label (the seed tool's meaning).
		{Model{Source: src, TargetPath: "vae/x.pt", Name: "y.pt"}, "vae/x.pt", ""},
		{Model{Source: src, TargetPath: "$MODELS_DIR/vae/x.pt", Name: "wan 2.1 vae / fp16"}, "vae/x.pt", ""},
		{Model{Source: src, TargetSubdir: "vae", Name: "y.pt"}, "vae/y.pt", ""},
		{Model{Source: src, TargetPath: "$MODELS_DIR"}, "sd_xl_base_1.0.safetensors", ""},
	}
	for _, c := range cases {
		got, err := ModelTarget(c.m)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if got != c.want || gotErr != c.wantErr {
			t.Errorf("ModelTarget(%+v) = %q, %q; want %q, %q", c.m, got, gotErr, c.want, c.wantErr)
		}
	}
}

func TestNodeNameFromRepo(t *testing.T) {
	for repo, want := range map[string]string{
		"https://github.com/ltdrdata/ComfyUI-Impact-Pack":      "ComfyUI-Impact-Pack",
		"https://github.com/ltdrdata/ComfyUI-Impact-Pack.git/": "ComfyUI-Impact-Pack",
		"git@github.com:cubiq/ComfyUI_IPAdapter_plus.git":      "ComfyUI_IPAdapter_plus",
		"file:///srv/git/node-a":                               "node-a",
		"/srv/git/node-b.git":                                  "node-b",
		"https://github.com":                                   "",
	} {
		if got := NodeNameFromRepo(repo); got != want {
			t.Errorf("NodeNameFromRepo(%q) = %q, want %q", repo, got, want)
		}
	}
}

func TestCheckNodeName(t *testing.T) {
	for _, ok := range []string{"ComfyUI-Impact-Pack", "was-node-suite-comfyui", "a.b_c+d=e?"} {
		if err := CheckNodeName(ok); err != nil {
			t.Errorf("CheckNodeName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", ".hidden", "a/b", "with space", "ünï"} {
		if err := CheckNodeName(bad); err == nil {
			t.Errorf("CheckNodeName(%q) = nil, want an error", bad)
		}
	}
}

func TestCheckGitURLUnparsableHidesURL(t *testing.T) {
	err := CheckGitURL("https://tok%zz@example.com/repo.git")
	if err == nil || strings.Contains(err.Error(), "tok") {
		t.Fatalf("CheckGitURL error %v; want an error that does not echo the URL", err)
	}
}

func TestCheckText(t *testing.T) {
	for s, want := range map[string]string{
		"checkpoints/sd_xl.safetensors": "",
		"café/ü":                        "",
		"a\nb":                          "holds the control character U+000A at byte 1",
		"\tx":                           "holds the control character U+0009 at byte 0",
		"x\x00":                         "holds the control character U+0000 at byte 1",
		"x\x7f":                         "holds the control character U+007F at byte 1",
		"x\u0085":                       "holds the control character U+0085 at byte 1",
		"x\u009f":                       "holds the control character U+009F at byte 1",
		"x\u00a0":                       "",
		"ab\xff":                        "is not valid UTF-8 (byte 2)",
		"ab\xc3":                        "is not valid UTF-8 (byte 2)",
	} {
		got := ""
		if err := CheckText(s); err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("CheckText(%q) = %q, want %q", s, got, want)
		}
	}
	if _, err := ModelTarget(Model{Source: "https://x/m.safetensors", TargetSubdir: "checkpoints\nx"}); err == nil || !strings.Contains(err.Error(), "U+000A") {
		t.Errorf("ModelTarget with a newline in target_subdir: %v", err)
	}
}

func TestTargetsConflict(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"a", "a", true}, {"a", "a/b", true}, {"a/b", "a", true}, {"a/b/c", "a", true},
		{"a", "ab", false}, {"a/b", "a/c", false}, {"ab/c", "a", false},
	} {
		if got := TargetsConflict(c.a, c.b); got != c.want {
			t.Errorf("TargetsConflict(%q, %q) = %v", c.a, c.b, got)
		}
	}
}

func TestCheckPythonVersion(t *testing.T) {
	for v, ok := range map[string]bool{"3.11": true, "3.10.4": true, "3": false, "2.7": false, "4.0": false, "3.11.2.1": false, "3.x": false} {
		if err := CheckPythonVersion(v); (err == nil) != ok {
			t.Errorf("CheckPythonVersion(%q) = %v", v, err)
		}
	}
}

func TestCheckRegistryID(t *testing.T) {
	for _, ok := range []string{"comfyui-impact-pack", "rgthree-comfy", "ComfyUI_essentials", "a", "was-node-suite-comfyui", "comfyui.v2", "a1-b2_c3.d4", strings.Repeat("a", 99)} {
		if err := CheckRegistryID(ok); err != nil {
			t.Errorf("CheckRegistryID(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "1tool", "-x", "_x", ".x", "a--b", "a-.b", "a/b", "a b", "../x", "a\nb", "é", strings.Repeat("a", 100)} {
		if err := CheckRegistryID(bad); err == nil {
			t.Errorf("CheckRegistryID(%q) accepted", bad)
		}
	}
}
