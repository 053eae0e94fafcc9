package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/internal/s3test"
	"github.com/runpod-comfy/runpod-comfy/runner"
)

// BenchmarkS3Upload uploads a job's outputs (eight 2 MiB images and one 32 MiB video, as
// random bytes) to the SigV4-checking S3 of internal/s3test on loopback over https, as real
// stores are reached: runpod-comfy's S3 sink (minio-go: one signed PUT each with
// UNSIGNED-PAYLOAD and a checksum header, plus the pre-signed URL), against curl --aws-sigv4
// putting the same files to the same server in one process (`-T "{a,b,...}"`, one
// connection, -k for httptest's certificate). Seven rounds, the two sides alternating; the
// median and range of each are reported.
func BenchmarkS3Upload(b *testing.B) {
	if _, err := exec.LookPath("curl"); err != nil {
		b.Skip("curl not installed")
	}
	srv, err := s3test.Start(s3test.Options{Buckets: []string{"outs"}, TLS: true})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	dir := b.TempDir()
	var seed [32]byte
	rng := rand.NewChaCha8(seed)
	type file struct {
		name string
		data []byte
	}
	var files []file
	var total int64
	for i := 0; i < 9; i++ {
		size, name, mime := 2<<20, fmt.Sprintf("img_%02d.png", i), "image/png"
		if i == 8 {
			size, name, mime = 32<<20, "clip_00001.mp4", "video/mp4"
		}
		data := make([]byte, size)
		rng.Read(data)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			b.Fatal(err)
		}
		files = append(files, file{name, data})
		total += int64(size)
		_ = mime
	}
	ctx := context.Background()
	sink, err := runner.NewS3Sink(ctx, runner.S3Options{Endpoint: srv.URL + "/outs", AccessKeyID: srv.AccessKey, SecretAccessKey: srv.Secret, Transport: srv.Client().Transport})
	if err != nil {
		b.Fatal(err)
	}
	ours := func(round int) time.Duration {
		outs := make([]*runner.Output, len(files))
		for i, f := range files {
			sum := sha256.Sum256(f.data)
			mime := "image/png"
			if strings.HasSuffix(f.name, ".mp4") {
				mime = "video/mp4"
			}
			outs[i] = &runner.Output{NodeID: "9", Filename: f.name, Type: "output", Mime: mime, Size: int64(len(f.data)), SHA256: hex.EncodeToString(sum[:]), Bytes: f.data}
		}
		t0 := time.Now()
		if err := runner.Deliver(ctx, outs, runner.ForJob(sink, fmt.Sprintf("ours-%d", round))); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.name
	}
	curl := func(round int) time.Duration {
		cmd := exec.Command("curl", "-sS", "--fail", "-k", "--aws-sigv4", "aws:amz:us-east-1:s3",
			"--user", srv.AccessKey+":"+srv.Secret,
			"-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
			"-T", "{"+strings.Join(names, ",")+"}",
			fmt.Sprintf("%s/outs/curl-%d/", srv.URL, round))
		cmd.Dir = dir
		t0 := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("curl: %v\n%s", err, out)
		}
		return time.Since(t0)
	}
	const rounds = 7
	var a, c []time.Duration
	for i := 0; i < b.N; i++ {
		a, c = a[:0], c[:0]
		for r := 0; r < rounds; r++ {
			if r%2 == 0 {
				a = append(a, ours(r))
				c = append(c, curl(r))
			} else {
				c = append(c, curl(r))
				a = append(a, ours(r))
			}
		}
	}
	// Both sides stored every file, byte for byte.
	for _, prefix := range []string{"ours-0", "curl-0"} {
		for _, f := range files {
			got, _, err := srv.Object("outs", prefix+"/"+f.name)
			if err != nil || string(got) != string(f.data) {
				b.Fatalf("%s/%s not stored intact: %v", prefix, f.name, err)
			}
		}
	}
	med := func(d []time.Duration) (time.Duration, time.Duration, time.Duration) {
		s := append([]time.Duration(nil), d...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)/2], s[0], s[len(s)-1]
	}
	am, alo, ahi := med(a)
	cm, clo, chi := med(c)
	mib := float64(total) / (1 << 20)
	b.ReportMetric(float64(am.Milliseconds()), "ours_ms")
	b.ReportMetric(float64(cm.Milliseconds()), "curl_ms")
	b.ReportMetric(float64(cm)/float64(am), "x_vs_curl")
	b.Logf("%.0f MiB in %d files, %d alternating rounds: runpod-comfy median %s (%s to %s, %.0f MiB/s); curl --aws-sigv4 median %s (%s to %s, %.0f MiB/s)",
		mib, len(files), rounds, am.Round(time.Millisecond), alo.Round(time.Millisecond), ahi.Round(time.Millisecond), mib/am.Seconds(),
		cm.Round(time.Millisecond), clo.Round(time.Millisecond), chi.Round(time.Millisecond), mib/cm.Seconds())
	b.Logf("runpod-comfy rounds %v; curl rounds %v", a, c)
}
