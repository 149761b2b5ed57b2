package meta_test

import (
	"testing"

	"github.com/cepcomunicacion/cepjobs/internal/meta"
)

func TestNormalize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		f    func(string) string
		in   string
		want string
	}{
		{"email", meta.NormalizeEmail, " Ana.Garcia@Example.COM ", "ana.garcia@example.com"},
		{"phone with plus", meta.NormalizePhone, "+34 600-111-222", "34600111222"},
		{"phone with 00", meta.NormalizePhone, "0034 (600) 111 222", "34600111222"},
		{"phone with letters", meta.NormalizePhone, "tel: +1 (650) 555-1212 ext", "16505551212"},
		{"phone empty", meta.NormalizePhone, "n/a", ""},
		{"name accent kept", meta.NormalizeName, "García", "garcía"},
		{"name decomposed accent", meta.NormalizeName, "Garci\u0301a", "garcía"},
		{"name punctuation", meta.NormalizeName, " O'Brien-Smith. ", "obriensmith"},
		{"name inner spaces", meta.NormalizeName, "  María   José ", "maría josé"},
		{"city", meta.NormalizeCity, " San Sebastián (Gipuzkoa) ", "sansebastiángipuzkoa"},
		{"country code", meta.NormalizeCountry, " ES ", "es"},
		{"country name", meta.NormalizeCountry, "Spain", ""},
	} {
		if got := tc.f(tc.in); got != tc.want {
			t.Errorf("%s: %q → %q, want %q", tc.name, tc.in, got, tc.want)
		}
	}
}

// The expected digests are the examples in Meta's "Customer Information
// Parameters" page, so a drift from Meta's rules shows here.
func TestHashMatchesMetaExamples(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		f    func(string) string
		in   string
		want string
	}{
		{meta.NormalizeEmail, "John_Smith@gmail.com", "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"},
		{meta.NormalizePhone, "1 (650) 555-1212", "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"},
		{meta.NormalizeName, "Mary", "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"},
		{meta.NormalizeName, "Valéry", "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c"},
		{meta.NormalizeName, "정", "8fa8cd9c440be61d0151429310034083132b35975c4bea67fdd74158eb51db14"},
		{meta.NormalizeCountry, "US", "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621"},
	} {
		if got := meta.HashSHA256(tc.f(tc.in)); got != tc.want {
			t.Errorf("hash of %q: got %s, want %s", tc.in, got, tc.want)
		}
	}
}
