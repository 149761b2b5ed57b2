package api

import (
	"math/rand/v2"
	"regexp"
	"testing"
)

// The request checks written as loops accept exactly what the regular
// expressions they replaced accept.
func TestLoopCheckersMatchTheirRegexps(t *testing.T) {
	for _, c := range []struct {
		name  string
		re    *regexp.Regexp
		check func(string) bool
		seeds []string
		bytes string
	}{
		{"isE164", regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`), isE164,
			[]string{"+34600111222", "+1234567", "+123456", "+123456789012345", "+1234567890123456", "+0600111222", "34600111222", "+34 600", "+", "", "+3460011122a", "++34600111222"},
			"+0123456789 a"},
		{"isSlug", regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`), isSlug,
			[]string{"tecnico-marketing-digital", "a", "A.b_c-d", "-a", ".a", "_a", "a b", "", "ñ", "a/b", "9"},
			"aZ09._- /ñ"},
		{"validRequestID", regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`), validRequestID,
			[]string{"abc", "", "a b", "x\r\ny", string(make([]byte, 65)), "-._"},
			"aZ09._- ;\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			inputs := append([]string(nil), c.seeds...)
			r := rand.New(rand.NewPCG(1, 2))
			alphabet := []rune(c.bytes)
			for range 20000 {
				n := r.IntN(70)
				b := make([]rune, n)
				for i := range b {
					b[i] = alphabet[r.IntN(len(alphabet))]
				}
				inputs = append(inputs, string(b))
			}
			for _, in := range inputs {
				if got, want := c.check(in), c.re.MatchString(in); got != want {
					t.Errorf("%s(%q) = %v, the regular expression says %v", c.name, in, got, want)
				}
			}
		})
	}
}
