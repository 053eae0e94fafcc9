package runner

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFileSink(t *testing.T) {
	dir := t.TempDir()
	outs := testOutputs()
	if err := Deliver(context.Background(), outs, FileSink{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if outs[0].Path != filepath.Join(dir, "sub", "a_00001_.png") || outs[1].Path != filepath.Join(dir, "text-3-0.txt") {
		t.Errorf("paths %q %q", outs[0].Path, outs[1].Path)
	}
	if b, _ := os.ReadFile(outs[1].Path); string(b) != "hello" {
		t.Errorf("text file holds %q", b)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "sub"))
	if len(ents) != 1 {
		t.Errorf("temp files left: %v", ents)
	}
	bad := &Output{NodeID: "1", Filename: "x.png", Subfolder: "../..", Bytes: []byte("x")}
	if err := (FileSink{Dir: dir}).Put(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "leaves the output directory") {
		t.Errorf("escaping name: %v", err)
	}
}

func TestCheckWorkflow(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"nodes": [], "links": [], "version": 0.4}`, "Export (API)"},
		{`[1, 2]`, "not a JSON object"},
		{`{}`, "no nodes"},
		{`{"1": {"inputs": {}}}`, `node "1" has no class_type`},
		{`{"1": 5}`, `node "1" is not an object`},
		{`{"1": {"class_type": "X", "inputs": []}}`, "inputs is not an object"},
	} {
		_, err := CheckWorkflow([]byte(tc.in))
		var we *WorkflowError
		if !errors.As(err, &we) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.in, err, tc.want)
		}
	}
	// Large seeds survive; a {"prompt": ...} wrapper is unwrapped.
	wf, err := CheckWorkflow([]byte(`{"prompt": {"3": {"class_type": "KSampler", "inputs": {"seed": 18446744073709551615}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := wf.inputs("3")["seed"]; got.(interface{ String() string }).String() != "18446744073709551615" {
		t.Errorf("seed %v", got)
	}
}

func TestImageBytes(t *testing.T) {
	raw := []byte("\x89PNG\r\n\x1a\n some bytes \xff\xfe")
	std := base64.StdEncoding.EncodeToString(raw)
	for _, s := range []string{std, "data:image/png;base64," + std, strings.TrimRight(base64.URLEncoding.EncodeToString(raw), "="), std[:10] + "\n" + std[10:]} {
		got, err := imageBytes(context.Background(), nil, InputImage{Name: "a.png", Image: s})
		if err != nil || string(got) != string(raw) {
			t.Errorf("%q: %v", s, err)
		}
	}
	if _, err := imageBytes(context.Background(), nil, InputImage{Name: "a.png", Image: "not base64!"}); err == nil {
		t.Error("garbage accepted")
	}
	for _, name := range []string{"ok.png", "sub/ok.png"} {
		if err := CheckInputName(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, name := range []string{"", "../a.png", "/a.png", "a/../../b.png", `a\b.png`, ".hidden", "a//b.png"} {
		if err := CheckInputName(name); err == nil {
			t.Errorf("%q accepted", name)
		}
	}
}

// TestImageURLErrorsRedactURL: an input image URL that cannot be fetched is named without
// its query, which may hold a pre-signed URL's signature (as workflow_url is).
func TestImageURLErrorsRedactURL(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: the request fails to connect
	_, err = imageBytes(context.Background(), &http.Client{}, InputImage{Name: "a.png", Image: "http://" + addr + "/a.png?X-Amz-Signature=s3cr3t"})
	if err == nil {
		t.Fatal("fetching from a closed port succeeded")
	}
	if strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), addr+"/a.png") || !strings.Contains(err.Error(), `input image "a.png"`) {
		t.Fatalf("error %q: want the image's name and its URL without the query", err)
	}
}
