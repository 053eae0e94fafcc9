package cache

import (
	"fmt"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/store"
)

// sha256String formats a sha256 sum as "sha256:<nix32>", the form narinfo files use.
func sha256String(sum []byte) string { return "sha256:" + store.Nix32(sum) }

// validSHA256 checks that s is "sha256:<52 nix32 chars>".
func validSHA256(s string) error {
	rest, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(rest) != 52 {
		return fmt.Errorf("%q is not sha256:<52 nix32 characters>", s)
	}
	if _, err := store.ParseNix32(rest, 32); err != nil {
		return fmt.Errorf("%q is not nix32: %w", s, err)
	}
	return nil
}
