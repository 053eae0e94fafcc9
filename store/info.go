package store

import (
	"fmt"
)

// ObjectInfo describes one object for `store info`.
type ObjectInfo struct {
	Meta *Meta `json:"meta"`
	// Referrers are the valid objects that reference this one.
	Referrers []Path `json:"referrers"`
	// Roots are the versions whose current root reaches this object.
	Roots []string `json:"roots"`
	// DiskSize is the apparent size of the object's regular files.
	DiskSize int64 `json:"disk_size"`
	// ClosureSize is the NAR size of the object and everything it references.
	ClosureSize int64 `json:"closure_size"`
}

// Info returns the metadata, referrers, roots and sizes of a valid object.
func (s *Store) Info(p Path) (*ObjectInfo, error) {
	m, err := s.Meta(p)
	if err != nil {
		return nil, fmt.Errorf("info: %w", err)
	}
	metas, _, err := s.allMeta()
	if err != nil {
		return nil, fmt.Errorf("info: %w", err)
	}
	info := &ObjectInfo{Meta: m, Referrers: []Path{}, Roots: []string{}, DiskSize: diskUsage(s.Abs(p))}
	for q, qm := range metas {
		for _, r := range qm.References {
			if r == p && q != p {
				info.Referrers = append(info.Referrers, q)
			}
		}
	}
	sortPaths(info.Referrers)
	for q := range s.mark([]Path{p}, metas) {
		if qm := metas[q]; qm != nil {
			info.ClosureSize += qm.NarSize
		}
	}
	ids, err := s.RootIDs()
	if err != nil {
		return nil, fmt.Errorf("info: %w", err)
	}
	for _, id := range ids {
		if rp, err := s.RootOf(id); err == nil && s.mark([]Path{rp}, metas)[p] {
			info.Roots = append(info.Roots, id)
		}
	}
	return info, nil
}

// DuEntry is what one version's current root uses.
type DuEntry struct {
	ID      string `json:"id"`
	Path    Path   `json:"path"` // the current runtime root object
	Objects int    `json:"objects"`
	// Total is the NAR size of the root's closure; Alone the part no other version uses;
	// Shared the part at least one other version uses too.
	Total  int64 `json:"total"`
	Alone  int64 `json:"alone"`
	Shared int64 `json:"shared"`
}

// DuReport is the result of Du. Sizes are NAR sizes (close to the apparent size of the files).
type DuReport struct {
	Versions []DuEntry `json:"versions"`
	// Store is every valid object; Unrooted the part no current root reaches (earlier
	// generations, temporary roots, garbage).
	StoreObjects int   `json:"store_objects"`
	Store        int64 `json:"store"`
	Unrooted     int64 `json:"unrooted"`
}

// Du reports, for each version with a root, the size of its closure, the part only it uses
// and the part it shares with other versions.
func (s *Store) Du() (*DuReport, error) {
	metas, _, err := s.allMeta()
	if err != nil {
		return nil, fmt.Errorf("du: %w", err)
	}
	ids, err := s.RootIDs()
	if err != nil {
		return nil, fmt.Errorf("du: %w", err)
	}
	rep := &DuReport{Versions: []DuEntry{}, StoreObjects: len(metas)}
	users := map[Path]int{}
	closures := map[string]map[Path]bool{}
	for _, id := range ids {
		rp, err := s.RootOf(id)
		if err != nil {
			continue
		}
		c := s.mark([]Path{rp}, metas)
		closures[id] = c
		for p := range c {
			users[p]++
		}
		rep.Versions = append(rep.Versions, DuEntry{ID: id, Path: rp})
	}
	for i := range rep.Versions {
		e := &rep.Versions[i]
		for p := range closures[e.ID] {
			m := metas[p]
			if m == nil {
				continue
			}
			e.Objects++
			e.Total += m.NarSize
			if users[p] > 1 {
				e.Shared += m.NarSize
			} else {
				e.Alone += m.NarSize
			}
		}
	}
	for p, m := range metas {
		rep.Store += m.NarSize
		if users[p] == 0 {
			rep.Unrooted += m.NarSize
		}
	}
	return rep, nil
}
