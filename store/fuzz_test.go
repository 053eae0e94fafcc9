package store

import "testing"

// FuzzParsePath: what ParsePath accepts prints back unchanged, has a valid name and a digest
// that round-trips; nothing else panics.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"7c3da9d4k5danpipblrq48ik8dqgamb5-hello.txt", "7c3da9d4k5danpipblrq48ik8dqgamb5-", "zz3da9d4k5danpipblrq48ik8dqgamb5-a", "7c3da9d4k5danpipblrq48ik8dqgamb5-..", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePath(s)
		if err != nil {
			return
		}
		if p.String() != s {
			t.Fatalf("ParsePath(%q).String() = %q", s, p.String())
		}
		if err := ValidateName(p.Name()); err != nil {
			t.Fatal(err)
		}
		d, err := ParseDigest(p.Digest().String())
		if err != nil || d != p.Digest() {
			t.Fatalf("digest round trip: %v", err)
		}
	})
}
