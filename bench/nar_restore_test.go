package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/store/nar"
)

// BenchmarkNarRestore unpacks the NAR of a 150 MB venv-like tree (about 4,500 files) held in
// memory with nar.Restore, beside `tar -x` of an uncompressed tar of the same tree in the same
// run: the per-file cost of substitution without zstd or the store.
func BenchmarkNarRestore(b *testing.B) {
	tmp := b.TempDir()
	tree := filepath.Join(tmp, "tree")
	venvLikeTree(b, tree, 150<<20)
	var buf bytes.Buffer
	if err := nar.Dump(&buf, tree); err != nil {
		b.Fatal(err)
	}
	tarFile := filepath.Join(tmp, "tree.tar")
	sh(b, fmt.Sprintf("tar -c -C %s -f %s .", tree, tarFile))
	mb := float64(buf.Len()) / 1e6
	for i := 0; i < b.N; i++ {
		dst := filepath.Join(tmp, fmt.Sprintf("restore%d", i))
		syscall.Sync()
		t0 := time.Now()
		if err := nar.Restore(bytes.NewReader(buf.Bytes()), dst); err != nil {
			b.Fatal(err)
		}
		restore := time.Since(t0)

		untar := filepath.Join(tmp, fmt.Sprintf("untar%d", i))
		os.MkdirAll(untar, 0o755)
		syscall.Sync()
		tarX := sh(b, fmt.Sprintf("tar -x -C %s -f %s", untar, tarFile))

		b.ReportMetric(mb/restore.Seconds(), "MB/s_restore")
		b.ReportMetric(mb/tarX.Seconds(), "MB/s_tar_x")
		b.ReportMetric(tarX.Seconds()/restore.Seconds(), "restore_x_vs_tar_x")
		b.ReportMetric(restore.Seconds(), "s_restore")
		b.ReportMetric(tarX.Seconds(), "s_tar_x")
		os.RemoveAll(dst)
		os.RemoveAll(untar)
	}
}
