package nixbase32

import (
	"bytes"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for n := 0; n <= 33; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*37 + n)
		}
		s := Encode(b)
		if len(s) != EncodedLen(n) {
			t.Fatalf("len(Encode(%d bytes)) = %d, want %d", n, len(s), EncodedLen(n))
		}
		got, err := Decode(s, n)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("Decode(Encode(%x)) = %x, %v", b, got, err)
		}
	}
	if Encode([]byte{0x1f}) != "0z" {
		t.Error("Encode(0x1f)")
	}
	for _, bad := range []string{"zz", "c0", "0e", "0"} {
		if _, err := Decode(bad, 1); err == nil {
			t.Errorf("Decode(%q) accepted", bad)
		}
	}
}
