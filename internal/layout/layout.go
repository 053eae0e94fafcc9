// Package layout names every path under the volume ROOT and holds the one rule for version ids.
// store, builder, runner and cmd all take their paths from here, so the volume's shape is
// written down once (docs/design.md section 3).
package layout

import (
	"errors"
	"fmt"
)

// MaxVersionIDLen is the longest version id accepted.
const MaxVersionIDLen = 100

// RootPrefix is the prefix of every runtime root link (ROOT/builds/comfy-<id>), of its
// generations, of its state directory and of its store path name.
const RootPrefix = "comfy-"

// CheckVersionID reports whether id can name a version. The id becomes a spec and lock file
// name, the root link ROOT/builds/comfy-<id>, generation links comfy-<id>-<n> and part of a
// store path name, so it is 1-100 characters of [A-Za-z0-9._+-] starting with a letter or digit
// (every one of them is legal in a store path name). Spec validation, the builder, the store's
// roots, the runner and the CLI all use this one rule, so validate refuses exactly what build
// refuses.
func CheckVersionID(id string) error {
	if id == "" {
		return errors.New("version id is empty")
	}
	if len(id) > MaxVersionIDLen {
		return fmt.Errorf("version id %q is longer than %d characters", id, MaxVersionIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if alnum || i > 0 && (c == '.' || c == '_' || c == '+' || c == '-') {
			continue
		}
		return fmt.Errorf("version id %q: character %q at %d: an id may hold only letters, digits and . _ + - (and must start with a letter or digit)", id, c, i+1)
	}
	return nil
}
