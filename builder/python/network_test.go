package python

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/runpod-comfy/runpod-comfy/specs"
)

// TestResolveIndexUnreachable: pip pointed at a closed loopback port says it could not reach
// the index (with pip's own network error) and names the ways out, instead of "no file
// satisfies torch", which reads as if torch did not exist.
func TestResolveIndexUnreachable(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://user:s3cret@" + l.Addr().String() + "/simple"
	l.Close()
	reqs, err := Gather(context.Background(), nil, &specs.Python{Packages: []string{"torch"}})
	if err != nil {
		t.Fatal(err)
	}
	// One retry (pip's default is five, with back-off): pip prints its network error only
	// when it retries.
	_, err = Resolve(context.Background(), ResolveOptions{Interpreter: f.in, Requirements: reqs, IndexURL: closed,
		Env: []string{"PIP_RETRIES=1"}})
	var ie *IndexUnreachableError
	if !errors.As(err, &ie) {
		t.Fatalf("want *IndexUnreachableError, got %T: %v", err, err)
	}
	msg := err.Error()
	t.Logf("%s", msg)
	for _, want := range []string{"could not reach the package index", "Connection refused", "torch",
		"python.find_links", "wheel cache", "--offline"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	for _, never := range []string{"no file satisfies", "s3cret", " object at 0x"} {
		if strings.Contains(msg, never) {
			t.Errorf("message contains %q:\n%s", never, msg)
		}
	}
	var re *ResolutionError
	if !errors.As(err, &re) || len(re.Missing) != 1 {
		t.Errorf("the resolution failure is not kept: %v", re)
	}
}
