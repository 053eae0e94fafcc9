package model

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/runpod-comfy/runpod-comfy/internal/rawfile"
	"github.com/runpod-comfy/runpod-comfy/specs"
	"github.com/runpod-comfy/runpod-comfy/store"
)

// FromFirstUseLocal is a lock checksum trusted on first use from a file that was already in a
// models directory (Options.AdoptDirs), as a first download would be.
const FromFirstUseLocal = "first-use-local"

// Adoption is how a file from a models directory was placed in the store.
const (
	AdoptReflink  = "reflink"
	AdoptHardLink = "hard link"
	AdoptCopy     = "copy"
)

// AdoptCandidate returns the file a models directory of dirs already holds for target
// (<dir>/<target>, symlinks followed), or "" when none holds a regular file there. Nothing
// outside the directory is reached through the target: targets are clean relative paths.
func AdoptCandidate(dirs []string, target string) string {
	if target == "" || filepath.IsAbs(target) || strings.HasPrefix(target, "..") {
		return ""
	}
	for _, dir := range dirs {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(target))
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// Adopt stores the file a models directory already holds for ml (AdoptCandidate) as ml's
// object when its checksum is ml.Checksum, so that it is not downloaded again. The user's file
// is never modified or moved: the object is a reflink of it, else a hard link (on the same
// filesystem; the store leaves the file's mode and times alone), else a copy. It returns the
// file and how it was placed, or "" when there is nothing to adopt (no file, another
// checksum, or the object is already valid).
func Adopt(ctx context.Context, s *store.Store, dirs []string, ml specs.ModelLock, pos specs.Pos) (file, how string, err error) {
	file = AdoptCandidate(dirs, ml.Target)
	if file == "" || s == nil {
		return "", "", nil
	}
	d, err := Derivation(ml, pos)
	if err != nil {
		return "", "", err
	}
	if s.Valid(d.Path) {
		return "", "", nil
	}
	want, err := ParseChecksum(ml.Checksum)
	if err != nil {
		return "", "", err
	}
	got, size, err := hashFile(ctx, file, want.Algo)
	if err != nil {
		return "", "", err
	}
	if got != want || (ml.Size > 0 && size != ml.Size) {
		return "", "", nil // another file: downloaded as usual
	}
	return storeAdopted(ctx, s, d.Path, d.Kind, d.CanonicalJSON(), d.Fixed.CA, file, want)
}

// storeAdopted registers file as the object p, checking on the way in that it still has
// checksum want.
func storeAdopted(ctx context.Context, s *store.Store, p store.Path, kind string, derivation []byte, ca, file string, want Checksum) (string, string, error) {
	var how string
	_, err := s.Add(ctx, p, store.AddOptions{Kind: kind, Derivation: derivation, CA: ca, KeepHardLink: true},
		func(ctx context.Context, out string) error {
			var err error
			how, err = placeAdopted(file, out)
			if err != nil {
				return err
			}
			// The file may have changed since it was hashed: check what the store gets.
			got, _, err := hashFile(ctx, out, want.Algo)
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("%s changed while it was adopted: %s, want %s", file, got, want)
			}
			return nil
		})
	if err != nil {
		return "", "", err
	}
	return file, how, nil
}

// placeAdopted makes out a reflink of file, else a hard link to it, else a copy.
func placeAdopted(file, out string) (string, error) {
	if err := reflink(file, out); err == nil {
		return AdoptReflink, nil
	}
	if fi, err := os.Stat(file); err == nil && fi.Mode()&0o111 == 0 {
		if err := os.Link(file, out); err == nil {
			return AdoptHardLink, nil
		}
	}
	if err := rawfile.CopyFile(out, file, 0o644); err != nil {
		return "", err
	}
	return AdoptCopy, nil
}

// reflink makes out, which must not exist, a clone of file sharing its blocks (FICLONE:
// btrfs, XFS, ...). On failure out is removed.
func reflink(file, out string) error {
	src, err := os.Open(file)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	err = unix.IoctlFileClone(int(dst.Fd()), int(src.Fd()))
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out)
		return err
	}
	return nil
}

// adoptFirstUse trusts on first use the file a models directory already holds for a model
// whose spec gives no checksum, as a first download would be trusted: it is hashed, stored
// and recorded in the lock (checksum_from "first-use-local"). It returns false when no models
// directory holds the target.
func (r *Resolver) adoptFirstUse(ctx context.Context, m specs.Model, ml specs.ModelLock, name string) (specs.ModelLock, bool, error) {
	file := AdoptCandidate(r.AdoptDirs, ml.Target)
	if file == "" || r.Store == nil {
		return ml, false, nil
	}
	c, size, err := hashFile(ctx, file, SHA256)
	if err != nil {
		return ml, false, err
	}
	ml.Checksum, ml.Size, ml.ChecksumFrom = c.String(), size, FromFirstUseLocal
	if err := r.setPath(&ml, c, name); err != nil {
		return ml, false, err
	}
	d, err := Derivation(ml, m.Pos)
	if err != nil {
		return ml, false, err
	}
	how := "already in the store"
	if !r.Store.Valid(d.Path) {
		if _, how, err = storeAdopted(ctx, r.Store, d.Path, d.Kind, d.CanonicalJSON(), d.Fixed.CA, file, c); err != nil {
			return ml, false, err
		}
	}
	if r.Warnf != nil {
		where := ""
		if p := m.Pos.String(); p != "" {
			where = " (" + p + ")"
		}
		r.Warnf("warning: model %s%s has no checksum in the spec: the file already at %s was trusted on first use as %s (%s into the store, the file left as it is), instead of downloading it; the lock records it and later builds verify it (add checksum = %q to the spec to pin it)",
			ml.Target, where, file, ml.Checksum, how, ml.Checksum)
	}
	return ml, true, nil
}
