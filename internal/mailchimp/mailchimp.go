// Package mailchimp upserts leads into a Mailchimp Marketing (API v3)
// audience: one idempotent PUT per member, then the member's tags. It owns
// the request shapes and the mapping of Mailchimp's error documents onto
// vendor.Error; transport and status rules come from internal/vendor.
package mailchimp

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/vendor"
)

// vendorName labels every error this package returns.
const vendorName = "mailchimp"

// DefaultTimeout bounds one API call when New is given no HTTP client.
const DefaultTimeout = 10 * time.Second

// Client talks to one audience of one Mailchimp account.
type Client struct {
	base   string
	apiKey string
	listID string
	http   *http.Client
	now    func() time.Time
}

// New returns a Client for cfg, which must be valid and enabled. A nil
// httpClient means vendor.NewHTTPClient(DefaultTimeout).
func New(cfg Config, httpClient *http.Client) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("mailchimp config: %w", err)
	}
	if !cfg.Enabled() {
		return nil, errors.New("mailchimp config: MAILCHIMP_API_KEY and MAILCHIMP_LIST_ID are not set")
	}
	if httpClient == nil {
		httpClient = vendor.NewHTTPClient(DefaultTimeout)
	}
	return &Client{base: cfg.APIBase(), apiKey: cfg.APIKey, listID: cfg.ListID, http: httpClient, now: time.Now}, nil
}

// Member is a lead as the audience sees it. Empty name and phone fields are
// not sent, so an upsert never blanks what the audience already holds.
type Member struct {
	Email     string
	FirstName string
	LastName  string
	Phone     string
	Tags      []string
}

// MemberResult is what Mailchimp says about the member after the upsert.
type MemberResult struct {
	// ID is Mailchimp's member id, the MD5 of the lower-cased address: the
	// vendor reference to store.
	ID string
	// UniqueEmailID identifies the address across the account's audiences.
	UniqueEmailID string
	// Status is the member's status after the upsert. An existing member
	// keeps theirs: "unsubscribed" or "cleaned" means they opted out or
	// bounced, and status_if_new did not (and must not) change that.
	Status string
}

// SubscriberHash is the member id Mailchimp uses in URLs: the hex MD5 of
// the lower-cased address. Using it keeps the address out of the path.
func SubscriberHash(email string) string {
	sum := md5.Sum([]byte(strings.ToLower(strings.TrimSpace(email))))
	return hex.EncodeToString(sum[:])
}

// memberBody is the PUT body. Tags are absent on purpose: Mailchimp applies
// them only when PUT creates the member and ignores them for existing
// ones, so they go through the member's tags endpoint instead.
type memberBody struct {
	EmailAddress string            `json:"email_address"`
	StatusIfNew  string            `json:"status_if_new"`
	MergeFields  map[string]string `json:"merge_fields,omitempty"`
}

type memberAnswer struct {
	ID            string `json:"id"`
	UniqueEmailID string `json:"unique_email_id"`
	Status        string `json:"status"`
}

type tagsBody struct {
	Tags []tagChange `json:"tags"`
}

type tagChange struct {
	Name   string `json:"name"`
	Status string `json:"status"`
}

// UpsertMember adds m to the audience as subscribed, or updates the merge
// fields of the member it already is, then makes m's tags active. Both
// calls are idempotent, so a retry after any failure is safe. Errors are
// *vendor.Error and never hold the address, name or phone.
func (c *Client) UpsertMember(ctx context.Context, m Member) (MemberResult, error) {
	const op = "upsert member"
	email := strings.TrimSpace(m.Email)
	if email == "" {
		return MemberResult{}, vendor.Permanentf(vendorName, op, "member has no email address")
	}
	hash := SubscriberHash(email)
	body := memberBody{EmailAddress: email, StatusIfNew: "subscribed", MergeFields: mergeFields(m)}
	var ans memberAnswer
	if err := c.call(ctx, op, http.MethodPut, c.memberPath(hash), body, &ans); err != nil {
		return MemberResult{}, err
	}
	res := MemberResult(ans)
	if res.ID == "" {
		res.ID = hash
	}
	if tags := activeTags(m.Tags); len(tags) > 0 {
		if err := c.call(ctx, "tag member", http.MethodPost, c.memberPath(hash)+"/tags", tagsBody{Tags: tags}, nil); err != nil {
			return res, err
		}
	}
	return res, nil
}

func (c *Client) memberPath(hash string) string {
	return "/3.0/lists/" + url.PathEscape(c.listID) + "/members/" + hash
}

func mergeFields(m Member) map[string]string {
	f := map[string]string{}
	for k, v := range map[string]string{"FNAME": m.FirstName, "LNAME": m.LastName, "PHONE": m.Phone} {
		if v = strings.TrimSpace(v); v != "" {
			f[k] = v
		}
	}
	if len(f) == 0 {
		return nil
	}
	return f
}

func activeTags(names []string) []tagChange {
	var out []tagChange
	seen := map[string]bool{}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" || seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, tagChange{Name: n, Status: "active"})
	}
	return out
}

// call sends one JSON request and decodes a 2xx answer into out (nil: the
// body is ignored, as for the tags endpoint's 204).
func (c *Client) call(ctx context.Context, op, method, path string, in, out any) error {
	payload, err := json.Marshal(in)
	if err != nil {
		return vendor.Permanentf(vendorName, op, "encode request: %v", err)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(payload))
	if err != nil {
		return vendor.Permanentf(vendorName, op, "build request: %v", err)
	}
	// Mailchimp takes the API key as the basic-auth password; the user name
	// is ignored.
	req.SetBasicAuth("cepjobs", c.apiKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, body, err := vendor.Do(c.http, req, vendorName, op)
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return classify(op, resp, body, c.now())
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		// The write went through; only its echo is unreadable. Retrying
		// the idempotent call is the way to learn the result.
		return vendor.Transientf(vendorName, op, "unreadable answer")
	}
	return nil
}
