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
