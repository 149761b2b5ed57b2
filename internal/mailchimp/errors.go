package mailchimp

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/vendor"
)

// problem is Mailchimp's error document (application/problem+json). Its
// detail echoes the request ("ana@example.com is already a list member"),
// so only title and the field names of errors are ever read into an error.
type problem struct {
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Errors []struct {
		Field string `json:"field"`
	} `json:"errors"`
}

// rule is how one error title is classified. permanent overrides the
// status-based default; message is the safe text shown instead of detail.
type rule struct {
	permanent  bool
	message    string
	retryAfter time.Duration
}

// titles maps the error titles of Mailchimp's error glossary and of the
// member endpoints to a classification.
var titles = map[string]rule{
	"Bad Request":                    {permanent: true, message: "request not accepted"},
	"Invalid Action":                 {permanent: true, message: "action not valid for this resource"},
	"JSON Parse Exception":           {permanent: true, message: "request body is not valid JSON"},
	"API Key Missing":                {permanent: true, message: "API key missing"},
	"API Key Invalid":                {permanent: true, message: "API key invalid or revoked"},
	"Forbidden":                      {permanent: true, message: "API key has no access to this resource"},
	"User Disabled":                  {permanent: true, message: "Mailchimp account disabled"},
	"Wrong Datacenter":               {permanent: true, message: "API key belongs to another data center"},
	"Resource Not Found":             {permanent: true, message: "audience or member not found"},
	"Method Not Allowed":             {permanent: true, message: "method not allowed"},
	"Member Exists":                  {permanent: true, message: "address is already a list member"},
	"Forgotten Email Not Subscribed": {permanent: true, message: "address was permanently deleted from the audience and can only come back by signing up again"},
	"Member In Compliance State":     {permanent: true, message: "address is unsubscribed, bounced or under compliance review and cannot be re-subscribed through the API"},
	"Too Many Requests":              {message: "too many concurrent requests"},
	"Internal Server Error":          {message: "Mailchimp internal error"},
	// A 503 that is no outage: the whole account is held for review. It
	// clears only by a person's action, so wait long between attempts
	// instead of failing every lead for good.
	"Compliance Related": {message: "account under compliance review", retryAfter: time.Hour},
}

// fieldName is what a merge-field tag looks like (FNAME, PHONE, MMERGE5).
var fieldName = regexp.MustCompile(`^[A-Za-z0-9_.]{1,40}$`)

// classify turns a non-2xx answer into a *vendor.Error.
func classify(op string, resp *http.Response, body []byte, now time.Time) *vendor.Error {
	var p problem
	_ = json.Unmarshal(body, &p) // a gateway's HTML page leaves p empty
	title := safeTitle(p.Title)
	e := vendor.StatusError(vendorName, op, resp, title, "", now)
	if r, ok := titles[title]; ok {
		e.Permanent, e.Message = r.permanent, r.message
		if r.retryAfter > e.RetryAfter {
			e.RetryAfter = r.retryAfter
		}
		return e
	}
	switch {
	case title == "Invalid Resource":
		invalidResource(e, p)
	case title == "" && resp.StatusCode == http.StatusForbidden:
		// Mailchimp's own 403s carry an error document; a bare one comes
		// from the edge in front of the API when it sheds load.
		e.Permanent, e.Message = false, "forbidden without an error document"
	}
	return e
}

// invalidResource splits the catch-all 400 by what its detail says,
// without ever copying the detail, which quotes the address.
func invalidResource(e *vendor.Error, p problem) {
	detail := strings.ToLower(p.Detail)
	switch {
	case strings.Contains(detail, "looks fake or invalid"):
		e.Message = "address looks fake or invalid"
	case strings.Contains(detail, "signed up to a lot of lists very recently"):
		// Mailchimp's per-address sign-up throttle: the same request
		// succeeds later.
		e.Permanent, e.Message = false, "address signed up to too many lists recently"
		e.RetryAfter = max(e.RetryAfter, 5*time.Minute)
	case len(p.Errors) > 0:
		var fields []string
		for _, f := range p.Errors {
			if fieldName.MatchString(f.Field) && !slices.Contains(fields, f.Field) {
				fields = append(fields, f.Field)
			}
		}
		e.Message = "invalid merge fields"
		if len(fields) > 0 {
			e.Message += ": " + strings.Join(fields, ", ")
		}
	default:
		e.Message = "invalid resource"
	}
}

// safeTitle keeps a title only if it looks like one: glossary titles are
// short fixed phrases, and anything else might be an echo.
func safeTitle(t string) string {
	t = strings.TrimSpace(t)
	if len(t) > 60 || strings.ContainsAny(t, "@\n") {
		return ""
	}
	return t
}
