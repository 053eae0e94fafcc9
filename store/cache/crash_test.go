package cache

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runpod-comfy/runpod-comfy/store"
)

// TestMain runs the package's tests, or, when CACHE_TEST_CHILD_ROOT is set, acts as the
// child process of TestPushKilled: it pushes the closure named by the environment, slowly,
// until it is killed.
func TestMain(m *testing.M) {
	if os.Getenv("CACHE_TEST_CHILD_ROOT") != "" {
		if err := pushChild(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func pushChild() error {
	st, err := store.Open(os.Getenv("CACHE_TEST_CHILD_ROOT"))
	if err != nil {
		return err
	}
	p, err := store.ParsePath(os.Getenv("CACHE_TEST_CHILD_PATH"))
	if err != nil {
		return err
	}
	_, err = Push(context.Background(), st, NewFileBackend(os.Getenv("CACHE_TEST_CHILD_CACHE")), []store.Path{p}, PushOptions{Jobs: 2, Progress: func(PushEvent) {
		time.Sleep(30 * time.Millisecond) // leave the parent time to kill us mid-push
	}})
	return err
}

// scanCache checks the closure invariant of a file cache: every narinfo parses, its NAR file
// exists with the narinfo's size, and every reference has a narinfo. It returns the number
// of narinfos.
func scanCache(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".narinfo") {
			continue
		}
		n++
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		ni, err := ParseNarInfo(data, name)
		if err != nil {
			t.Fatalf("torn narinfo: %v", err)
		}
		fi, err := os.Stat(filepath.Join(dir, ni.URL))
		if err != nil {
			t.Errorf("%s: NAR missing: %v", name, err)
		} else if fi.Size() != ni.FileSize {
			t.Errorf("%s: NAR has %d bytes, narinfo says %d", name, fi.Size(), ni.FileSize)
		}
		for _, r := range ni.References {
			if _, err := os.Stat(filepath.Join(dir, narInfoKey(r))); err != nil {
				t.Errorf("%s: reference %s has no narinfo", name, r)
			}
		}
	}
	return n
}

// TestPushKilled kills a pushing child process with SIGKILL mid-push, then checks that the
// cache holds no narinfo whose NAR or references are missing, and that a second push
// completes the cache.
func TestPushKilled(t *testing.T) {
	root := t.TempDir()
	makeRemovable(t, root)
	st, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	c := buildTestClosure(t, st, "", 24)
	cacheDir := t.TempDir()

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "CACHE_TEST_CHILD_ROOT="+root, "CACHE_TEST_CHILD_CACHE="+cacheDir, "CACHE_TEST_CHILD_PATH="+c.Root.String())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill as soon as the first narinfo is visible: uploads are then in flight.
	deadline := time.Now().Add(60 * time.Second)
	for {
		m, _ := filepath.Glob(filepath.Join(cacheDir, "*.narinfo"))
		if len(m) > 0 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("child pushed nothing in 60 s")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	n := scanCache(t, cacheDir)
	t.Logf("killed with %d of %d narinfos in the cache", n, len(c.All))
	if n == 0 {
		t.Fatal("no narinfo after the kill")
	}
	if n == len(c.All) {
		t.Fatal("the child had pushed the whole closure before the kill: no interrupted push was checked")
	}

	// Pushing again completes the cache, and the result substitutes.
	res := pushT(t, st, NewFileBackend(cacheDir), []store.Path{c.Root}, nil)
	if res.Pushed+res.Skipped != len(c.All) || res.Skipped != n {
		t.Fatalf("second push: %+v, %d were in the cache", res, n)
	}
	if got := scanCache(t, cacheDir); got != len(c.All) {
		t.Fatalf("%d narinfos after the second push, want %d", got, len(c.All))
	}
	dst := openStore(t)
	s := &Substituter{Caches: []Backend{NewFileBackend(cacheDir)}, AllowUnsigned: true}
	if _, err := s.Substitute(context.Background(), dst, c.Root); err != nil {
		t.Fatal(err)
	}
	checkSameObjects(t, st, dst, c.All, "substituted:file://"+cacheDir)
}
