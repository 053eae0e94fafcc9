package layout

import (
	"strings"
	"testing"
)

func TestCheckVersionID(t *testing.T) {
	for _, id := range []string{"a", "sdxl+lora", "v1.2_b-3", "0", strings.Repeat("a", MaxVersionIDLen)} {
		if err := CheckVersionID(id); err != nil {
			t.Errorf("%q refused: %v", id, err)
		}
	}
	for _, id := range []string{"", ".x", "-x", "+x", "_x", "a/b", "a b", "a=b", "a?b", "..", "a\x00", "é", strings.Repeat("a", MaxVersionIDLen+1)} {
		if err := CheckVersionID(id); err == nil {
			t.Errorf("%q accepted", id)
		}
	}
}

func TestLayoutPaths(t *testing.T) {
	l := New("/vol")
	for got, want := range map[string]string{
		l.Store():                     "/vol/store",
		l.Builds():                    "/vol/builds",
		l.RootLink("sdxl+lora"):       "/vol/builds/comfy-sdxl+lora",
		l.Generation("a-b", 3):        "/vol/builds/.generations/comfy-a-b-3",
		l.State("v"):                  "/vol/state/comfy-v",
		StateUnder("/elsewhere", "v"): "/elsewhere/comfy-v",
		l.Lock("v"):                   "/vol/cache/runpod-comfy/resolved/v.lock.json",
		l.Git():                       "/vol/cache/runpod-comfy/git",
		l.Pip():                       "/vol/cache/runpod-comfy/pip",
		l.Downloads():                 "/vol/cache/runpod-comfy/downloads",
		l.Check():                     "/vol/cache/runpod-comfy/check",
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}
