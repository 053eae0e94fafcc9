package semver

import "testing"

func TestCompare(t *testing.T) {
	// semver.org's precedence example, in order.
	order := []string{"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.2.0", "1.10.0", "2.0.0"}
	for i := range order {
		for j := range order {
			a, err := Parse(order[i])
			if err != nil {
				t.Fatal(err)
			}
			b, _ := Parse(order[j])
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := Compare(a, b); got != want {
				t.Errorf("Compare(%s, %s) = %d, want %d", order[i], order[j], got, want)
			}
		}
	}
	if a, _ := Parse("1.0.0+abc"); Compare(a, Version{Major: 1}) != 0 {
		t.Error("build metadata counted")
	}
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{"", "1", "1.2", "01.2.3", "1.2.3.4", "v1.2.3", "1.2.3-", "1.2.3-01", "1.2.3+", " 1.2.3", "99999999999999999999.0.0"} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
}

func TestRequest(t *testing.T) {
	vs := []string{"0.3.1", "0.3.9", "0.4.0", "1.0.0", "1.2.0", "1.2.5", "1.3.1", "1.4.0-beta.1", "2.0.0", "not-a-version"}
	cases := []struct{ req, want string }{
		{"latest", "2.0.0"},
		{"1.2.0", "1.2.0"},
		{"1.4.0-beta.1", "1.4.0-beta.1"},
		{"^1.2.0", "1.3.1"},
		{"~1.2.0", "1.2.5"},
		{"^0.3.1", "0.3.9"},
		{">=1.2.0, <1.3.0", "1.2.5"},
		{">=1.0.0 <2.0.0", "1.3.1"},
		{"1.2.*", "1.2.5"},
		{"1.x", "1.3.1"},
		{"*", "2.0.0"},
		{"<1.0.0", "0.4.0"},
		{"=1.0.0", "1.0.0"},
		{"==1.0.0", "1.0.0"},
		{">2.0.0", ""},
		{"3.0.0", ""},
	}
	for _, c := range cases {
		r, err := ParseRequest(c.req)
		if err != nil {
			t.Errorf("ParseRequest(%q): %v", c.req, err)
			continue
		}
		i := r.Best(vs)
		got := ""
		if i >= 0 {
			got = vs[i]
		}
		if got != c.want {
			t.Errorf("%q picks %q, want %q", c.req, got, c.want)
		}
	}
	for _, bad := range []string{"", " 1.2.0", "latest!", ">=1.2", "^", "1.2.3.4", "1.*.3", "*.1", "^a.b", "~1.2.3-", "1.2", "8", ">=1.0.0 1.2", "newest", string(make([]byte, 300))} {
		if _, err := ParseRequest(bad); err == nil {
			t.Errorf("ParseRequest(%q) accepted", bad)
		}
	}
}

func TestCaretBounds(t *testing.T) {
	for _, c := range []struct {
		req       string
		in, notIn []string
	}{
		{"^0.0.3", []string{"0.0.3"}, []string{"0.0.4", "0.1.0"}},
		{"^0.0", []string{"0.0.9"}, []string{"0.1.0"}},
		{"^1", []string{"1.9.9"}, []string{"2.0.0", "0.9.9"}},
		{"~1", []string{"1.9.9"}, []string{"2.0.0"}},
	} {
		r, err := ParseRequest(c.req)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range c.in {
			if v, _ := Parse(s); !r.Matches(v) {
				t.Errorf("%s does not match %s", c.req, s)
			}
		}
		for _, s := range c.notIn {
			if v, _ := Parse(s); r.Matches(v) {
				t.Errorf("%s matches %s", c.req, s)
			}
		}
	}
}
