package cache

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// The narinfo Nix 2.8.0 wrote for the "source" hello.txt path (a Nix test vector).
const nixHelloNarInfo = `StorePath: /nix/store/8dh7w49x7r3xkwz39vavcq6znygmzrp0-hello.txt
URL: nar/0xmvxmsmmc6n79sk2h3r6db3yp8drmxps61mdk7iqnvc6vcsww60.nar
Compression: none
FileHash: sha256:0xmvxmsmmc6n79sk2h3r6db3yp8drmxps61mdk7iqnvc6vcsww60
FileSize: 128
NarHash: sha256:0xmvxmsmmc6n79sk2h3r6db3yp8drmxps61mdk7iqnvc6vcsww60
NarSize: 128
References: 
Sig: test-1:cyxx4WXlPOelxwCX4UrXhaSc0agh9sapkHIB4gN/MQmSOQ4v5XuyM4CSoDVeWVwfLMwsQTC0o4DKQkQbWPEKCQ==
CA: fixed:r:sha256:0xmvxmsmmc6n79sk2h3r6db3yp8drmxps61mdk7iqnvc6vcsww60
`

const (
	nixTestPublicKey   = "test-1:boQd2FqZzS1ByzrCMIZbeKhtie1gb31CSrSxZ1NYdck="
	nixTestFingerprint = "1;/nix/store/8dh7w49x7r3xkwz39vavcq6znygmzrp0-hello.txt;sha256:0xmvxmsmmc6n79sk2h3r6db3yp8drmxps61mdk7iqnvc6vcsww60;128;"
	nixTestSignature   = "test-1:cyxx4WXlPOelxwCX4UrXhaSc0agh9sapkHIB4gN/MQmSOQ4v5XuyM4CSoDVeWVwfLMwsQTC0o4DKQkQbWPEKCQ=="
)

func TestNix32Vectors(t *testing.T) {
	for _, tc := range []struct{ hex, want string }{
		{"1f", "0z"},
		{"d86b3392c1202e8ff5a423b302e6284db7f8f435ea9f39b5b1b20fd3ac36dfcb", "1jyz6snd63xjn6skk7za6psgidsd53k05cr3lksqybi0q6936syq"},
		// Nix's hello.txt vector: file sha256 and NAR sha256.
		{"c98c24b677eff44860afea6f493bbaec5bb1c4cbb209c6fc2bbb47f66ff2ad31", "0cddy9pzcixv5gycc2djrg2b2nzcp8xljvzamxh4ix7gfyv29369"},
		{"c070aed9366c5b1ccf6c35187d7bcd0d5d3f5633794031753ad6b05a75edbb76", "0xmvxmsmmc6n79sk2h3r6db3yp8drmxps61mdk7iqnvc6vcsww60"},
	} {
		b, _ := hex.DecodeString(tc.hex)
		if got := store.Nix32(b); got != tc.want {
			t.Errorf("nix32(%s) = %s, want %s", tc.hex, got, tc.want)
		}
	}
}

func TestNarInfoRoundTripNix(t *testing.T) {
	n, err := ParseNarInfo([]byte(nixHelloNarInfo), "hello.narinfo")
	if err != nil {
		t.Fatal(err)
	}
	want := &NarInfo{
		StorePath:   "/nix/store/8dh7w49x7r3xkwz39vavcq6znygmzrp0-hello.txt",
		URL:         "nar/0xmvxmsmmc6n79sk2h3r6db3yp8drmxps61mdk7iqnvc6vcsww60.nar",
		Compression: "none",
		FileHash:    "sha256:0xmvxmsmmc6n79sk2h3r6db3yp8drmxps61mdk7iqnvc6vcsww60",
		FileSize:    128,
		NarHash:     "sha256:0xmvxmsmmc6n79sk2h3r6db3yp8drmxps61mdk7iqnvc6vcsww60",
		NarSize:     128,
		Sigs:        []string{nixTestSignature},
		CA:          "fixed:r:sha256:0xmvxmsmmc6n79sk2h3r6db3yp8drmxps61mdk7iqnvc6vcsww60",
	}
	if d := cmp.Diff(want, n); d != "" {
		t.Fatalf("parsed narinfo (-want +got):\n%s", d)
	}
	out, err := n.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != nixHelloNarInfo {
		t.Fatalf("written narinfo differs from Nix's:\n%s", cmp.Diff(nixHelloNarInfo, string(out)))
	}
	fp, err := n.Fingerprint()
	if err != nil || fp != nixTestFingerprint {
		t.Fatalf("fingerprint = %q, %v; want %q", fp, err, nixTestFingerprint)
	}
}

func TestVerifyNixVector(t *testing.T) {
	pk, err := ParsePublicKey(nixTestPublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyFingerprint(nixTestFingerprint, nixTestSignature, []PublicKey{pk}); err != nil {
		t.Fatalf("Nix's signature does not verify: %v", err)
	}
	n, _ := ParseNarInfo([]byte(nixHelloNarInfo), "hello.narinfo")
	if err := n.Verify([]PublicKey{pk}); err != nil {
		t.Fatal(err)
	}
	// Any change to a signed field breaks the signature.
	n.NarSize = 129
	if err := n.Verify([]PublicKey{pk}); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("altered NarSize: got %v, want ErrBadSignature", err)
	}
	// A key of another name: unsigned as far as we are concerned.
	other := pk
	other.Name = "other-1"
	n.NarSize = 128
	if err := n.Verify([]PublicKey{other}); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("untrusted key: got %v, want ErrUnsigned", err)
	}
	n.Sigs = nil
	if err := n.Verify([]PublicKey{pk}); !errors.Is(err, ErrUnsigned) || !strings.Contains(err.Error(), "no signature") {
		t.Fatalf("no signature: got %v", err)
	}
}

func TestKeyRoundTripAndSign(t *testing.T) {
	sk, pk, err := GenerateKey("cache-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	sk2, err := ParseSecretKey(sk.String() + "\n")
	if err != nil {
		t.Fatal(err)
	}
	pk2, err := ParsePublicKey(pk.String())
	if err != nil {
		t.Fatal(err)
	}
	if !sk2.Key.Equal(sk.Key) || !pk2.Key.Equal(pk.Key) || !sk.Public().Key.Equal(pk.Key) {
		t.Fatal("keys do not round-trip")
	}
	n := &NarInfo{StorePath: StoreDir + "/0cddy9pzcixv5gycc2djrg2b2nzcp8xl-a", NarHash: "sha256:0xmvxmsmmc6n79sk2h3r6db3yp8drmxps61mdk7iqnvc6vcsww60", NarSize: 128,
		References: []store.Path{store.MustParsePath("1cddy9pzcixv5gycc2djrg2b2nzcp8xl-b"), store.MustParsePath("0cddy9pzcixv5gycc2djrg2b2nzcp8xl-a")}}
	fp, _ := n.Fingerprint()
	wantFP := "1;/runpod-comfy/store/0cddy9pzcixv5gycc2djrg2b2nzcp8xl-a;sha256:0xmvxmsmmc6n79sk2h3r6db3yp8drmxps61mdk7iqnvc6vcsww60;128;/runpod-comfy/store/0cddy9pzcixv5gycc2djrg2b2nzcp8xl-a,/runpod-comfy/store/1cddy9pzcixv5gycc2djrg2b2nzcp8xl-b"
	if fp != wantFP {
		t.Fatalf("fingerprint\n got %s\nwant %s", fp, wantFP)
	}
	if err := n.Sign(sk); err != nil {
		t.Fatal(err)
	}
	if err := n.Sign(sk); err != nil || len(n.Sigs) != 1 {
		t.Fatalf("re-signing with the same key: %v, %d sigs", err, len(n.Sigs))
	}
	if err := n.Verify([]PublicKey{pk}); err != nil {
		t.Fatal(err)
	}
	n.References = n.References[:1]
	if err := n.Verify([]PublicKey{pk}); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("dropped reference: got %v, want ErrBadSignature", err)
	}
}

func TestParseKeyErrors(t *testing.T) {
	for _, s := range []string{"", "nocolon", "n:!!!", "n:" + strings.Repeat("A", 8), ":boQd2FqZzS1ByzrCMIZbeKhtie1gb31CSrSxZ1NYdck="} {
		if _, err := ParsePublicKey(s); err == nil {
			t.Errorf("ParsePublicKey(%q) accepted", s)
		}
	}
	if _, err := ParseSecretKey(nixTestPublicKey); err == nil || !strings.Contains(err.Error(), "32 bytes, want 64") {
		t.Errorf("public key as secret key: %v", err)
	}
	sk, _, _ := GenerateKey("k", nil)
	bad := append([]byte(nil), sk.Key...)
	bad[40] ^= 1
	if _, err := ParseSecretKey(SecretKey{Name: "k", Key: bad}.String()); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("secret key with a wrong public half: %v", err)
	}
}

func TestParseNarInfoErrors(t *testing.T) {
	base := nixHelloNarInfo
	for _, tc := range []struct {
		edit func(string) string
		want string
	}{
		{func(s string) string { return strings.Replace(s, "NarSize: 128", "NarSize: x", 1) }, "NarSize"},
		{func(s string) string { return strings.Replace(s, "NarSize: 128", "NarSize: 0", 1) }, "NarSize must be positive"},
		{func(s string) string { return strings.Replace(s, "URL: nar/", "URL: ../", 1) }, "not a relative path"},
		{func(s string) string { return strings.Replace(s, "StorePath: /nix/store/", "StorePath: ", 1) }, "StorePath"},
		{func(s string) string { return strings.Replace(s, "NarHash: sha256:0x", "NarHash: sha256:ex", 1) }, "is not nix32"},
		{func(s string) string { return s + "garbage\n" }, "hello.narinfo:11: not a"},
		{func(s string) string { return s + "URL: nar/x\n" }, "repeated"},
	} {
		_, err := ParseNarInfo([]byte(tc.edit(base)), "hello.narinfo")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want an error containing %q", err, tc.want)
		}
	}
	// Unknown keys are ignored, as Nix does.
	if _, err := ParseNarInfo([]byte(base+"X-Other: 1\n"), "x"); err != nil {
		t.Errorf("unknown key: %v", err)
	}
}

func TestCacheInfo(t *testing.T) {
	c := CacheInfo{StoreDir: StoreDir, WantMassQuery: true, Priority: 40}
	b, _ := c.MarshalText()
	if !bytes.Equal(b, []byte("StoreDir: /runpod-comfy/store\nWantMassQuery: 1\nPriority: 40\n")) {
		t.Fatalf("nix-cache-info = %q", b)
	}
	got, err := ParseCacheInfo(b, "nix-cache-info")
	if err != nil || got != c {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if _, err := ParseCacheInfo([]byte("Priority: 1\n"), "nix-cache-info"); err == nil {
		t.Fatal("missing StoreDir accepted")
	}
}

// TestNarInfoNonNixCA checks that a content address Nix cannot parse (a git source's
// "git:<commit>") is written under X-CA, leaving the narinfo readable by Nix, and read back.
func TestNarInfoNonNixCA(t *testing.T) {
	n, err := ParseNarInfo([]byte(nixHelloNarInfo), "hello.narinfo")
	if err != nil {
		t.Fatal(err)
	}
	n.CA = "git:0123456789abcdef0123456789abcdef01234567"
	out, err := n.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "\nX-CA: "+n.CA+"\n") || strings.Contains(string(out), "\nCA: ") {
		t.Fatalf("narinfo:\n%s", out)
	}
	back, err := ParseNarInfo(out, "git.narinfo")
	if err != nil {
		t.Fatal(err)
	}
	if back.CA != n.CA {
		t.Fatalf("CA read back as %q, want %q", back.CA, n.CA)
	}
	if _, err := ParseNarInfo(append(out, "CA: fixed:sha256:x\n"...), "both.narinfo"); err == nil || !strings.Contains(err.Error(), "both CA and X-CA") {
		t.Fatalf("CA and X-CA together: %v", err)
	}
}
