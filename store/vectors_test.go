package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/store/nar"
)

const hello = "Hello, World!\n"

func TestNix32Vectors(t *testing.T) {
	if got := Nix32([]byte{0x1f}); got != "0z" {
		t.Errorf("nix32(0x1f) = %q, want 0z", got)
	}
	b, _ := hex.DecodeString("d86b3392c1202e8ff5a423b302e6284db7f8f435ea9f39b5b1b20fd3ac36dfcb")
	const want = "1jyz6snd63xjn6skk7za6psgidsd53k05cr3lksqybi0q6936syq"
	if got := Nix32(b); got != want {
		t.Errorf("nix32 = %q, want %q", got, want)
	}
	back, err := ParseNix32(want, 32)
	if err != nil || !bytes.Equal(back, b) {
		t.Errorf("ParseNix32 round trip: %x, %v", back, err)
	}
	for _, bad := range []string{"zz", "c0"} {
		if _, err := ParseNix32(bad, 1); err == nil {
			t.Errorf("ParseNix32(%q) accepted", bad)
		}
	}
	if _, err := ParseNix32("0e", 1); err == nil {
		t.Error("ParseNix32 accepted a character outside the alphabet")
	}
}

func TestFileHashVectors(t *testing.T) {
	sum := sha256.Sum256([]byte(hello))
	if got := hex.EncodeToString(sum[:]); got != "c98c24b677eff44860afea6f493bbaec5bb1c4cbb209c6fc2bbb47f66ff2ad31" {
		t.Errorf("sha256 = %s", got)
	}
	if got := Nix32(sum[:]); got != "0cddy9pzcixv5gycc2djrg2b2nzcp8xljvzamxh4ix7gfyv29369" {
		t.Errorf("sha256 nix32 = %s", got)
	}
	inner := sha256.Sum256([]byte("fixed:out:sha256:c98c24b677eff44860afea6f493bbaec5bb1c4cbb209c6fc2bbb47f66ff2ad31:"))
	if got := hex.EncodeToString(inner[:]); got != "34d94711ea358694d25b4332eac6ca0ca4db9cb1b38d7fe84b6db508ba095c84" {
		t.Errorf("flat inner hex = %s", got)
	}
}

// TestNixStorePathVectors checks nix32, XOR-fold and hashing against paths Nix computed.
func TestNixStorePathVectors(t *testing.T) {
	const fileHex = "c98c24b677eff44860afea6f493bbaec5bb1c4cbb209c6fc2bbb47f66ff2ad31"
	const flatInner = "34d94711ea358694d25b4332eac6ca0ca4db9cb1b38d7fe84b6db508ba095c84"
	const narHex = "c070aed9366c5b1ccf6c35187d7bcd0d5d3f5633794031753ad6b05a75edbb76"
	cases := []struct{ fp, want string }{
		{"text:sha256:" + fileHex + ":/nix/store:hello.txt", "q4dz47g15qmlsm01aijr737w8avkaac6-hello.txt"},
		{"text:sha256:" + fileHex + ":/comfy/store:hello.txt", "34x1pmr4cq8xczpkn323fqw5zaxydz5p-hello.txt"},
		{"output:out:sha256:" + flatInner + ":/nix/store:hello.txt", "22lrzcnq9ch2f3sz8d2idrm9gn72vcy2-hello.txt"},
		{"output:out:sha256:" + flatInner + ":/comfy/store:hello.txt", "9dhqf9nvfs88m1hmpm77vaawqpqzmy2f-hello.txt"},
		{"source:sha256:" + narHex + ":/nix/store:hello.txt", "8dh7w49x7r3xkwz39vavcq6znygmzrp0-hello.txt"},
		{"source:sha256:" + narHex + ":/comfy/store:hello.txt", "1lb0ir70n0vcm1y36n6gw0vzw84ac1kl-hello.txt"},
		{"source:sha256:4fa3faa2db9ac62739676c8d1bd7bad8b1f5e411a8caa0e24d11212194ac1d5d:/nix/store:hx.txt", "yjacpzpzm2hy4b95gr3zyjnqzjnpbh5n-hx.txt"},
		{"source:sha256:c7c89212ef335b94c3385baa40b63d47ef0881ab6dc71cb62d54c3daacdf9aae:/nix/store:d", "vs36ipcxp9vax0n3aykladd3fp8yvr2y-d"},
		{"source:sha256:c7c89212ef335b94c3385baa40b63d47ef0881ab6dc71cb62d54c3daacdf9aae:/comfy/store:d", "jqnbbs9chgd0z0f9ma26w0wz6xm2d3g3-d"},
	}
	for _, c := range cases {
		name := c.want[DigestLen+1:]
		p, err := PathFor(c.fp, name)
		if err != nil {
			t.Fatal(err)
		}
		if p.String() != c.want {
			t.Errorf("PathFor(%q) = %s, want %s", c.fp, p, c.want)
		}
		q, err := ParsePath(c.want)
		if err != nil || q != p {
			t.Errorf("ParsePath(%q) = %v, %v", c.want, q, err)
		}
	}
}

func TestNARVectors(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "hello.txt")
	os.WriteFile(f, []byte(hello), 0o644)
	x := filepath.Join(dir, "hx.txt")
	os.WriteFile(x, []byte(hello), 0o755)
	d := filepath.Join(dir, "d")
	os.Mkdir(d, 0o755)
	os.WriteFile(filepath.Join(d, "hello.txt"), []byte(hello), 0o644)
	cases := []struct {
		path, hex string
		size      int64
	}{
		{f, "c070aed9366c5b1ccf6c35187d7bcd0d5d3f5633794031753ad6b05a75edbb76", 128},
		{x, "4fa3faa2db9ac62739676c8d1bd7bad8b1f5e411a8caa0e24d11212194ac1d5d", 160},
		{d, "c7c89212ef335b94c3385baa40b63d47ef0881ab6dc71cb62d54c3daacdf9aae", 304},
	}
	for _, c := range cases {
		h, n, err := nar.Hash(c.path)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := hex.DecodeString(c.hex)
		if want := "sha256:" + Nix32(raw); h != want || n != c.size {
			t.Errorf("nar.Hash(%s) = %s %d, want %s %d", filepath.Base(c.path), h, n, want, c.size)
		}
	}
	if h, _, _ := nar.Hash(f); h != "sha256:0xmvxmsmmc6n79sk2h3r6db3yp8drmxps61mdk7iqnvc6vcsww60" {
		t.Errorf("NAR nix32 = %s", h)
	}
	var buf bytes.Buffer
	if err := nar.Dump(&buf, f); err != nil {
		t.Fatal(err)
	}
	wantHead := []byte{0x0d, 0, 0, 0, 0, 0, 0, 0, 'n', 'i', 'x', '-', 'a', 'r', 'c', 'h'}
	if !bytes.HasPrefix(buf.Bytes(), wantHead) || buf.Len() != 128 {
		t.Errorf("NAR bytes: %x", buf.Bytes())
	}
	if got := append(append(nar.FileHeader(14, false), hello...), nar.FileTrailer(14)...); !bytes.Equal(got, buf.Bytes()) {
		t.Errorf("FileHeader+content+FileTrailer differs from Dump")
	}
	if nar.FileNarSize(14, false) != 128 || nar.FileNarSize(14, true) != 160 {
		t.Error("FileNarSize")
	}
}

func TestFingerprints(t *testing.T) {
	cases := map[string]string{
		FixedFingerprint("SHA256", "ABCDEF", "m.safetensors"): "runpod-comfy/1:fixed:sha256:abcdef:m.safetensors",
		GitFingerprint("DEADBEEF", true, "comfyui"):           "runpod-comfy/1:git:deadbeef:true:comfyui",
		ArchiveFingerprint("zip-1", "ABCDEF", "impact"):       "runpod-comfy/1:archive:zip-1:sha256:abcdef:impact",
		DrvFingerprint("00ff", "venv"):                        "runpod-comfy/1:drv:00ff:venv",
	}
	for got, want := range cases {
		if got != want {
			t.Errorf("fingerprint %q, want %q", got, want)
		}
	}
	for _, bad := range []string{"", ".", "..", ".-x", "..-x", "a/b", "a b", strings.Repeat("a", 212)} {
		if _, err := PathFor("x", bad); err == nil {
			t.Errorf("PathFor accepted name %q", bad)
		}
	}
	if _, err := PathFor("x", strings.Repeat("a", 211)); err != nil {
		t.Error(err)
	}
	if got := SanitizeName("my node (v2)"); got != "my_node__v2_" {
		t.Errorf("SanitizeName = %q", got)
	}
}
