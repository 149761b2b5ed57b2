package meta

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// Meta matches hashed customer information against its own users, so a
// value normalised differently from Meta's rules hashes to something that
// matches no one, silently. The rules below are those of "Customer
// Information Parameters" (Conversions API docs); each helper names its rule.

// NormalizeEmail: "Trim any leading and trailing spaces. Convert all
// characters to lowercase."
func NormalizeEmail(s string) string {
	return strings.ToLower(strings.TrimSpace(s))
}

// NormalizePhone: "Remove symbols, letters, and any leading zeros. Phone
// numbers must include a country code." It keeps the digits and drops
// leading zeros, so "+34 600-111-222" and "0034 600 111 222" both become
// 34600111222. It cannot add a missing country code: a national number
// ("600111222") stays without one and will not match, so store E.164.
func NormalizePhone(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			if b.Len() == 0 && r == '0' {
				continue
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}

// NormalizeName (first or last name): "Lowercase only with no punctuation.
// If using special characters, the text must be encoded in UTF-8 format."
// Accents stay (Meta's example: Valéry → valéry); the text is put in NFC
// first so "García" typed with a combining accent hashes like the composed
// one. Inner spaces are kept, collapsed to one.
func NormalizeName(s string) string {
	var b strings.Builder
	space := false
	for _, r := range strings.ToLower(norm.NFC.String(s)) {
		switch {
		case unicode.IsSpace(r):
			space = b.Len() > 0
		case unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.M, r):
			if space {
				b.WriteByte(' ')
				space = false
			}
			b.WriteRune(r)
		}
		// punctuation and symbols are dropped
	}
	return b.String()
}

// NormalizeCity: "Lowercase only with no punctuation, no special
// characters, and no spaces" ("New York" → newyork). Letters only.
func NormalizeCity(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(norm.NFC.String(s)) {
		if unicode.IsLetter(r) || unicode.Is(unicode.M, r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// NormalizeCountry: "Use the lowercase, 2-letter country codes in ISO
// 3166-1 alpha-2." Anything that is not two letters (a country name) gives
// "", as there is no code to hash.
func NormalizeCountry(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if len(s) != 2 || s[0] < 'a' || s[0] > 'z' || s[1] < 'a' || s[1] > 'z' {
		return ""
	}
	return s
}

// HashSHA256 is the hex-encoded, lowercase SHA-256 of s, the form Meta
// expects for hashed customer information.
func HashSHA256(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// hashed normalises and hashes v for a user_data field: nil when nothing
// is left, so the field is omitted rather than sent as the hash of "".
func hashed(v string, normalize func(string) string) []string {
	n := normalize(v)
	if n == "" {
		return nil
	}
	return []string{HashSHA256(n)}
}
