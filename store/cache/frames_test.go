package cache

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestFrameWriterRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, size := range []int{0, 1, frameSize - 1, frameSize, 3*frameSize + 12345} {
		src := make([]byte, size)
		for i := range src {
			src[i] = "abcdefgh"[rng.IntN(8)]
		}
		var out bytes.Buffer
		fw, err := newFrameWriter(&out, zstd.SpeedDefault, 2)
		if err != nil {
			t.Fatal(err)
		}
		// Odd write sizes cross frame boundaries.
		for off := 0; off < size; {
			n := min(size-off, 1+rng.IntN(3<<20))
			if _, err := fw.Write(src[off : off+n]); err != nil {
				t.Fatal(err)
			}
			off += n
		}
		if err := fw.Close(); err != nil {
			t.Fatal(err)
		}
		dec, _ := zstd.NewReader(&out)
		got, err := io.ReadAll(dec)
		dec.Close()
		if err != nil || !bytes.Equal(got, src) {
			t.Fatalf("size %d: round trip failed (%v, %d bytes back)", size, err, len(got))
		}
	}
}

type failingWriter struct{}

func (failingWriter) Write(p []byte) (int, error) { return 0, errors.New("disk full") }

func TestFrameWriterError(t *testing.T) {
	fw, err := newFrameWriter(failingWriter{}, zstd.SpeedDefault, 2)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5*frameSize)
	fw.Write(buf) // may or may not see the error yet
	if err := fw.Close(); err == nil || err.Error() != "disk full" {
		t.Fatalf("Close = %v, want disk full", err)
	}
}
