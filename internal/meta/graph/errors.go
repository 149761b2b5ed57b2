// Package graph holds what every client of Meta's Graph API shares: the
// error object its answers carry, the code table that says which errors are
// worth retrying, the rate-limit usage headers, and the shape of its URLs.
// The Conversions API (package meta) and the WhatsApp Cloud API (package
// whatsapp) are both Graph API edges, so both classify failures here, once.
//
// References: https://developers.facebook.com/docs/graph-api/guides/error-handling
// and https://developers.facebook.com/docs/graph-api/overview/rate-limiting.
package graph

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/cepcomunicacion/cepjobs/internal/vendor"
)

// Class is how a failed call should be handled.
type Class int

const (
	// ByStatus: the code says nothing definite; the HTTP status decides.
	ByStatus Class = iota
	// Throttled: a rate limit; retry later, and it is not the task's fault.
	Throttled
	// Transient: a Meta-side hiccup; retry.
	Transient
	// Permanent: the same call cannot succeed (bad token, bad parameter,
	// unreachable recipient).
	Permanent
)

// Rule is how to treat one error code.
type Rule struct {
	Class Class
	// Reason is our own short wording of the code, safe to log: Meta's
	// message text may echo request values, so it is never used.
	Reason string
	// Wait is the documented pause for a throttle that names none in its
	// headers (WhatsApp's one message every 6 s to the same user).
	Wait time.Duration
}

// Rules maps error codes to rules, for codes one product adds to the
// common Graph API table.
type Rules map[int]Rule

// common lists the codes every Graph API shares, with the recovery the
// error-handling and rate-limiting guides give for each.
var common = Rules{
	0:   {Permanent, "authentication failed", 0},
	1:   {Transient, "unknown api error", 0},
	2:   {Transient, "service temporarily unavailable", 0},
	3:   {Permanent, "app lacks the capability or permission", 0},
	4:   {Throttled, "app rate limit reached", 0},
	10:  {Permanent, "permission denied", 0},
	17:  {Throttled, "user rate limit reached", 0},
	32:  {Throttled, "page rate limit reached", 0},
	100: {Permanent, "invalid parameter", 0},
	102: {Permanent, "session expired or invalid", 0},
	190: {Permanent, "access token invalid or expired", 0},
	341: {Throttled, "application limit reached", 0},
	// The guide says "wait and retry", but the block lasts days and
	// retrying while blocked does not help the account's standing.
	368: {Permanent, "temporarily blocked for policy violations", 0},
	613: {Throttled, "custom rate limit reached", 0},
}

// lookup finds the rule for code: the product's table first, then the
// common one, then the documented ranges.
func lookup(code int, product Rules) (Rule, bool) {
	if r, ok := product[code]; ok {
		return r, true
	}
	if r, ok := common[code]; ok {
		return r, true
	}
	switch {
	case code >= 200 && code <= 299:
		return Rule{Class: Permanent, Reason: "permission missing"}, true
	case code >= 80000 && code <= 80099:
		// The business-use-case rate limits (80000 insights, 80004 ads
		// management, 80007 WhatsApp, 80008 WABA management, …).
		return Rule{Class: Throttled, Reason: "business use case rate limit reached"}, true
	}
	return Rule{}, false
}

// apiError is the Graph API error object. Message, error_user_msg and
// error_data.details are decoded for completeness but never copied into our
// errors: they may echo request values (an email, a phone number).
type apiError struct {
	Message     string       `json:"message"`
	Type        string       `json:"type"`
	Code        flexInt      `json:"code"`
	Subcode     flexInt      `json:"error_subcode"`
	IsTransient flexBool     `json:"is_transient"`
	UserTitle   string       `json:"error_user_title"`
	UserMsg     string       `json:"error_user_msg"`
	FBTraceID   string       `json:"fbtrace_id"`
	Data        apiErrorData `json:"error_data"`
}

type apiErrorData struct {
	Details string `json:"details"`
}

// parseError reads the error object out of an answer's body.
func parseError(body []byte) (apiError, bool) {
	var env struct {
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.Error == nil {
		return apiError{}, false
	}
	return *env.Error, true
}

// StatusError classifies a non-2xx Graph API answer. The error code decides
// when it is known (Meta answers most errors, rate limits included, with
// 400, so the status alone would call a throttle permanent); is_transient
// decides next; otherwise the status does, as vendor.StatusError has it.
// product holds the codes one API adds (may be nil).
func StatusError(vendorName, op string, resp *http.Response, body []byte, now time.Time, product Rules) *vendor.Error {
	ge, ok := parseError(body)
	if !ok {
		return vendor.StatusError(vendorName, op, resp, "", "", now)
	}
	rule, known := lookup(int(ge.Code), product)
	e := vendor.StatusError(vendorName, op, resp, codeString(ge), message(ge, rule), now)
	switch {
	case known && rule.Class == Throttled:
		e.Permanent, e.Throttled = false, true
		// Meta's own estimate beats a generic Retry-After; the documented
		// pause is the last resort.
		if d := RegainAccess(resp.Header); d > 0 {
			e.RetryAfter = d
		}
		if e.RetryAfter == 0 {
			e.RetryAfter = rule.Wait
		}
	case bool(ge.IsTransient):
		// Meta says of this very error that it is passing.
		e.Permanent = false
	case known && rule.Class == Transient:
		e.Permanent = false
	case known && rule.Class == Permanent:
		e.Permanent, e.Throttled, e.RetryAfter = true, false, 0
	}
	if e.Throttled && e.RetryAfter == 0 {
		e.RetryAfter = RegainAccess(resp.Header)
	}
	return e
}

func codeString(ge apiError) string {
	if ge.Code == 0 && ge.Type == "" {
		return ""
	}
	s := strconv.Itoa(int(ge.Code))
	if ge.Subcode != 0 {
		s += "/" + strconv.Itoa(int(ge.Subcode))
	}
	return s
}

// message builds the safe text of an error: our wording of the code (or
// Meta's error type), Meta's dialog title when it looks free of personal
// data, and the trace id Meta support asks for.
func message(ge apiError, rule Rule) string {
	var b strings.Builder
	b.WriteString(rule.Reason)
	if t := safeText(ge.UserTitle); t != "" {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(t)
	}
	var tags []string
	if t := safeText(ge.Type); t != "" {
		tags = append(tags, t)
	}
	if id := traceID(ge.FBTraceID); id != "" {
		tags = append(tags, "fbtrace_id "+id)
	}
	if len(tags) > 0 {
		if b.Len() > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "(%s)", strings.Join(tags, ", "))
	}
	return b.String()
}

// safeText returns s, shortened, unless it looks like it carries personal
// data or a secret: an '@', a run of five or more digits (a phone number),
// or a long unbroken token. Titles are fixed strings in practice; this is a
// net for the day one is not.
func safeText(s string) string {
	s = strings.TrimSpace(s)
	if strings.ContainsRune(s, '@') {
		return ""
	}
	digits, word := 0, 0
	for _, r := range s {
		if unicode.IsDigit(r) {
			digits++
		} else if r != ' ' && r != '-' && r != '.' {
			digits = 0
		}
		if unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '-' {
			word++
		} else {
			word = 0
		}
		if digits >= 5 || word > 40 {
			return ""
		}
	}
	if r := []rune(s); len(r) > 80 {
		s = string(r[:80]) + "…"
	}
	return s
}

// traceID returns Meta's trace id when it has the shape of one (letters,
// digits, '_' and '-'), so it can be quoted to Meta support.
func traceID(s string) string {
	if len(s) == 0 || len(s) > 64 {
		return ""
	}
	for _, r := range s {
		if !(r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '-')) {
			return ""
		}
	}
	return s
}

// flexInt decodes a number that Meta sometimes sends as a string.
type flexInt int

func (n *flexInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		return nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return nil // an odd code is treated as no code, not as a broken answer
	}
	*n = flexInt(v)
	return nil
}

// flexBool decodes true, false or their string forms.
type flexBool bool

func (v *flexBool) UnmarshalJSON(b []byte) error {
	*v = flexBool(strings.Trim(string(b), `"`) == "true")
	return nil
}
