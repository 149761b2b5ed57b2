// Package whatsapp notifies the sales team of new leads through the
// WhatsApp Cloud API, with an approved template (a business may only start
// a conversation with one). It owns the message payload and the Cloud
// API's error codes; the Graph API error handling it builds on lives in
// meta/graph.
//
// Reference: https://developers.facebook.com/documentation/business-messaging/whatsapp
package whatsapp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/meta/graph"
	"github.com/cepcomunicacion/cepjobs/internal/vendor"
)

const (
	vendorName     = "whatsapp"
	opSendTemplate = "send template"
)

// Template is one template message to send.
type Template struct {
	// Name and Language of the approved template; empty means the
	// configured WHATSAPP_TEMPLATE and WHATSAPP_TEMPLATE_LANGUAGE.
	Name, Language string
	// BodyParams fill the body's {{1}}, {{2}}, … in order.
	BodyParams []string
	// ButtonURLSuffix fills the variable part of the template's first URL
	// button; empty when the template has none.
	ButtonURLSuffix string
}

// LeadNotification is the sales template's message for one lead: body
// "Nuevo lead: {{1}} en {{2}}. Ver: {{3}}" with the course, the campus and
// the link to the lead in our dashboard. It carries no personal data of the
// lead, only where to look. Name and Language are left to the configuration.
func LeadNotification(course, campus, leadURL string) Template {
	return Template{BodyParams: []string{orDash(course), orDash(campus), orDash(leadURL)}}
}

// orDash stands in for an empty value: Meta refuses an empty parameter.
func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

// Client sends messages from one business phone number.
type Client struct {
	cfg  Config
	http *http.Client
	now  func() time.Time
}

// New returns a Client for cfg, which must be enabled and valid. A nil
// httpClient means vendor.NewHTTPClient with a 10 s timeout.
func New(cfg Config, httpClient *http.Client) (*Client, error) {
	if !cfg.Enabled() {
		return nil, errors.New("whatsapp: WHATSAPP_TOKEN, WHATSAPP_PHONE_NUMBER_ID and WHATSAPP_SALES_NUMBERS are required")
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

// SalesNumbers are the configured recipients of lead notifications.
func (c *Client) SalesNumbers() []string { return append([]string(nil), c.cfg.SalesNumbers...) }

type messageRequest struct {
	MessagingProduct string      `json:"messaging_product"`
	RecipientType    string      `json:"recipient_type"`
	To               string      `json:"to"`
	Type             string      `json:"type"`
	Template         templateReq `json:"template"`
}

type templateReq struct {
	Name       string      `json:"name"`
	Language   languageReq `json:"language"`
	Components []component `json:"components,omitempty"`
}

type languageReq struct {
	Code string `json:"code"`
}

type component struct {
	Type       string      `json:"type"`
	SubType    string      `json:"sub_type,omitempty"`
	Index      string      `json:"index,omitempty"`
	Parameters []parameter `json:"parameters"`
}

type parameter struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type messageResponse struct {
	Messages []struct {
		ID string `json:"id"`
	} `json:"messages"`
}

// SendTemplate sends tmpl to the E.164 number to and returns the message id
// (wamid…) Meta accepted. Acceptance is not delivery: delivery failures
// arrive later, on the messages webhook. Errors are *vendor.Error and never
// hold the number. A call that timed out may still have been sent: the
// Cloud API has no idempotency key, so a retry can notify twice.
func (c *Client) SendTemplate(ctx context.Context, to string, tmpl Template) (string, error) {
	if !e164.MatchString(to) {
		return "", vendor.Permanentf(vendorName, opSendTemplate, "recipient is not an E.164 number")
	}
	if tmpl.Name == "" {
		tmpl.Name = c.cfg.Template
	}
	if tmpl.Language == "" {
		tmpl.Language = c.cfg.TemplateLanguage
	}
	msg := messageRequest{
		MessagingProduct: "whatsapp",
		RecipientType:    "individual",
		To:               strings.TrimPrefix(to, "+"),
		Type:             "template",
		Template: templateReq{
			Name:     tmpl.Name,
			Language: languageReq{Code: tmpl.Language},
		},
	}
	if len(tmpl.BodyParams) > 0 {
		body := component{Type: "body"}
		for i, p := range tmpl.BodyParams {
			p = cleanParam(p)
			if p == "" {
				return "", vendor.Permanentf(vendorName, opSendTemplate, "body parameter %d is empty", i+1)
			}
			body.Parameters = append(body.Parameters, parameter{Type: "text", Text: p})
		}
		msg.Template.Components = append(msg.Template.Components, body)
	}
	if s := cleanParam(tmpl.ButtonURLSuffix); s != "" {
		msg.Template.Components = append(msg.Template.Components, component{
			Type: "button", SubType: "url", Index: "0",
			Parameters: []parameter{{Type: "text", Text: s}},
		})
	}
	payload, err := json.Marshal(msg)
	if err != nil {
		return "", vendor.Permanentf(vendorName, opSendTemplate, "encode message")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, graph.URL(c.cfg.BaseURL, c.cfg.APIVersion, c.cfg.PhoneNumberID, "messages"), bytes.NewReader(payload))
	if err != nil {
		return "", vendor.Permanentf(vendorName, opSendTemplate, "build request: invalid base URL")
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, answer, err := vendor.Do(c.http, req, vendorName, opSendTemplate)
	if err != nil {
		return "", err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", graph.StatusError(vendorName, opSendTemplate, resp, answer, c.now(), rules)
	}
	var out messageResponse
	if err := json.Unmarshal(answer, &out); err != nil || len(out.Messages) == 0 || out.Messages[0].ID == "" {
		return "", vendor.Transientf(vendorName, opSendTemplate, "answer has no message id (HTTP %d)", resp.StatusCode)
	}
	return out.Messages[0].ID, nil
}

// cleanParam makes s acceptable as a text parameter: Meta refuses one that
// holds new lines, tabs or more than four consecutive spaces, so white
// space runs become one space.
func cleanParam(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
