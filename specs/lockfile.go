package specs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/runpod-comfy/runpod-comfy/internal/atomicfile"
	"github.com/runpod-comfy/runpod-comfy/internal/inputfile"
)

// ErrLockVersion is returned (wrapped) by ReadLock for a lock of another lock_version.
var ErrLockVersion = errors.New("unsupported lock_version")

// ReadLock reads a lock file. A lock of another lock_version, or with fields this version does
// not know, is refused with an error naming the file rather than half-read.
func ReadLock(path string) (*Lock, error) {
	data, err := inputfile.Read(path, inputfile.MaxLock)
	if err != nil {
		return nil, fmt.Errorf("reading lock: %w", err)
	}
	l, err := ParseLock(data)
	if err != nil {
		return nil, fmt.Errorf("reading lock %s: %w", path, err)
	}
	return l, nil
}

// ParseLock decodes a lock from its JSON form, with the checks of ReadLock.
func ParseLock(data []byte) (*Lock, error) {
	var head struct {
		LockVersion *int `json:"lock_version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("not a lock: %w", err)
	}
	if head.LockVersion == nil {
		return nil, fmt.Errorf("%w: no lock_version field (this runpod-comfy reads lock_version %d)", ErrLockVersion, LockVersion)
	}
	if *head.LockVersion != LockVersion {
		return nil, fmt.Errorf("%w %d: this runpod-comfy reads lock_version %d only; re-resolve the spec (runpod-comfy resolve) or use the runpod-comfy that wrote it",
			ErrLockVersion, *head.LockVersion, LockVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var l Lock
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("decoding lock: %w", err)
	}
	return &l, nil
}

// Marshal is the stable byte form of l: custom nodes sorted by name, models by target,
// packages by name (then version), JSON indented with two spaces and ending in a newline.
// l itself is not modified.
func (l *Lock) Marshal() ([]byte, error) {
	c := *l
	if c.LockVersion == 0 {
		c.LockVersion = LockVersion
	}
	c.CustomNodes = slices.Clone(l.CustomNodes)
	slices.SortStableFunc(c.CustomNodes, func(a, b NodeLock) int { return strings.Compare(a.Name, b.Name) })
	c.Models = slices.Clone(l.Models)
	slices.SortStableFunc(c.Models, func(a, b ModelLock) int { return strings.Compare(a.Target, b.Target) })
	if c.CustomNodes == nil {
		c.CustomNodes = []NodeLock{}
	}
	if c.Models == nil {
		c.Models = []ModelLock{}
	}
	if l.Python != nil {
		p := *l.Python
		p.Packages = slices.Clone(p.Packages)
		slices.SortStableFunc(p.Packages, func(a, b PackageLock) int {
			if c := strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)); c != 0 {
				return c
			}
			return strings.Compare(a.Version, b.Version)
		})
		if p.Packages == nil {
			p.Packages = []PackageLock{}
		}
		p.SystemSitePackages = slices.Clone(p.SystemSitePackages)
		slices.SortStableFunc(p.SystemSitePackages, func(a, b Distribution) int {
			return strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name))
		})
		c.Python = &p
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&c); err != nil {
		return nil, fmt.Errorf("encoding lock: %w", err)
	}
	return buf.Bytes(), nil
}

// WriteFile writes l to path atomically (temp file, fsync, rename, fsync the directory) in the
// stable form of Marshal, so that a lock kept in git diffs only on real changes.
func (l *Lock) WriteFile(path string) error {
	data, err := l.Marshal()
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("writing lock: %w", err)
	}
	return nil
}
