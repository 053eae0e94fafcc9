package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/builder"
	"github.com/runpod-comfy/runpod-comfy/builder/git"
	"github.com/runpod-comfy/runpod-comfy/specs"
)

// BenchmarkGitFetch: fetching a 3000-file repository into a fresh bare mirror with our
// Mirrors (go-git) beside `git clone --bare --no-local` of the same repository.
func BenchmarkGitFetch(b *testing.B) {
	src := filepath.Join(b.TempDir(), "src")
	commit := makeSourceRepo(b, src, 3000, 2000)
	ctx := context.Background()
	var ours, cli, oursCPU, cliCPU time.Duration
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		c0, t0 := buildCPUTime(), time.Now()
		m := git.NewMirrors(filepath.Join(dir, "mirrors"), git.Credentials{})
		if _, err := m.Ensure(ctx, src, commit); err != nil {
			b.Fatal(err)
		}
		ours, oursCPU = ours+time.Since(t0), oursCPU+buildCPUTime()-c0
		c1, t1 := buildCPUTime(), time.Now()
		gitRun(b, dir, "clone", "-q", "--bare", "--no-local", src, filepath.Join(dir, "cli.git"))
		cli, cliCPU = cli+time.Since(t1), cliCPU+buildCPUTime()-c1
	}
	b.ReportMetric(ours.Seconds()/float64(b.N), "s_ours")
	b.ReportMetric(cli.Seconds()/float64(b.N), "s_git")
	b.ReportMetric(ours.Seconds()/cli.Seconds(), "x_vs_git")
	b.ReportMetric(oursCPU.Seconds()/cliCPU.Seconds(), "x_cpu_vs_git")
}

// BenchmarkGitExport: exporting the tree of a commit of a 3000-file repository from a bare
// mirror into a directory, ours beside `git archive | tar -x` from the same mirror.
func BenchmarkGitExport(b *testing.B) {
	src := filepath.Join(b.TempDir(), "src")
	commit := makeSourceRepo(b, src, 3000, 2000)
	ctx := context.Background()
	m := git.NewMirrors(filepath.Join(b.TempDir(), "mirrors"), git.Credentials{})
	if _, err := m.Ensure(ctx, src, commit); err != nil {
		b.Fatal(err)
	}
	var ours, cli, oursCPU, cliCPU time.Duration
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		c0, t0 := buildCPUTime(), time.Now()
		if err := m.Export(ctx, src, commit, filepath.Join(dir, "ours"), git.ExportOptions{}); err != nil {
			b.Fatal(err)
		}
		ours, oursCPU = ours+time.Since(t0), oursCPU+buildCPUTime()-c0
		out := filepath.Join(dir, "cli")
		os.Mkdir(out, 0o755)
		c1, t1 := buildCPUTime(), time.Now()
		cmd := exec.Command("sh", "-c", `git --git-dir="$1" archive "$2" | tar -x -C "$3"`, "sh", m.Path(src), commit, out)
		if o, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("git archive: %v\n%s", err, o)
		}
		cli, cliCPU = cli+time.Since(t1), cliCPU+buildCPUTime()-c1
	}
	b.ReportMetric(ours.Seconds()/float64(b.N), "s_ours")
	b.ReportMetric(cli.Seconds()/float64(b.N), "s_git")
	b.ReportMetric(ours.Seconds()/cli.Seconds(), "x_vs_git")
	b.ReportMetric(oursCPU.Seconds()/cliCPU.Seconds(), "x_cpu_vs_git")
}

// coldSpec makes n custom-node repositories of files files each and a ComfyUI stand-in, and
// returns a spec pinning them by full commit.
func coldSpec(b *testing.B, n, files int) *specs.Spec {
	dir := b.TempDir()
	comfy := filepath.Join(dir, "ComfyUI")
	spec := &specs.Spec{SchemaVersion: 2, VersionID: "bench",
		Comfy: specs.Comfy{Repo: comfy, Commit: makeSourceRepo(b, comfy, files, 1500)}}
	for i := 0; i < n; i++ {
		repo := filepath.Join(dir, fmt.Sprintf("node%02d", i))
		c := makeSourceRepo(b, repo, files, 1500)
		spec.CustomNodes = append(spec.CustomNodes, specs.CustomNode{Name: fmt.Sprintf("node%02d", i), Repo: repo, Commit: c})
	}
	return spec
}

// BenchmarkColdBuild20Nodes: a cold build (empty ROOT) of ComfyUI plus 20 custom nodes of
// 300 files each, beside the way people restore today: a sequential `git clone` and
// `git checkout <commit>` of each repository.
func BenchmarkColdBuild20Nodes(b *testing.B) {
	spec := coldSpec(b, 20, 300)
	ctx := context.Background()
	var ours, cli, oursCPU, cliCPU time.Duration
	for i := 0; i < b.N; i++ {
		root := filepath.Join(b.TempDir(), "root")
		c0, t0 := buildCPUTime(), time.Now()
		if _, err := builder.Build(ctx, builder.BuildOptions{Root: root, Spec: spec}); err != nil {
			b.Fatal(err)
		}
		ours, oursCPU = ours+time.Since(t0), oursCPU+buildCPUTime()-c0
		dir := b.TempDir()
		c1, t1 := buildCPUTime(), time.Now()
		repos := []struct{ repo, commit string }{{spec.Comfy.Repo, spec.Comfy.Commit}}
		for _, n := range spec.CustomNodes {
			repos = append(repos, struct{ repo, commit string }{n.Repo, n.Commit})
		}
		for j, r := range repos {
			d := filepath.Join(dir, fmt.Sprint(j))
			gitRun(b, dir, "clone", "-q", "--no-local", r.repo, d)
			gitRun(b, d, "checkout", "-q", r.commit)
		}
		cli, cliCPU = cli+time.Since(t1), cliCPU+buildCPUTime()-c1
	}
	b.ReportMetric(ours.Seconds()/float64(b.N), "s_ours")
	b.ReportMetric(cli.Seconds()/float64(b.N), "s_git")
	b.ReportMetric(ours.Seconds()/cli.Seconds(), "x_vs_git")
	b.ReportMetric(oursCPU.Seconds()/cliCPU.Seconds(), "x_cpu_vs_git")
}

// BenchmarkNoopBuild: building a version that is already built (metadata only).
func BenchmarkNoopBuild(b *testing.B) {
	spec := coldSpec(b, 20, 50)
	ctx := context.Background()
	root := filepath.Join(b.TempDir(), "root")
	if _, err := builder.Build(ctx, builder.BuildOptions{Root: root, Spec: spec}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	t0 := time.Now()
	for i := 0; i < b.N; i++ {
		res, err := builder.Build(ctx, builder.BuildOptions{Root: root, Spec: spec})
		if err != nil {
			b.Fatal(err)
		}
		if res.Built != 0 {
			b.Fatalf("no-op build built %d objects", res.Built)
		}
	}
	b.ReportMetric(float64(time.Since(t0).Microseconds())/1000/float64(b.N), "ms_noop")
}
