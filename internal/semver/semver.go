// Package semver reads semantic versions (semver.org 2.0.0) as the Comfy Registry publishes
// them ("8.8.1", "1.0.0-beta.2") and the version requests a spec may write for a registry
// node: an exact version, "latest", or a range.
//
// Words:
//
//   - A Version is MAJOR.MINOR.PATCH with an optional pre-release ("-beta.2") and build
//     metadata ("+abc", ignored when comparing).
//   - A Request is what a spec asks for: Exact (one version), Latest (the newest published
//     version that is not a pre-release) or a range of comparators that must all hold:
//     "^1.2.0" (>=1.2.0 <2.0.0; ^0.3.1 is >=0.3.1 <0.4.0), "~1.2.0" (>=1.2.0 <1.3.0),
//     ">=1.2.0, <2.0.0" (comma or space separated), "1.2.*", "1.x". A range never selects a
//     pre-release; only an exact request does.
package semver

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// MaxLen is the longest version or request read (the registry limits a version to 200
// characters, as its bulk endpoint says).
const MaxLen = 200

// Version is a parsed semantic version.
type Version struct {
	Major, Minor, Patch uint64
	// Pre is the pre-release identifiers ("beta.2"), "" for a release.
	Pre string
	// Build is the build metadata, ignored by Compare.
	Build string
}

var versionRe = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:-((?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$`)

// Parse reads a full semantic version, MAJOR.MINOR.PATCH[-pre][+build].
func Parse(s string) (Version, error) {
	if len(s) > MaxLen {
		return Version{}, fmt.Errorf("version is longer than %d characters", MaxLen)
	}
	m := versionRe.FindStringSubmatch(s)
	if m == nil {
		return Version{}, fmt.Errorf("%q is not a semantic version MAJOR.MINOR.PATCH (such as \"1.2.0\" or \"1.2.0-beta.1\")", s)
	}
	var v Version
	var err error
	for i, dst := range []*uint64{&v.Major, &v.Minor, &v.Patch} {
		if *dst, err = strconv.ParseUint(m[i+1], 10, 64); err != nil {
			return Version{}, fmt.Errorf("%q: number %q is too large", s, m[i+1])
		}
	}
	v.Pre, v.Build = m[4], m[5]
	return v, nil
}

// String formats v as MAJOR.MINOR.PATCH[-pre][+build].
func (v Version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
	if v.Pre != "" {
		s += "-" + v.Pre
	}
	if v.Build != "" {
		s += "+" + v.Build
	}
	return s
}

// Compare orders versions by semver precedence: -1, 0 or 1. Build metadata is ignored.
func Compare(a, b Version) int {
	for _, p := range [][2]uint64{{a.Major, b.Major}, {a.Minor, b.Minor}, {a.Patch, b.Patch}} {
		if p[0] != p[1] {
			if p[0] < p[1] {
				return -1
			}
			return 1
		}
	}
	switch {
	case a.Pre == b.Pre:
		return 0
	case a.Pre == "":
		return 1
	case b.Pre == "":
		return -1
	}
	as, bs := strings.Split(a.Pre, "."), strings.Split(b.Pre, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if c := compareIdent(as[i], bs[i]); c != 0 {
			return c
		}
	}
	switch {
	case len(as) < len(bs):
		return -1
	case len(as) > len(bs):
		return 1
	}
	return 0
}

func compareIdent(a, b string) int {
	an, aerr := strconv.ParseUint(a, 10, 64)
	bn, berr := strconv.ParseUint(b, 10, 64)
	switch {
	case aerr == nil && berr == nil:
		switch {
		case an < bn:
			return -1
		case an > bn:
			return 1
		}
		return 0
	case aerr == nil:
		return -1 // numeric identifiers sort before alphanumeric ones
	case berr == nil:
		return 1
	}
	return strings.Compare(a, b)
}

// Request is a parsed version request of a spec.
type Request struct {
	// Raw is the request as written.
	Raw string
	// Latest is set for "latest".
	Latest bool
	// Exact is set for a single version (Raw is that version).
	Exact *Version
	// Range is the comparators of a range; all must hold.
	Range []Comparator
}

// Comparator is one bound of a range.
type Comparator struct {
	Op string // one of = > >= < <=
	V  Version
}

// ErrEmpty is returned by ParseRequest for an empty request.
var ErrEmpty = errors.New("version is empty")

// ParseRequest reads a version request: "latest", an exact version or a range (see the
// package comment).
func ParseRequest(s string) (Request, error) {
	r := Request{Raw: s}
	switch {
	case s == "":
		return r, ErrEmpty
	case len(s) > MaxLen:
		return r, fmt.Errorf("version is longer than %d characters", MaxLen)
	case strings.TrimSpace(s) != s:
		return r, fmt.Errorf("version %q has leading or trailing spaces", s)
	case s == "latest":
		r.Latest = true
		return r, nil
	}
	if v, err := Parse(s); err == nil {
		r.Exact = &v
		return r, nil
	}
	fields := strings.FieldsFunc(s, func(c rune) bool { return c == ',' || c == ' ' })
	if len(fields) == 0 {
		return r, fmt.Errorf("version %q is neither a version, \"latest\" nor a range", s)
	}
	for _, f := range fields {
		cs, err := parseTerm(f)
		if err != nil {
			return r, fmt.Errorf("version %q: %v; write an exact version (\"1.2.0\"), \"latest\" or a range (\"^1.2.0\", \"~1.2.0\", \">=1.2.0, <2.0.0\", \"1.2.*\")", s, err)
		}
		r.Range = append(r.Range, cs...)
	}
	return r, nil
}

// parseTerm reads one term of a range into its comparators.
func parseTerm(t string) ([]Comparator, error) {
	if t == "*" || t == "x" || t == "X" {
		return nil, nil // any release
	}
	for _, op := range []string{">=", "<=", "==", ">", "<", "=", "^", "~"} {
		rest, ok := strings.CutPrefix(t, op)
		if !ok {
			continue
		}
		switch op {
		case "^", "~":
			major, minor, patch, n, err := partial(rest)
			if err != nil {
				return nil, fmt.Errorf("%q: %v", t, err)
			}
			lo := Version{Major: major, Minor: minor, Patch: patch}
			var hi Version
			switch {
			case op == "~" && n >= 2, op == "^" && major == 0 && n >= 2 && minor != 0:
				hi = Version{Major: major, Minor: minor + 1}
			case op == "^" && major == 0 && n == 3 && minor == 0:
				hi = Version{Major: 0, Minor: 0, Patch: patch + 1}
			case op == "^" && major == 0 && n == 2:
				hi = Version{Major: 0, Minor: minor + 1}
			default:
				hi = Version{Major: major + 1}
			}
			return []Comparator{{">=", lo}, {"<", hi}}, nil
		default:
			v, err := Parse(rest)
			if err != nil {
				return nil, fmt.Errorf("%q: after %s a full version is needed: %v", t, op, err)
			}
			if op == "==" {
				op = "="
			}
			return []Comparator{{op, v}}, nil
		}
	}
	// A wildcard: 1.*, 1.2.*, 1.x, 1.2.x.
	major, minor, _, n, err := partial(t)
	if err != nil || n == 3 {
		return nil, fmt.Errorf("%q is not a range term", t)
	}
	if !strings.HasSuffix(t, "*") && !strings.HasSuffix(t, "x") && !strings.HasSuffix(t, "X") {
		// "8.8" is 8.8.0 to ComfyUI-Manager and 8.8.* to npm: say which.
		full, wild := fmt.Sprintf("%d.%d.0", major, minor), fmt.Sprintf("%d.%d.*", major, minor)
		if n == 1 {
			full, wild = fmt.Sprintf("%d.0.0", major), fmt.Sprintf("%d.*", major)
		}
		return nil, fmt.Errorf("%q is not a full version: write %q for that version or %q for the newest of the series", t, full, wild)
	}
	lo := Version{Major: major, Minor: minor}
	hi := Version{Major: major + 1}
	if n == 2 {
		hi = Version{Major: major, Minor: minor + 1}
	}
	return []Comparator{{">=", lo}, {"<", hi}}, nil
}

// partial reads "1", "1.2", "1.2.3", "1.*", "1.2.x" and reports how many numbers it held.
func partial(s string) (major, minor, patch uint64, n int, err error) {
	parts := strings.Split(s, ".")
	if len(parts) > 3 {
		return 0, 0, 0, 0, fmt.Errorf("%q has more than three parts", s)
	}
	var nums [3]uint64
	for i, p := range parts {
		if p == "*" || p == "x" || p == "X" {
			if i == 0 || i != len(parts)-1 {
				return 0, 0, 0, 0, fmt.Errorf("%q: a wildcard may only end a version", s)
			}
			break
		}
		if p == "" || (len(p) > 1 && p[0] == '0') {
			return 0, 0, 0, 0, fmt.Errorf("%q is not a version", s)
		}
		v, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return 0, 0, 0, 0, fmt.Errorf("%q is not a version", s)
		}
		nums[i] = v
		n++
	}
	return nums[0], nums[1], nums[2], n, nil
}

// Matches reports whether v satisfies r. Latest matches every release; a range never
// matches a pre-release.
func (r Request) Matches(v Version) bool {
	switch {
	case r.Exact != nil:
		return Compare(*r.Exact, v) == 0
	case v.Pre != "":
		return false
	case r.Latest:
		return true
	}
	for _, c := range r.Range {
		d := Compare(v, c.V)
		ok := false
		switch c.Op {
		case "=":
			ok = d == 0
		case ">":
			ok = d > 0
		case ">=":
			ok = d >= 0
		case "<":
			ok = d < 0
		case "<=":
			ok = d <= 0
		}
		if !ok {
			return false
		}
	}
	return true
}

// Best returns the index of the newest version of vs that r matches, or -1. Entries that do
// not parse are skipped.
func (r Request) Best(vs []string) int {
	best := -1
	var bestV Version
	for i, s := range vs {
		v, err := Parse(s)
		if err != nil || !r.Matches(v) {
			continue
		}
		if best < 0 || Compare(v, bestV) > 0 {
			best, bestV = i, v
		}
	}
	return best
}
