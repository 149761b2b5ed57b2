// Package meta reports leads to Meta's Conversions API, server to server,
// so ad campaigns are credited with the leads they bring even when the
// browser pixel is blocked. It owns the event payload and the normalising
// and hashing of customer information; the Graph API error table it shares
// with WhatsApp lives in meta/graph.
//
// Reference: https://developers.facebook.com/docs/marketing-api/conversions-api
package meta

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/meta/graph"
	"github.com/cepcomunicacion/cepjobs/internal/vendor"
)

const (
	vendorName = "meta"
	opSendLead = "send lead event"
)

// LeadEvent is one lead, as the Conversions API's "Lead" standard event.
type LeadEvent struct {
	// EventID is our lead id. Meta drops a second event with the same
	// event_name and event_id (from a retry, or from the browser pixel
	// if it sends the same id), so sending twice is harmless.
	EventID string
	// EventTime is when the lead was submitted. Meta refuses the whole
	// request when it is more than 7 days old.
	EventTime time.Time
	// Customer information, sent only as normalised SHA-256 hashes. Empty
	// fields are left out; City and Country are optional, Country as an
	// ISO 3166-1 alpha-2 code ("ES").
	Email, Phone, FirstName, LastName, City, Country string
	// ClientIP and UserAgent are the visitor's, sent in clear as Meta
	// requires. The user agent is required for website events; an IP that
	// does not parse is left out rather than failing the event.
	ClientIP, UserAgent string
	// EventSourceURL is the page the form was on; required for website
	// events.
	EventSourceURL string
	// CustomData is passed through as custom_data (course, campaign, …).
	// It is not hashed, so it must hold no personal data.
	CustomData map[string]any
}

// Result is Meta's acknowledgement.
type Result struct {
	EventsReceived int
	// FBTraceID identifies the call for Meta support.
	FBTraceID string
}

// Client sends events to one pixel.
type Client struct {
	cfg  Config
	http *http.Client
	now  func() time.Time
}

// New returns a Client for cfg, which must be enabled and valid. A nil
// httpClient means vendor.NewHTTPClient with a 10 s timeout.
func New(cfg Config, httpClient *http.Client) (*Client, error) {
	if !cfg.Enabled() {
		return nil, errors.New("meta: META_PIXEL_ID and META_ACCESS_TOKEN are required")
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if httpClient == nil {
		httpClient = vendor.NewHTTPClient(10 * time.Second)
	}
	return &Client{cfg: cfg, http: httpClient, now: time.Now}, nil
}

// eventsRequest is the body of POST /{pixel_id}/events. The token travels
// in the body, as the documented access_token parameter: never in the URL,
// which transport errors and proxies may log.
type eventsRequest struct {
	Data          []serverEvent `json:"data"`
	TestEventCode string        `json:"test_event_code,omitempty"`
	AccessToken   string        `json:"access_token"`
}

type serverEvent struct {
	EventName      string         `json:"event_name"`
	EventTime      int64          `json:"event_time"`
	EventID        string         `json:"event_id"`
	ActionSource   string         `json:"action_source"`
	EventSourceURL string         `json:"event_source_url"`
	UserData       userData       `json:"user_data"`
	CustomData     map[string]any `json:"custom_data,omitempty"`
}

type userData struct {
	Email           []string `json:"em,omitempty"`
	Phone           []string `json:"ph,omitempty"`
	FirstName       []string `json:"fn,omitempty"`
	LastName        []string `json:"ln,omitempty"`
	City            []string `json:"ct,omitempty"`
	Country         []string `json:"country,omitempty"`
	ClientIPAddress string   `json:"client_ip_address,omitempty"`
	ClientUserAgent string   `json:"client_user_agent"`
}

type eventsResponse struct {
	EventsReceived *int   `json:"events_received"`
	FBTraceID      string `json:"fbtrace_id"`
}

// SendLead reports ev as a website "Lead" event. Errors are *vendor.Error:
// permanent for a bad event or a refused token, transient (and Throttled
// for rate limits) otherwise.
func (c *Client) SendLead(ctx context.Context, ev LeadEvent) (Result, error) {
	se, err := leadEvent(ev)
	if err != nil {
		return Result{}, err
	}
	body, err := json.Marshal(eventsRequest{
		Data:          []serverEvent{se},
		TestEventCode: c.cfg.TestEventCode,
		AccessToken:   c.cfg.AccessToken,
	})
	if err != nil {
		// Only custom data can fail to encode; the error would name its type.
		return Result{}, vendor.Permanentf(vendorName, opSendLead, "custom data is not JSON-encodable")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, graph.URL(c.cfg.BaseURL, c.cfg.APIVersion, c.cfg.PixelID, "events"), bytes.NewReader(body))
	if err != nil {
		return Result{}, vendor.Permanentf(vendorName, opSendLead, "build request: invalid base URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, answer, err := vendor.Do(c.http, req, vendorName, opSendLead)
	if err != nil {
		return Result{}, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return Result{}, graph.StatusError(vendorName, opSendLead, resp, answer, c.now(), nil)
	}
	var out eventsResponse
	if err := json.Unmarshal(answer, &out); err != nil || out.EventsReceived == nil {
		return Result{}, vendor.Transientf(vendorName, opSendLead, "unreadable answer (HTTP %d)", resp.StatusCode)
	}
	if *out.EventsReceived < 1 {
		// A retry is safe: event_id deduplicates.
		return Result{}, vendor.Transientf(vendorName, opSendLead, "meta received no event (fbtrace_id %s)", out.FBTraceID)
	}
	return Result{EventsReceived: *out.EventsReceived, FBTraceID: out.FBTraceID}, nil
}

// leadEvent checks ev and builds its wire form. Its errors name fields,
// never values.
func leadEvent(ev LeadEvent) (serverEvent, error) {
	switch {
	case ev.EventID == "":
		return serverEvent{}, vendor.Permanentf(vendorName, opSendLead, "event id is required (it deduplicates retries)")
	case ev.EventTime.IsZero():
		return serverEvent{}, vendor.Permanentf(vendorName, opSendLead, "event time is required")
	case ev.UserAgent == "":
		return serverEvent{}, vendor.Permanentf(vendorName, opSendLead, "user agent is required for website events")
	case ev.EventSourceURL == "":
		return serverEvent{}, vendor.Permanentf(vendorName, opSendLead, "event source URL is required for website events")
	}
	return serverEvent{
		EventName:      "Lead",
		EventTime:      ev.EventTime.Unix(),
		EventID:        ev.EventID,
		ActionSource:   "website",
		EventSourceURL: ev.EventSourceURL,
		UserData: userData{
			Email:           hashed(ev.Email, NormalizeEmail),
			Phone:           hashed(ev.Phone, NormalizePhone),
			FirstName:       hashed(ev.FirstName, NormalizeName),
			LastName:        hashed(ev.LastName, NormalizeName),
			City:            hashed(ev.City, NormalizeCity),
			Country:         hashed(ev.Country, NormalizeCountry),
			ClientIPAddress: clientIP(ev.ClientIP),
			ClientUserAgent: ev.UserAgent,
		},
		CustomData: ev.CustomData,
	}, nil
}

// clientIP returns ip as Meta wants it (a bare IPv4 or IPv6 address), or ""
// when it is not one: Meta documents the field as a valid address and
// rejects a batch with an invalid event, and a lead is worth more than its
// IP. A port (from a proxy header) is cut off.
func clientIP(ip string) string {
	if a, err := netip.ParseAddr(ip); err == nil {
		return a.Unmap().WithZone("").String()
	}
	if ap, err := netip.ParseAddrPort(ip); err == nil {
		return ap.Addr().Unmap().WithZone("").String()
	}
	return ""
}
