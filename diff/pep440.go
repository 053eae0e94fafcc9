package diff

import (
	"regexp"
	"strconv"
	"strings"
)

// pep440 is a parsed Python version, enough of PEP 440 to order the versions a lock holds:
// epoch, release segments, pre-release (a, b, rc), post and dev releases. A local version
// label (+cu121) orders after the same public version, compared as a string.
type pep440 struct {
	epoch   int
	release []int
	preKind int // 0 a, 1 b, 2 rc, 3 none (a final release sorts after its pre-releases)
	pre     int
	post    int // -1 none
	dev     int // -1 none; a dev release sorts before everything else of its release
	local   string
	raw     string
	ok      bool
}

var pep440RE = regexp.MustCompile(`^v?(?:(\d+)!)?(\d+(?:\.\d+)*)` +
	`(?:[-_.]?(a|alpha|b|beta|c|rc|pre|preview)[-_.]?(\d*))?` +
	`(?:(?:-(\d+))|(?:[-_.]?(post|rev|r)[-_.]?(\d*)))?` +
	`(?:[-_.]?(dev)[-_.]?(\d*))?` +
	`(?:\+([a-z0-9]+(?:[-_.][a-z0-9]+)*))?$`)

func parsePEP440(s string) pep440 {
	v := pep440{raw: s, preKind: 3, post: -1, dev: -1}
	m := pep440RE.FindStringSubmatch(strings.ToLower(strings.TrimSpace(s)))
	if m == nil {
		return v
	}
	v.ok = true
	v.epoch = atoiOr(m[1], 0)
	for _, p := range strings.Split(m[2], ".") {
		v.release = append(v.release, atoiOr(p, 0))
	}
	for len(v.release) > 1 && v.release[len(v.release)-1] == 0 {
		v.release = v.release[:len(v.release)-1]
	}
	switch m[3] {
	case "a", "alpha":
		v.preKind, v.pre = 0, atoiOr(m[4], 0)
	case "b", "beta":
		v.preKind, v.pre = 1, atoiOr(m[4], 0)
	case "c", "rc", "pre", "preview":
		v.preKind, v.pre = 2, atoiOr(m[4], 0)
	}
	if m[5] != "" {
		v.post = atoiOr(m[5], 0)
	} else if m[6] != "" {
		v.post = atoiOr(m[7], 0)
	}
	if m[8] != "" {
		v.dev = atoiOr(m[9], 0)
	}
	v.local = m[10]
	return v
}

func atoiOr(s string, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return def
	}
	return n
}

// compareVersions orders two Python versions: -1, 0 or +1. Versions that are not PEP 440 are
// compared as strings, after every valid version.
func compareVersions(a, b string) int {
	va, vb := parsePEP440(a), parsePEP440(b)
	switch {
	case !va.ok && !vb.ok:
		return strings.Compare(a, b)
	case !va.ok:
		return 1
	case !vb.ok:
		return -1
	}
	if c := cmpInt(va.epoch, vb.epoch); c != 0 {
		return c
	}
	for i := 0; i < max(len(va.release), len(vb.release)); i++ {
		if c := cmpInt(at(va.release, i), at(vb.release, i)); c != 0 {
			return c
		}
	}
	// A dev release without a pre- or post-release sorts before the pre-releases.
	ka, kb := va.preKind, vb.preKind
	if va.dev >= 0 && va.preKind == 3 && va.post < 0 {
		ka = -1
	}
	if vb.dev >= 0 && vb.preKind == 3 && vb.post < 0 {
		kb = -1
	}
	if c := cmpInt(ka, kb); c != 0 {
		return c
	}
	if c := cmpInt(va.pre, vb.pre); c != 0 {
		return c
	}
	if c := cmpInt(va.post, vb.post); c != 0 {
		return c
	}
	da, db := va.dev, vb.dev
	if da < 0 {
		da = int(^uint(0) >> 1)
	}
	if db < 0 {
		db = int(^uint(0) >> 1)
	}
	if c := cmpInt(da, db); c != 0 {
		return c
	}
	return strings.Compare(va.local, vb.local)
}

func at(xs []int, i int) int {
	if i < len(xs) {
		return xs[i]
	}
	return 0
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
