package mandrill

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/vendor"
)

// errorAnswer is Mandrill's error object:
// {"status":"error","code":-1,"name":"Invalid_Key","message":"Invalid API key"}.
// Older accounts get it with HTTP 500 whatever the cause; newer ones with
// 400, 401 or 404. The name is what to classify by.
type errorAnswer struct {
	Status  string `json:"status"`
	Code    int    `json:"code"`
	Name    string `json:"name"`
	Message string `json:"message"`
}

type rule struct {
	permanent bool
	message   string
}

// errorNames are the error names the messages calls document, plus the
// ones any call can return.
var errorNames = map[string]rule{
	"Invalid_Key":        {true, "API key invalid or revoked"},
	"ValidationError":    {true, "request failed validation"},
	"Unknown_Template":   {true, "template does not exist"},
	"Invalid_Template":   {true, "template invalid"},
	"Unknown_Subaccount": {true, "subaccount does not exist"},
	"PaymentRequired":    {true, "feature requires a paid account"},
	"Unknown_Message":    {true, "message id does not exist"},
	"Unknown_Sender":     {true, "sender does not exist"},
	"Invalid_Reject":     {true, "address is not on the rejection list"},
	"Invalid_TagName":    {true, "tag name invalid"},
	"GeneralError":       {false, "unexpected error at Mandrill"},
	"ServiceUnavailable": {false, "subsystem down for maintenance"},
}

// classify turns an error answer into a *vendor.Error: by name when the
// name is known, else by status (unknown names with 5xx are transient).
func classify(op string, resp *http.Response, body []byte, template string, now time.Time) *vendor.Error {
	var a errorAnswer
	_ = json.Unmarshal(body, &a)
	name := safeWord(a.Name)
	e := vendor.StatusError(vendorName, op, resp, name, "", now)
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		// A 2xx that is not the recipients array: say so, retry.
		e.Permanent = false
		e.Message = "unreadable answer"
	}
	r, ok := errorNames[name]
	if !ok {
		return e
	}
	e.Permanent, e.Message = r.permanent, r.message
	switch name {
	case "Unknown_Template":
		if template != "" {
			e.Message = fmt.Sprintf("template %q does not exist", template)
		}
	case "ValidationError":
		if fields := validationFields(a.Message); len(fields) > 0 {
			e.Message += ": " + strings.Join(fields, ", ")
		}
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		e.Permanent = false
	}
	return e
}

// validationFields lists the field paths a ValidationError names. Its
// message is "Validation error: {json}", whose values may quote what we
// sent (an address), so only the object keys are kept.
func validationFields(msg string) []string {
	i := strings.IndexByte(msg, '{')
	if i < 0 {
		return nil
	}
	var doc any
	if json.Unmarshal([]byte(msg[i:]), &doc) != nil {
		return nil
	}
	var out []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, child := range x {
				if !keyPattern.MatchString(k) {
					continue
				}
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				walk(p, child)
			}
		case []any:
			for _, child := range x {
				walk(prefix, child)
			}
		default:
			if prefix != "" && !slices.Contains(out, prefix) {
				out = append(out, prefix)
			}
		}
	}
	walk("", doc)
	slices.Sort(out)
	if len(out) > 5 {
		out = out[:5]
	}
	return out
}

var (
	keyPattern  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,40}$`)
	wordPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,40}$`)
)

// safeWord keeps vendor words that are identifiers (error names, reject
// reasons, statuses) and drops anything else, which might be an echo.
func safeWord(s string) string {
	if wordPattern.MatchString(s) {
		return s
	}
	return ""
}
