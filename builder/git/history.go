package git

import (
	"context"
	"os"
	"strconv"
	"strings"
)

// Distance returns how many commits lead from commit from to commit to in the local mirror
// of remote u (negative when to is older than from), for `runpod-comfy diff`. It reads the
// mirror only, never the network, with the hermetic git environment of every other mirror
// command; it returns false when there is no mirror, the mirror lacks either commit, or
// either is not a full commit id.
func (m *Mirrors) Distance(ctx context.Context, u, from, to string) (int, bool) {
	if !IsCommit(from) || !IsCommit(to) {
		return 0, false
	}
	dir := m.Path(u)
	if _, err := os.Stat(dir); err != nil {
		return 0, false
	}
	count := func(a, b string) (int, bool) {
		out, err := gitCommand(ctx, dir, "rev-list", "--count", a+".."+b).Output()
		if err != nil {
			return 0, false
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(out)))
		return n, err == nil
	}
	ahead, ok := count(from, to)
	if !ok {
		return 0, false
	}
	if ahead > 0 {
		return ahead, true
	}
	back, ok := count(to, from)
	return -back, ok
}
