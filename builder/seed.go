package builder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/builder/git"
	"github.com/runpod-comfy/runpod-comfy/builder/model"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// This file takes over what the seed tool (gen4sp/runpodComfyUICtrlVersion) left on a volume:
// its locks, its build directories and the models in its models directory.

// adoptModels stores the models a models directory (opts.Models.AdoptDirs) already holds at
// their targets with the locked checksum, before the build would download them.
func adoptModels(ctx context.Context, s *store.Store, opts BuildOptions, plan *Plan) error {
	dirs := opts.Models.AdoptDirs
	if len(dirs) == 0 || opts.SkipModels || opts.Spec.Options.SkipModels || plan.Lock == nil {
		return nil
	}
	for _, ml := range plan.Lock.Models {
		m, _ := model.SpecModel(opts.Spec, ml.Target)
		file, how, err := model.Adopt(ctx, s, dirs, ml, m.Pos)
		if err != nil {
			return &model.ModelError{Target: ml.Target, Pos: m.Pos, Err: fmt.Errorf("adopting the file already in the models directory: %w", err)}
		}
		if file != "" {
			opts.Progress.Logf("model %s: adopted %s into the store (%s, %s; the file is left as it is), not downloaded", ml.Target, file, how, ml.Checksum)
		}
	}
	return nil
}

// SeedBuildDir is where a real directory the seed tool left at ROOT/builds/comfy-<id> is
// moved: ROOT/builds/seed-comfy-<id> (with -2, -3, ... when taken).
func SeedBuildDir(root, id string) string {
	return filepath.Join(root, "builds", "seed-"+store.RootPrefix+id)
}

// MoveAsideSeedBuild moves a real directory (or file) at ROOT/builds/comfy-<id>, which the
// seed tool leaves there as its ComfyUI checkout, out of the way of the root link: it is
// renamed (never deleted) to SeedBuildDir, and the new place is returned. A symlink (our root
// link) or nothing there returns "".
func MoveAsideSeedBuild(root, id string) (string, error) {
	link := filepath.Join(root, "builds", store.RootPrefix+id)
	fi, err := os.Lstat(link)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return "", nil
	}
	base := SeedBuildDir(root, id)
	dst := base
	for n := 2; ; n++ {
		if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			break
		}
		dst = fmt.Sprintf("%s-%d", base, n)
	}
	if err := os.Rename(link, dst); err != nil {
		return "", fmt.Errorf("moving the seed tool's build %s aside: %w", link, err)
	}
	return dst, nil
}

// seedLock is the part of a lock written by the seed tool (resolved/<id>.lock.json without
// lock_version) that is carried over: the pinned commits.
type seedLock struct {
	SchemaVersion int     `json:"schema_version"`
	VersionID     string  `json:"version_id"`
	Comfy         seedGit `json:"comfy"`
	CustomNodes   []struct {
		Name string `json:"name"`
		seedGit
	} `json:"custom_nodes"`
}

type seedGit struct {
	Repo   string `json:"repo"`
	Ref    string `json:"ref"`
	Commit string `json:"commit"`
}

// SeedLockSuffix is appended to a seed lock's file name when it is kept beside the lock that
// replaces it.
const SeedLockSuffix = ".seed"

// readSeedLock reads a lock written by the seed tool and returns the pins it carries over to
// spec, as an old lock for Resolve: each commit it pinned (40 or 64 hex) for ComfyUI and for
// every custom node of the same name and repository, with the ref the spec asks for, so that
// Resolve keeps the pin instead of resolving the branch again. It returns nil when data is
// not a seed lock.
func readSeedLock(data []byte, spec *specs.Spec) *specs.Lock {
	var head map[string]json.RawMessage
	if json.Unmarshal(data, &head) != nil {
		return nil
	}
	if _, ok := head["lock_version"]; ok {
		return nil
	}
	if _, ok := head["comfy"]; !ok {
		return nil
	}
	var sl seedLock
	if json.Unmarshal(data, &sl) != nil {
		return nil
	}
	old := &specs.Lock{LockVersion: specs.LockVersion, VersionID: spec.VersionID}
	pin := func(g seedGit, repo, ref string) (specs.GitLock, bool) {
		c := strings.ToLower(strings.TrimSpace(g.Commit))
		if !specs.IsFullCommit(c) || git.CleanURL(strings.TrimSpace(g.Repo)) != git.CleanURL(repo) {
			return specs.GitLock{}, false
		}
		return specs.GitLock{Repo: git.CleanURL(repo), Ref: ref, Commit: c}, true
	}
	if g, ok := pin(sl.Comfy, spec.Comfy.Repo, spec.Comfy.Ref); ok {
		old.Comfy = g
	}
	for _, n := range spec.CustomNodes {
		for _, sn := range sl.CustomNodes {
			name := sn.Name
			if name == "" {
				name = specs.NodeNameFromRepo(sn.Repo)
			}
			if name != n.Name {
				continue
			}
			if g, ok := pin(sn.seedGit, n.Repo, n.Ref); ok {
				g.Submodules = n.Submodules
				old.CustomNodes = append(old.CustomNodes, specs.NodeLock{Name: n.Name, GitLock: g})
			}
		}
	}
	return old
}

// keepSeedLock copies the seed lock at file to file+SeedLockSuffix (unless a copy is there
// already), before the migrated lock replaces it.
func keepSeedLock(file string, data []byte) (string, error) {
	kept := file + SeedLockSuffix
	if _, err := os.Lstat(kept); err == nil {
		return kept, nil
	}
	if err := os.WriteFile(kept, data, 0o644); err != nil {
		return "", fmt.Errorf("keeping the seed tool's lock: %w", err)
	}
	return kept, nil
}

// readSeedLockFile reads file as a seed tool's lock for spec into *old (and its bytes into
// *data); false when it is not one.
func readSeedLockFile(file string, spec *specs.Spec, old **specs.Lock, data *[]byte) bool {
	b, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	l := readSeedLock(b, spec)
	if l == nil {
		return false
	}
	*old, *data = l, b
	return true
}
