package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"net/netip"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cepcomunicacion/cepjobs/store"
)

// leadRequest is the body of POST /v1/leads.
type leadRequest struct {
	ExternalID   string          `json:"external_id"`
	FirstName    string          `json:"first_name"`
	LastName     string          `json:"last_name"`
	Email        string          `json:"email"`
	Phone        string          `json:"phone"`
	Course       string          `json:"course"`
	Campaign     string          `json:"campaign"`
	Site         string          `json:"site"`
	Source       string          `json:"source"`
	Message      string          `json:"message"`
	UTM          *utmRequest     `json:"utm"`
	Consent      *consentRequest `json:"consent"`
	Client       *clientRequest  `json:"client"`
	CaptchaToken string          `json:"captcha_token"`
}

type utmRequest struct {
	Source   string `json:"source"`
	Medium   string `json:"medium"`
	Campaign string `json:"campaign"`
	Term     string `json:"term"`
	Content  string `json:"content"`
}

type consentRequest struct {
	Privacy     *bool  `json:"privacy"`
	Marketing   *bool  `json:"marketing"`
	TextVersion string `json:"text_version"`
	AcceptedAt  string `json:"accepted_at"`
}

type clientRequest struct {
	IP        string `json:"ip"`
	UserAgent string `json:"user_agent"`
}

// leadResponse is the answer to POST /v1/leads.
type leadResponse struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	Duplicate bool   `json:"duplicate"`
}

// isE164 reports whether v is + then 7 to 15 digits, the first not 0.
// (Loops, not regular expressions: these run on every lead, and a regular
// expression cost ~2 % of the intake's CPU per request.)
func isE164(v string) bool {
	if len(v) < 8 || len(v) > 16 || v[0] != '+' || v[1] == '0' {
		return false
	}
	for i := 1; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return true
}

// isSlug reports whether v is a letter or digit followed by letters,
// digits, '.', '_' and '-'.
func isSlug(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

type checker struct{ errs []FieldError }

func (c *checker) add(field, msg string) {
	c.errs = append(c.errs, FieldError{Field: field, Message: msg})
}

// text checks a free-text field: length in characters, valid UTF-8, no
// control characters (a newline is allowed where multiline is true).
func (c *checker) text(field, v string, required bool, max int, multiline bool) {
	switch {
	case strings.TrimSpace(v) == "":
		if required {
			c.add(field, "required")
		}
	case !utf8.ValidString(v):
		c.add(field, "must be valid UTF-8")
	case utf8.RuneCountInString(v) > max:
		c.add(field, fmt.Sprintf("must be at most %d characters", max))
	default:
		for _, r := range v {
			if unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\r' || r == '\t')) {
				c.add(field, "must not contain control characters")
				return
			}
			if !multiline && invisible(r) {
				c.add(field, "must not contain invisible or direction-changing characters (U+200B, U+202E, U+FEFF, …)")
				return
			}
		}
	}
}

// invisible reports characters that make a one-line text display other
// than it reads, or not at all: bidi embeddings, overrides and isolates,
// zero-width space, word joiner, byte order mark, line and paragraph
// separators. Zero-width (non-)joiners stay allowed: scripts and emoji
// need them.
func invisible(r rune) bool {
	return (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) ||
		r == 0x200B || r == 0x2060 || r == 0xFEFF || r == 0x2028 || r == 0x2029
}

func (c *checker) slug(field, v string, required bool) {
	switch {
	case v == "":
		if required {
			c.add(field, "required")
		}
	case len(v) > 128:
		c.add(field, "must be at most 128 characters")
	case !isSlug(v):
		c.add(field, "must be an identifier: letters, digits, '.', '_' or '-' (e.g. tecnico-marketing-digital)")
	}
}

// validate checks every field and returns the lead to store.
func (req *leadRequest) validate(now time.Time) (store.NewLead, []FieldError) {
	var c checker
	c.text("external_id", req.ExternalID, false, 128, false)
	c.text("first_name", req.FirstName, true, 100, false)
	c.text("last_name", req.LastName, false, 100, false)
	switch email := strings.TrimSpace(req.Email); {
	case email == "":
		c.add("email", "required")
	case len(email) > 254:
		c.add("email", "must be at most 254 characters")
	case strings.ContainsFunc(email, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }):
		// Quoted local parts may hold spaces and tabs; no mailbox we send
		// to does, and a format character hides what the address is.
		c.add("email", "must be an email address such as ana@example.com")
	default:
		a, err := mail.ParseAddress(email)
		_, domain, _ := strings.Cut(email, "@")
		if err != nil || a.Address != email || a.Name != "" || !strings.Contains(domain, ".") || strings.HasSuffix(domain, ".") {
			c.add("email", "must be an email address such as ana@example.com")
		}
	}
	if req.Phone != "" && !isE164(req.Phone) {
		c.add("phone", "must be in E.164 form: + then country code and number, digits only (e.g. +34600111222)")
	}
	c.slug("course", req.Course, true)
	c.slug("campaign", req.Campaign, false)
	c.slug("site", req.Site, false)
	c.slug("source", req.Source, true)
	c.text("message", req.Message, false, 5000, true)
	if u := req.UTM; u != nil {
		c.text("utm.source", u.Source, false, 200, false)
		c.text("utm.medium", u.Medium, false, 200, false)
		c.text("utm.campaign", u.Campaign, false, 200, false)
		c.text("utm.term", u.Term, false, 200, false)
		c.text("utm.content", u.Content, false, 200, false)
	}
	var acceptedAt time.Time
	if req.Consent == nil {
		c.add("consent", "required: the privacy consent the person gave")
	} else {
		k := req.Consent
		if k.Privacy == nil || !*k.Privacy {
			c.add("consent.privacy", "must be true: a lead cannot be stored without privacy consent")
		}
		c.text("consent.text_version", k.TextVersion, true, 64, false)
		if k.AcceptedAt != "" {
			t, err := time.Parse(time.RFC3339, k.AcceptedAt)
			switch {
			case err != nil:
				c.add("consent.accepted_at", "must be an RFC 3339 time such as 2026-11-27T10:00:00Z")
			case t.After(now.Add(24 * time.Hour)):
				c.add("consent.accepted_at", "must not be in the future")
			default:
				acceptedAt = t.UTC()
			}
		}
	}
	var ip netip.Addr
	if cl := req.Client; cl != nil {
		if cl.IP != "" {
			a, err := netip.ParseAddr(cl.IP)
			if err != nil || a.Zone() != "" {
				c.add("client.ip", "must be an IPv4 or IPv6 address")
			} else {
				ip = a.Unmap()
			}
		}
		c.text("client.user_agent", cl.UserAgent, false, 1000, false)
	}
	if len(req.CaptchaToken) > 8192 {
		c.add("captcha_token", "must be at most 8192 characters")
	}
	if len(c.errs) > 0 {
		return store.NewLead{}, c.errs
	}
	l := store.NewLead{
		ExternalID: req.ExternalID, FirstName: strings.TrimSpace(req.FirstName), LastName: strings.TrimSpace(req.LastName),
		Email: strings.TrimSpace(req.Email), Phone: req.Phone,
		Course: req.Course, Campaign: req.Campaign, Site: req.Site, Source: req.Source, Message: req.Message,
		ConsentPrivacy: true, ConsentTextVersion: req.Consent.TextVersion, ConsentAcceptedAt: acceptedAt,
		ClientIP: ip,
	}
	if req.Consent.Marketing != nil {
		l.ConsentMarketing = *req.Consent.Marketing
	}
	if req.Client != nil {
		l.ClientUserAgent = req.Client.UserAgent
	}
	if u := req.UTM; u != nil {
		l.UTM = map[string]string{}
		for k, v := range map[string]string{"source": u.Source, "medium": u.Medium, "campaign": u.Campaign, "term": u.Term, "content": u.Content} {
			if v != "" {
				l.UTM[k] = v
			}
		}
	}
	return l, nil
}

// mergeFieldErrors lists shape errors first, then validation errors for
// fields that had no shape error (a number in first_name is "must be a
// string", not also "required").
func mergeFieldErrors(shape, valid []FieldError) []FieldError {
	seen := map[string]bool{}
	for _, e := range shape {
		seen[e.Field] = true
	}
	out := shape
	for _, e := range valid {
		if !seen[e.Field] {
			out = append(out, e)
		}
	}
	return out
}

var idemKeyRE = regexp.MustCompile(`^[\x21-\x7e]{1,255}$`)

func renderSubmission(res store.LeadSubmission) (store.Response, error) {
	status, body := submissionAnswer(res)
	b, err := json.Marshal(body)
	// writeJSON's encoder ends with a newline: a replay is byte-identical.
	return store.Response{Status: status, Body: append(b, '\n')}, err
}

func submissionAnswer(res store.LeadSubmission) (int, leadResponse) {
	if res.Duplicate {
		return http.StatusOK, leadResponse{ID: res.LeadID, Status: res.Status, Duplicate: true}
	}
	return http.StatusAccepted, leadResponse{ID: res.LeadID, Status: store.LeadQueued}
}

func (s *Server) handleCreateLead() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		body, err := readBody(w, r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		var req leadRequest
		shapeErrs, err := decodeJSON(body, &req)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		now := s.now()
		lead, ferrs := req.validate(now)
		if ferrs = mergeFieldErrors(shapeErrs, ferrs); len(ferrs) > 0 {
			s.fail(w, r, validationProblem(ferrs))
			return
		}
		tok := tokenFrom(ctx)
		lead.SubmittedBy = tok.Name

		var idem *store.Idempotency
		if key := r.Header.Get("Idempotency-Key"); key != "" {
			if !idemKeyRE.MatchString(key) {
				s.fail(w, r, validationProblem([]FieldError{{Field: "Idempotency-Key", Message: "header must be 1-255 printable ASCII characters"}}))
				return
			}
			h := sha256.Sum256(append([]byte(r.Method+" "+r.URL.Path+"\n"), body...))
			idem = &store.Idempotency{Principal: tok.Name, Key: key, RequestHash: h[:], Render: renderSubmission}
			// Replay before the captcha check: hCaptcha refuses a token seen
			// before, and a retry carries the same token.
			replay, err := s.store.LookupIdempotency(ctx, idem)
			if err != nil {
				s.fail(w, r, err)
				return
			}
			if replay != nil {
				writeReplay(w, replay)
				return
			}
		}
		if s.captcha != nil {
			if err := s.captcha.Verify(ctx, req.CaptchaToken, ipString(lead.ClientIP)); err != nil {
				s.fail(w, r, err)
				return
			}
		}
		res, err := s.store.SubmitLead(ctx, lead, now, idem)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if res.Replay != nil {
			writeReplay(w, res.Replay)
			return
		}
		if !res.Duplicate {
			s.dispatch.SendLead(ctx, res.LeadID)
		}
		status, answer := submissionAnswer(res)
		if status == http.StatusAccepted {
			w.Header().Set("Location", "/v1/leads/"+res.LeadID)
		}
		writeJSON(w, status, answer)
	})
}

func writeReplay(w http.ResponseWriter, resp *store.Response) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Idempotency-Replayed", "true")
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
}

func ipString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// leadStatusResponse is the answer to GET /v1/leads/{id}: progress only,
// no personal data.
type leadStatusResponse struct {
	ID         string             `json:"id"`
	Status     string             `json:"status"`
	Course     string             `json:"course"`
	Source     string             `json:"source"`
	ReceivedAt time.Time          `json:"received_at"`
	UpdatedAt  time.Time          `json:"updated_at"`
	Deliveries []deliveryResponse `json:"deliveries"`
}

type deliveryResponse struct {
	Channel     string     `json:"channel"`
	Status      string     `json:"status"`
	Attempts    int        `json:"attempts"`
	Reason      string     `json:"reason,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	UpdatedAt   time.Time  `json:"updated_at"`
	DeliveredAt *time.Time `json:"delivered_at,omitempty"`
}

func (s *Server) handleGetLead() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ls, err := s.store.LeadStatus(r.Context(), r.PathValue("id"))
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				s.fail(w, r, problem(http.StatusNotFound, "no lead with this id"))
				return
			}
			s.fail(w, r, err)
			return
		}
		out := leadStatusResponse{ID: ls.ID, Status: ls.Status, Course: ls.Course, Source: ls.Source,
			ReceivedAt: ls.ReceivedAt.UTC(), UpdatedAt: ls.UpdatedAt.UTC(), Deliveries: []deliveryResponse{}}
		for _, d := range ls.Deliveries {
			out.Deliveries = append(out.Deliveries, deliveryResponse{Channel: d.Channel, Status: d.Status, Attempts: d.Attempts,
				Reason: d.Reason, LastError: d.LastError, UpdatedAt: d.UpdatedAt.UTC(), DeliveredAt: d.DeliveredAt})
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// captchaVerifier is the part of *hcaptcha.Verifier the API uses.
type captchaVerifier interface {
	Verify(ctx context.Context, token, remoteIP string) error
}
