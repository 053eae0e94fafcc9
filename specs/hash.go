package specs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
)

// Hash is the spec hash of s: "sha256:<64 hex>" of its canonical JSON. The canonical form is
// the evaluated spec with positions left out, custom nodes sorted by name, models sorted by
// target, defaults spelt out (install_requirements true when unset, an empty python block
// dropped) and map keys sorted, so the hash does not depend on the source language (JSON or
// HCL), on key or block order, or on where anything was declared. options.download_connections
// is left out: it tunes downloads, and changing it must not make a lock stale.
func Hash(s *Spec) string {
	b := CanonicalJSON(s)
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// CanonicalJSON is the byte form Hash hashes (compact JSON, no trailing newline).
func CanonicalJSON(s *Spec) []byte {
	c := canonical(s)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		// A Spec holds only strings, numbers, booleans, slices and string maps: Encode
		// cannot fail on it.
		panic("specs: encoding a spec: " + err.Error())
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func canonical(s *Spec) *Spec {
	t := true
	c := *s
	c.Pos = Pos{}
	c.Comfy.Pos = Pos{}
	if c.Comfy.InstallRequirements == nil {
		c.Comfy.InstallRequirements = &t
	}
	c.CustomNodes = make([]CustomNode, len(s.CustomNodes))
	for i, n := range s.CustomNodes {
		n.Pos = Pos{}
		if n.InstallRequirements == nil {
			n.InstallRequirements = &t
		}
		c.CustomNodes[i] = n
	}
	slices.SortStableFunc(c.CustomNodes, func(a, b CustomNode) int { return strings.Compare(a.Name, b.Name) })
	type keyed struct {
		key string
		m   Model
	}
	ms := make([]keyed, len(s.Models))
	for i, m := range s.Models {
		m.Pos = Pos{}
		k, err := ModelTarget(m)
		if err != nil {
			k = "\x00" + m.Source
		}
		ms[i] = keyed{k, m}
	}
	slices.SortStableFunc(ms, func(a, b keyed) int { return strings.Compare(a.key, b.key) })
	c.Models = make([]Model, len(ms))
	for i, k := range ms {
		c.Models[i] = k.m
	}
	if len(c.CustomNodes) == 0 {
		c.CustomNodes = nil
	}
	if len(c.Models) == 0 {
		c.Models = nil
	}
	if s.Python != nil {
		p := *s.Python
		p.Pos = Pos{}
		if p.isZero() {
			c.Python = nil
		} else {
			c.Python = &p
		}
	}
	if len(c.Env) == 0 {
		c.Env = nil
	}
	if len(c.Options.Substituters) == 0 {
		c.Options.Substituters = nil
	}
	// How many connections a model is fetched over changes nothing that is built.
	c.Options.DownloadConnections = 0
	return &c
}

func (p *Python) isZero() bool {
	return p.Version == "" && len(p.Packages) == 0 && p.IndexURL == "" && len(p.ExtraIndexURLs) == 0 &&
		len(p.FindLinks) == 0 && len(p.Constraints) == 0 && !p.SystemSitePackages
}
