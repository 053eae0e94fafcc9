package comfyjob

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/runpod-comfy/runpod-comfy/internal/netguard"
)

func TestParseInput(t *testing.T) {
	wf := `{"1": {"class_type": "EmptyImage", "inputs": {}}}`
	ok := []struct {
		name, in string
		want     Input
		warnings []string
	}{
		{"object", `{"workflow": ` + wf + `, "version_id": "v1", "timeout_s": 2.5, "output_mode": "gcs", "gcs_bucket": "b", "gcs_prefix": "p"}`,
			Input{VersionID: "v1", Workflow: json.RawMessage(wf), TimeoutS: 2.5, OutputMode: "gcs", GCSBucket: "b", GCSPrefix: "p"}, nil},
		{"input and workflow as JSON strings", mustString(`{"workflow": ` + mustString(wf) + `}`),
			Input{Workflow: json.RawMessage(wf)}, nil},
		{"worker-comfyui images", `{"workflow": ` + wf + `, "images": [{"name": "a.png", "image": "data:image/png;base64,AAAA"}], "comfy_org_api_key": "k"}`,
			Input{Workflow: json.RawMessage(wf), Images: []InputImage{{Name: "a.png", Image: "data:image/png;base64,AAAA"}}, ComfyOrgAPIKey: "k"}, nil},
		{"workflow_url and input_images", `{"workflow_url": "https://x/wf.json", "input_images": {"b.png": "https://x/b.png"}, "extra": 1, "another": 2}`,
			Input{WorkflowURL: "https://x/wf.json", InputImages: map[string]string{"b.png": "https://x/b.png"}},
			[]string{`input field "another" is not used`, `input field "extra" is not used`}},
	}
	for _, c := range ok {
		got, warnings, err := ParseInput(json.RawMessage(c.in))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if d := cmp.Diff(c.want, *got); d != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, d)
		}
		if d := cmp.Diff(c.warnings, warnings); d != "" {
			t.Errorf("%s warnings (-want +got):\n%s", c.name, d)
		}
	}
	bad := []struct{ in, want string }{
		{`[1]`, "input must be a JSON object"},
		{`"not json"`, "input must be a JSON object (or a JSON string holding one)"},
		{`{}`, "workflow: missing: give workflow (API format"},
		{`{"workflow": {"nodes": [], "links": []}}`, "workflow: this is a UI-format workflow; export it with Workflow > Export (API)"},
		{`{"workflow": {}}`, "workflow: has no nodes"},
		{`{"workflow": 3}`, "workflow: must be a JSON object in API format"},
		{`{"workflow_url": "ftp://x"}`, `workflow_url: "ftp://x" is not an http(s) URL`},
		{`{"workflow": ` + wf + `, "images": [{"name": "a.png"}]}`, "images[0]: needs a string name and image"},
		{`{"workflow": ` + wf + `, "images": {"a": 1}}`, "images: must be a list of {name, image}"},
		{`{"workflow": ` + wf + `, "images": [{"name": "../x.png", "image": "AAAA"}]}`, `image name "../x.png" must be a plain file name`},
		{`{"workflow": ` + wf + `, "input_images": ["x"]}`, "input_images: must be an object {name: url}"},
		{`{"workflow": ` + wf + `, "timeout_s": -1}`, "timeout_s: must be a number of seconds >= 0"},
		{`{"workflow": ` + wf + `, "output_mode": "ftp"}`, `output_mode: "ftp" is not an output: use base64, file, gcs or s3; the worker takes base64, gcs or s3`},
		{`{"workflow": ` + wf + `, "output_mode": "file"}`, `output_mode: "file" writes on the worker's own disk, which nobody can read after the job; the worker takes base64, gcs or s3`},
		{`{"workflow": ` + wf + `, "version_id": 7}`, "version_id: must be a string"},
	}
	for _, c := range bad {
		_, _, err := ParseInput(json.RawMessage(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "invalid input: ") {
			t.Errorf("ParseInput(%s) = %v, want an error containing %q", c.in, err, c.want)
		}
	}
}

func mustString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestFetchWorkflowRedactsQuery checks that a workflow_url that cannot be fetched is named
// without its query, which may hold a pre-signed URL's signature.
func TestFetchWorkflowRedactsQuery(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: the request fails to connect
	_, err = fetchWorkflow(context.Background(), &http.Client{}, "http://"+addr+"/wf.json?X-Amz-Signature=s3cr3t")
	if err == nil {
		t.Fatal("fetching from a closed port succeeded")
	}
	if strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), addr+"/wf.json") {
		t.Fatalf("error %q: want the URL without its query", err)
	}
}

// guardedAllowing is the worker's default client, except that the one address allowed is
// treated as public: it stands for a public server (only loopback exists in tests).
func guardedAllowing(allowed string) *http.Client {
	c := netguard.NewClient(false)
	d := &net.Dialer{Control: func(network, address string, rc syscall.RawConn) error {
		if address == allowed {
			return nil
		}
		return netguard.Control(network, address, rc)
	}}
	c.Transport.(*http.Transport).DialContext = d.DialContext
	return c
}

// TestFetchWorkflowRefusesPrivateAddresses: by default a workflow_url on loopback is refused
// without being fetched, and so is a redirect to it from a server that is allowed; the
// error names workflow_url and never holds the refused server's answer.
func TestFetchWorkflowRefusesPrivateAddresses(t *testing.T) {
	var hits atomic.Int32
	private := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		rw.Write([]byte(`{"1": {"class_type": "metadata-secret", "inputs": {}}}`))
	}))
	defer private.Close()
	public := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		http.Redirect(rw, r, private.URL+"/latest/meta-data?sig=s3cr3t", http.StatusFound)
	}))
	defer public.Close()
	ctx := context.Background()

	for name, c := range map[string]struct {
		client *http.Client
		url    string
	}{
		"direct":   {netguard.NewClient(false), private.URL + "/wf.json"},
		"redirect": {guardedAllowing(strings.TrimPrefix(public.URL, "http://")), public.URL + "/wf.json"},
	} {
		_, err := fetchWorkflow(ctx, c.client, c.url)
		var ie *InputError
		if !errors.As(err, &ie) || ie.Field != "workflow_url" || !errors.Is(err, netguard.ErrRefused) {
			t.Errorf("%s: %v, want a workflow_url error wrapping netguard.ErrRefused", name, err)
		}
		if err != nil && (strings.Contains(err.Error(), "metadata-secret") || strings.Contains(err.Error(), "s3cr3t")) {
			t.Errorf("%s: the error shows what it must not: %v", name, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the private server was reached %d times", n)
	}
	// The worker's setting allows it.
	wf, err := fetchWorkflow(ctx, netguard.NewClient(true), private.URL+"/wf.json")
	if err != nil || !strings.Contains(string(wf), "metadata-secret") {
		t.Fatalf("allowed: %s %v", wf, err)
	}
}

// TestFetchWorkflowShowsNoBody: a body that is not a workflow, or a status line with text of
// the server's, reaches the error only as fixed words.
func TestFetchWorkflowShowsNoBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/status":
			// A raw response with a reason phrase of the server's choosing.
			conn, buf, _ := rw.(http.Hijacker).Hijack()
			buf.WriteString("HTTP/1.1 403 root:x:0:0:secret-line\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			buf.Flush()
			conn.Close()
		case "/string":
			rw.Write([]byte(`"secret-line`))
		default:
			rw.Write([]byte(`secret-line {"nodes": 1}`))
		}
	}))
	defer srv.Close()
	for _, p := range []string{"/status", "/string", "/body"} {
		_, err := fetchWorkflow(context.Background(), netguard.NewClient(true), srv.URL+p)
		if err == nil || strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: %v", p, err)
		}
	}
}
