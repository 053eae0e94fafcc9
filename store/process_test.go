package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/store/nar"
)

// The reliability tests run real processes: the test binary re-executes itself as a helper
// (STORE_TEST_HELPER names the role), and the parent kills helpers with SIGKILL.

func TestMain(m *testing.M) {
	switch role := os.Getenv("STORE_TEST_HELPER"); role {
	case "":
		os.Exit(m.Run())
	default:
		if err := runHelper(role, os.Getenv("STORE_TEST_ROOT"), os.Getenv("STORE_TEST_ARG")); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
}

func helperStore(root string) (*Store, error) {
	return Open(root, WithLeaseTTL(3*time.Second), WithClockSkew(0), WithPollInterval(10*time.Millisecond))
}

// killObject is object k of helper run i: a directory of 6 small files in 3 subdirectories.
func killObject(i, k int) (Path, MakeFunc) {
	name := fmt.Sprintf("obj-%d-%d", i, k)
	p, _ := PathFor(DrvFingerprint(name, name), name)
	return p, func(ctx context.Context, out string) error {
		for f := 0; f < 6; f++ {
			dir := filepath.Join(out, fmt.Sprintf("d%d", f%3))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			content := strings.Repeat(fmt.Sprintf("%s file %d\n", name, f), 50)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", f)), []byte(content), 0o644); err != nil {
				return err
			}
		}
		return nil
	}
}

// oldObject and newObject are the objects of the GC-while-building test: new references old.
func oldObject() (Path, MakeFunc) {
	p, _ := PathFor(DrvFingerprint("old", "old"), "old")
	return p, writeTree(map[string]string{"lib/a.py": "print('a')\n", "lib/b.py": "print('b')\n"})
}

func newObject(old Path) (Path, MakeFunc) {
	p, _ := PathFor(DrvFingerprint("new", "comfy-new"), "comfy-new")
	return p, func(ctx context.Context, out string) error {
		time.Sleep(150 * time.Millisecond) // GC runs meanwhile
		return writeTree(map[string]string{"lib": "->../" + old.String() + "/lib", "manifest.json": "{}\n"})(ctx, out)
	}
}

func runHelper(role, root, arg string) error {
	s, err := helperStore(root)
	if err != nil {
		return err
	}
	ctx := context.Background()
	switch role {
	case "add-loop": // add objects obj-<arg>-0, -1, ... until killed
		i, _ := strconv.Atoi(arg)
		for k := 0; ; k++ {
			p, fn := killObject(i, k)
			if _, err := s.Add(ctx, p, AddOptions{Kind: "test"}, fn); err != nil {
				return err
			}
		}
	case "add-once", "add-once-final": // add one object; the build leaves a marker file per call
		p, _ := PathFor(DrvFingerprint("shared", "shared"), "shared")
		m, err := s.Add(ctx, p, AddOptions{Kind: "test", AtFinalPath: role == "add-once-final"}, func(ctx context.Context, out string) error {
			f, err := os.CreateTemp(arg, "build-")
			if err != nil {
				return err
			}
			f.Close()
			time.Sleep(300 * time.Millisecond)
			return writeTree(map[string]string{"a": "shared a", "b/c": "shared c"})(ctx, out)
		})
		if err != nil {
			return err
		}
		fmt.Println(m.Path, m.NarHash)
		return nil
	case "lease-new-hang": // write a lease's .new- record as createExclusive does, then hang until killed
		now := time.Now().UTC()
		rec, _ := json.Marshal(LeaseRecord{Host: s.host, PID: s.pid, Started: now, Expires: now.Add(s.leaseTTL), Nonce: randHex(8)})
		if err := writeSynced(s.leaseFile(arg)+".new-"+randHex(6), rec, os.O_CREATE|os.O_EXCL|os.O_WRONLY); err != nil {
			return err
		}
		fmt.Println("ready")
		select {}
	case "build-root": // root old, build new referencing it, set the root
		old, oldFn := oldObject()
		nw, newFn := newObject(old)
		tr, err := s.AddTempRoot(ctx, []Path{old, nw})
		if err != nil {
			return err
		}
		defer tr.Close()
		if !s.Valid(old) { // GC removed it before our root was written: make it again
			if _, err := s.Add(ctx, old, AddOptions{Kind: "test"}, oldFn); err != nil {
				return err
			}
			fmt.Println("rebuilt old")
		}
		// At the final path: while it builds, an object without metadata sits in the store,
		// and GC (grace 0) must recognise it as leased, not as debris.
		if _, err := s.Add(ctx, nw, AddOptions{Kind: "root", References: []Path{old}, AtFinalPath: true}, newFn); err != nil {
			return err
		}
		_, err = s.SetRoot("new", nw)
		return err
	}
	return fmt.Errorf("unknown helper role %q", role)
}

func helperCmd(t *testing.T, role, root, arg string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "STORE_TEST_HELPER="+role, "STORE_TEST_ROOT="+root, "STORE_TEST_ARG="+arg)
	return cmd
}

// TestKillDuringAdd kills a process adding objects at random moments, 50 times. Afterwards
// verify is clean, nothing without metadata is listed as valid, adding every object again
// succeeds, and GC clears the debris.
func TestKillDuringAdd(t *testing.T) {
	root := t.TempDir()
	start := time.Now()
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	const runs = 50
	for i := 0; i < runs; i++ {
		cmd := helperCmd(t, "add-loop", root, strconv.Itoa(i))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case err := <-exited:
			t.Fatalf("helper %d exited before the kill: %v\n%s", i, err, stderr.String())
		case <-time.After(time.Duration(5+rng.Intn(60)) * time.Millisecond):
		}
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
	s, _ := Open(root, WithLeaseTTL(2*time.Second), WithClockSkew(0), WithPollInterval(10*time.Millisecond))
	ctx := context.Background()
	stages, _ := os.ReadDir(filepath.Join(s.Dir(), ".tmp"))
	leases, _ := os.ReadDir(filepath.Join(s.Dir(), ".locks"))
	rep, err := s.Verify(ctx, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 {
		t.Fatalf("verify after kills: %+v", rep.Problems)
	}
	t.Logf("kills and verify took %s", time.Since(start))
	t.Logf("after %d kills: %d objects valid, %d without metadata, %d stages, %d leases left behind",
		runs, rep.Checked, len(rep.Unregistered), len(stages), len(leases))
	listed, bad, err := s.List()
	if err != nil || len(bad) > 0 {
		t.Fatal(err, bad)
	}
	for _, m := range listed {
		if _, err := os.Lstat(s.Abs(m.Path)); err != nil {
			t.Errorf("listed object %s missing on disk", m.Path)
		}
	}
	for _, u := range rep.Unregistered {
		p := u
		if s.Valid(p) {
			t.Errorf("%s without metadata reported valid", p)
		}
		for _, m := range listed {
			if m.Path == p {
				t.Errorf("%s without metadata listed", p)
			}
		}
	}
	// Add again: every object each run started, plus the next one.
	maxK := map[int]int{}
	seen := func(name string) {
		var i, k int
		if _, err := fmt.Sscanf(name, "obj-%d-%d", &i, &k); err == nil && k+1 > maxK[i] {
			maxK[i] = k + 1
		}
	}
	ents, _ := os.ReadDir(s.Dir())
	for _, e := range ents {
		if p, err := ParsePath(e.Name()); err == nil {
			seen(p.Name())
		}
	}
	for _, m := range listed {
		seen(m.Path.Name())
	}
	added := 0
	for i := 0; i < runs; i++ {
		for k := 0; k <= maxK[i]; k++ {
			p, fn := killObject(i, k)
			m, err := s.Add(ctx, p, AddOptions{Kind: "test"}, fn)
			if err != nil {
				t.Fatalf("adding %s again: %v", p, err)
			}
			want, _, _ := hashOf(t, fn)
			if m.NarHash != want {
				t.Errorf("%s: NAR hash %s, want %s", p, m.NarHash, want)
			}
			added++
		}
	}
	t.Logf("re-adding done at %s", time.Since(start))
	rep, _ = s.Verify(ctx, VerifyOptions{})
	if !rep.OK() || len(rep.Problems) != 0 {
		t.Errorf("verify after re-adding: %+v", rep.Problems)
	}
	plan, err := s.PlanGC(ctx, GCOptions{Grace: 0})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plan.Execute(ctx); err != nil {
		t.Fatal(err)
	}
	rep, _ = s.Verify(ctx, VerifyOptions{})
	if len(rep.Unregistered) != 0 {
		t.Errorf("debris left after gc: %v", rep.Unregistered)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), ".tmp")); len(ents) != 0 {
		t.Errorf("stages left after gc: %d", len(ents))
	}
	t.Logf("%d objects added again", added)
}

// hashOf makes fn's tree in a scratch directory and returns its NAR hash (modes other than
// the owner x bit do not enter a NAR, so no canonicalisation is needed).
func hashOf(t *testing.T, fn MakeFunc) (string, int64, error) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "x")
	if err := fn(context.Background(), out); err != nil {
		t.Fatal(err)
	}
	return nar.Hash(out)
}

// TestFourProcessesAddOnce starts four processes adding the same object at once, built in
// staging and then at its final path: it is built exactly once and all four get it.
func TestFourProcessesAddOnce(t *testing.T) {
	for _, role := range []string{"add-once", "add-once-final"} {
		t.Run(role, func(t *testing.T) { fourAddOnce(t, role) })
	}
}

func fourAddOnce(t *testing.T, role string) {
	root := t.TempDir()
	markers := t.TempDir()
	var wg sync.WaitGroup
	outs := make([]string, 4)
	errs := make([]error, 4)
	for i := range outs {
		cmd := helperCmd(t, role, root, markers)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cmd.Wait(); err != nil {
				errs[i] = fmt.Errorf("%v: %s", err, stderr.String())
			}
			outs[i] = strings.TrimSpace(stdout.String())
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("process %d: %v", i, err)
		}
	}
	for i := range outs {
		if outs[i] == "" || outs[i] != outs[0] {
			t.Fatalf("processes disagree: %q", outs)
		}
	}
	builds, _ := os.ReadDir(markers)
	if len(builds) != 1 {
		t.Fatalf("built %d times, want once", len(builds))
	}
	s, _ := Open(root)
	rep, _ := s.Verify(context.Background(), VerifyOptions{})
	if !rep.OK() || rep.Checked != 1 {
		t.Errorf("verify: %+v", rep)
	}
}

// TestGCWhileBuilding runs GC over and over while another process roots an old unrooted
// object, builds a new one referencing it and roots that: nothing the build needs is deleted,
// while real garbage is.
func TestGCWhileBuilding(t *testing.T) {
	root := t.TempDir()
	s, _ := helperStore(root)
	ctx := context.Background()
	old, oldFn := oldObject()
	if _, err := s.Add(ctx, old, AddOptions{Kind: "test"}, oldFn); err != nil {
		t.Fatal(err)
	}
	garbage := mustPath(t, DrvFingerprint("garbage", "garbage"), "garbage")
	s.Add(ctx, garbage, AddOptions{}, writeTree(map[string]string{"g": "g"}))

	cmd := helperCmd(t, "build-root", root, "")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	runs := 0
	var herr error
loop:
	for {
		select {
		case herr = <-done:
			break loop
		default:
		}
		plan, err := s.PlanGC(ctx, GCOptions{Grace: 0})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := plan.Execute(ctx); err != nil {
			t.Fatal(err)
		}
		runs++
	}
	if herr != nil {
		t.Fatalf("builder: %v\n%s", herr, stderr.String())
	}
	nw, _ := newObject(old)
	if got, err := s.RootOf("new"); err != nil || got != nw {
		t.Fatalf("root = %s, %v", got, err)
	}
	closure, err := s.Closure(nw)
	if err != nil || len(closure) != 2 {
		t.Fatalf("closure of the new root: %v, %v", closure, err)
	}
	if _, err := os.Stat(filepath.Join(s.Abs(nw), "lib", "a.py")); err != nil {
		t.Errorf("the new root's link into old is broken: %v", err)
	}
	// One more GC after the build: the root keeps both; the garbage is gone.
	plan, _ := s.PlanGC(ctx, GCOptions{})
	plan.Execute(ctx)
	if s.Valid(garbage) {
		t.Error("garbage survived GC")
	}
	rep, _ := s.Verify(ctx, VerifyOptions{})
	if !rep.OK() || rep.Checked != 2 {
		t.Errorf("verify: %+v", rep)
	}
	t.Logf("%d GC runs during the build; builder said %q", runs, strings.TrimSpace(stdout.String()))
	if runs == 0 {
		t.Error("GC never ran during the build")
	}
}

// TestGCRemovesStaleLeaseNewFiles: a process SIGKILLed between writing a lease's .new- record
// and linking it leaves the record behind; gc removes it (its writer is gone), but keeps the
// record of a live process and a fresh one from another host.
func TestGCRemovesStaleLeaseNewFiles(t *testing.T) {
	root := t.TempDir()
	s, err := helperStore(root)
	if err != nil {
		t.Fatal(err)
	}
	cmd := helperCmd(t, "lease-new-hang", root, "killed")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		cmd.Process.Kill()
		t.Fatalf("helper: %q %v", line, err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	locks := filepath.Join(root, "store", ".locks")
	write := func(name string, rec LeaseRecord, age time.Duration) string {
		f := filepath.Join(locks, name)
		b, _ := json.Marshal(rec)
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if age > 0 {
			old := time.Now().Add(-age)
			os.Chtimes(f, old, old)
		}
		return f
	}
	now := time.Now().UTC()
	live := write("live.lease.new-aaaaaa", LeaseRecord{Host: s.host, PID: os.Getpid(), Expires: now.Add(time.Minute)}, time.Second)
	foreignFresh := write("ff.lease.new-bbbbbb", LeaseRecord{Host: "other-host", PID: 1, Expires: now.Add(time.Minute)}, 0)
	foreignOld := write("fo.lease.new-cccccc", LeaseRecord{Host: "other-host", PID: 1, Expires: now}, time.Hour)
	garbageOld := write("go.lease.break.new-dddddd", LeaseRecord{}, time.Hour)
	os.WriteFile(garbageOld, []byte("{"), 0o644)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(garbageOld, old, old)

	killed, _ := filepath.Glob(filepath.Join(locks, "killed.lease.new-*"))
	if len(killed) != 1 {
		t.Fatalf("the killed helper left %v, want one .new- record", killed)
	}
	plan, err := s.PlanGC(context.Background(), GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plan.Execute(context.Background()); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]bool{killed[0]: false, live: true, foreignFresh: true, foreignOld: false, garbageOld: false} {
		if _, err := os.Lstat(f); (err == nil) != want {
			t.Errorf("%s: exists %v after gc, want %v", filepath.Base(f), err == nil, want)
		}
	}
}
