package specs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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
	l.Canonicalize()
	return &l, nil
}

// Canonicalize puts l into its one canonical form, in place: custom nodes sorted by name,
// models by target, packages by name (then version), system site-packages by name, and empty
// lists and maps spelt one way (an empty env, requested_by or system_site_packages is nil;
// an empty custom_nodes, models or packages is empty, not nil). Resolve and ParseLock return
// canonical locks, so a lock in memory and the same lock read back from its file are equal,
// and so is everything planned from them (docs/building.md, "One canonical form").
func (l *Lock) Canonicalize() {
	if l.LockVersion == 0 {
		l.LockVersion = LockVersion
	}
	slices.SortStableFunc(l.CustomNodes, func(a, b NodeLock) int { return strings.Compare(a.Name, b.Name) })
	slices.SortStableFunc(l.Models, func(a, b ModelLock) int { return strings.Compare(a.Target, b.Target) })
	if l.CustomNodes == nil {
		l.CustomNodes = []NodeLock{}
	}
	if l.Models == nil {
		l.Models = []ModelLock{}
	}
	if len(l.Env) == 0 {
		l.Env = nil
	}
	if p := l.Python; p != nil {
		slices.SortStableFunc(p.Packages, func(a, b PackageLock) int {
			if c := strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)); c != 0 {
				return c
			}
			return strings.Compare(a.Version, b.Version)
		})
		if p.Packages == nil {
			p.Packages = []PackageLock{}
		}
		for i := range p.Packages {
			if len(p.Packages[i].RequestedBy) == 0 {
				p.Packages[i].RequestedBy = nil
			}
		}
		slices.SortStableFunc(p.SystemSitePackages, func(a, b Distribution) int {
			return strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name))
		})
		if len(p.SystemSitePackages) == 0 {
			p.SystemSitePackages = nil
		}
	}
}

// Clone returns a deep copy of l.
func (l *Lock) Clone() *Lock {
	c := *l
	c.CustomNodes = slices.Clone(l.CustomNodes)
	for i := range c.CustomNodes {
		if r := c.CustomNodes[i].Registry; r != nil {
			rc := *r
			c.CustomNodes[i].Registry = &rc
		}
	}
	c.Models = slices.Clone(l.Models)
	c.Env = maps.Clone(l.Env)
	if l.Python != nil {
		p := *l.Python
		p.Packages = slices.Clone(p.Packages)
		for i := range p.Packages {
			p.Packages[i].RequestedBy = slices.Clone(p.Packages[i].RequestedBy)
			if w := p.Packages[i].Wheel; w != nil {
				wc := *w
				p.Packages[i].Wheel = &wc
			}
		}
		p.SystemSitePackages = slices.Clone(p.SystemSitePackages)
		c.Python = &p
	}
	return &c
}

// Marshal is the stable byte form of l: its canonical form (Canonicalize), JSON indented with
// two spaces and ending in a newline. l itself is not modified.
func (l *Lock) Marshal() ([]byte, error) {
	c := l.Clone()
	c.Canonicalize()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(c); err != nil {
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
