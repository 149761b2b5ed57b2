// Package mandrill sends email through Mailchimp Transactional (Mandrill,
// API 1.0): templated messages (messages/send-template) and full ones
// (messages/send). It owns the request shapes and the reading of Mandrill's
// answers — per-recipient statuses and named errors — into vendor.Error;
// transport and status rules come from internal/vendor.
package mandrill

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/vendor"
)

const vendorName = "mandrill"

// DefaultTimeout bounds one API call when New is given no HTTP client.
const DefaultTimeout = 15 * time.Second

// Client sends through one Mandrill account.
type Client struct {
	base   string
	apiKey string
	from   *mail.Address
	http   *http.Client
	now    func() time.Time
}

// New returns a Client for cfg, which must be valid and enabled. A nil
// httpClient means vendor.NewHTTPClient(DefaultTimeout).
func New(cfg Config, httpClient *http.Client) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("mandrill config: %w", err)
	}
	if !cfg.Enabled() {
		return nil, errors.New("mandrill config: MANDRILL_API_KEY and MANDRILL_FROM are not set")
	}
	from, err := cfg.sender()
	if err != nil {
		return nil, fmt.Errorf("mandrill config: MANDRILL_FROM: %w", err)
	}
	if httpClient == nil {
		httpClient = vendor.NewHTTPClient(DefaultTimeout)
	}
	return &Client{base: strings.TrimRight(cfg.BaseURL, "/"), apiKey: cfg.APIKey, from: from, http: httpClient, now: time.Now}, nil
}

// Recipient is who a message goes to.
type Recipient struct {
	Email string
	Name  string
}

// TemplateMessage is a message rendered by Mandrill from a stored template.
type TemplateMessage struct {
	// Template is the template's slug (see Config.TemplateFor).
	Template string
	To       Recipient
	// MergeVars fill the template's *|NAME|* tags.
	MergeVars map[string]string
	// Tags group messages in Mandrill's stats (50 characters at most, no
	// leading underscore).
	Tags []string
	// Metadata is stored with the message and comes back in webhooks: IDs
	// such as lead_id, never personal data.
	Metadata map[string]string
}

// Message is a message whose content we render ourselves.
type Message struct {
	To      Recipient
	Subject string
	HTML    string
	Text    string
	// Headers are extra headers; Mandrill accepts Reply-To and X-* only.
	Headers  map[string]string
	Tags     []string
	Metadata map[string]string
}

// SendResult is Mandrill's answer for the recipient.
type SendResult struct {
	// ID is Mandrill's message id (_id): the vendor reference to store.
	ID string
	// Status is sent, queued or scheduled on success; rejected or invalid
	// come back with a permanent error.
	Status string
	// QueuedReason says why a message was queued rather than sent, when
	// Mandrill says.
	QueuedReason string
}

type recipient struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
	Type  string `json:"type"`
}

type mergeVar struct {
	Name    string `json:"name"`
	Content string `json:"content"`
}

// message is the "message" object both calls share; send-template takes
// it without content.
type message struct {
	HTML            string            `json:"html,omitempty"`
	Text            string            `json:"text,omitempty"`
	Subject         string            `json:"subject,omitempty"`
	FromEmail       string            `json:"from_email"`
	FromName        string            `json:"from_name,omitempty"`
	To              []recipient       `json:"to"`
	Headers         map[string]string `json:"headers,omitempty"`
	GlobalMergeVars []mergeVar        `json:"global_merge_vars,omitempty"`
	Tags            []string          `json:"tags,omitempty"`
	Metadata        map[string]string `json:"metadata,omitempty"`
}

// sendTemplateBody is the send-template request. template_content is
// required even when empty: it fills mc:edit regions, which our templates
// do not use (they take merge vars).
type sendTemplateBody struct {
	Key             string     `json:"key"`
	TemplateName    string     `json:"template_name"`
	TemplateContent []mergeVar `json:"template_content"`
	Message         message    `json:"message"`
}

type sendBody struct {
	Key     string  `json:"key"`
	Message message `json:"message"`
}

// SendTemplate sends the template tm.Template to tm.To. Errors are
// *vendor.Error and never hold the address or name. Mandrill has no
// idempotency key: a retry after a timeout may send twice.
func (c *Client) SendTemplate(ctx context.Context, tm TemplateMessage) (SendResult, error) {
	const op = "send template"
	if strings.TrimSpace(tm.Template) == "" {
		return SendResult{}, vendor.Permanentf(vendorName, op, "no template named")
	}
	msg, err := c.message(op, tm.To, tm.Tags, tm.Metadata)
	if err != nil {
		return SendResult{}, err
	}
	msg.GlobalMergeVars = mergeVars(tm.MergeVars)
	body := sendTemplateBody{Key: c.apiKey, TemplateName: tm.Template, TemplateContent: []mergeVar{}, Message: msg}
	return c.send(ctx, op, "/messages/send-template", body, tm.Template)
}

// SendMessage sends m as given. Same answer and error rules as
// SendTemplate.
func (c *Client) SendMessage(ctx context.Context, m Message) (SendResult, error) {
	const op = "send message"
	if m.HTML == "" && m.Text == "" {
		return SendResult{}, vendor.Permanentf(vendorName, op, "message has no content")
	}
	msg, err := c.message(op, m.To, m.Tags, m.Metadata)
	if err != nil {
		return SendResult{}, err
	}
	msg.Subject, msg.HTML, msg.Text, msg.Headers = m.Subject, m.HTML, m.Text, m.Headers
	return c.send(ctx, op, "/messages/send", sendBody{Key: c.apiKey, Message: msg}, "")
}

func (c *Client) message(op string, to Recipient, tags []string, metadata map[string]string) (message, error) {
	email := strings.TrimSpace(to.Email)
	if email == "" {
		return message{}, vendor.Permanentf(vendorName, op, "recipient has no email address")
	}
	return message{
		FromEmail: c.from.Address,
		FromName:  c.from.Name,
		To:        []recipient{{Email: email, Name: strings.TrimSpace(to.Name), Type: "to"}},
		Tags:      tags,
		Metadata:  metadata,
	}, nil
}

// mergeVars sorts by name so the same message always encodes the same way.
func mergeVars(m map[string]string) []mergeVar {
	out := make([]mergeVar, 0, len(m))
	for k, v := range m {
		out = append(out, mergeVar{Name: k, Content: v})
	}
	slices.SortFunc(out, func(a, b mergeVar) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// sendAnswer is one recipient's entry in a send answer.
type sendAnswer struct {
	Status       string `json:"status"`
	RejectReason string `json:"reject_reason"`
	QueuedReason string `json:"queued_reason"`
	ID           string `json:"_id"`
}

func (c *Client) send(ctx context.Context, op, path string, in any, template string) (SendResult, error) {
	payload, err := json.Marshal(in)
	if err != nil {
		return SendResult{}, vendor.Permanentf(vendorName, op, "encode request: %v", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(payload))
	if err != nil {
		return SendResult{}, vendor.Permanentf(vendorName, op, "build request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, body, err := vendor.Do(c.http, req, vendorName, op)
	if err != nil {
		return SendResult{}, err
	}
	var answers []sendAnswer
	if resp.StatusCode < 200 || resp.StatusCode > 299 || json.Unmarshal(body, &answers) != nil {
		// Errors are an object, not the array, whatever the status.
		return SendResult{}, classify(op, resp, body, template, c.now())
	}
	if len(answers) == 0 {
		return SendResult{}, vendor.Transientf(vendorName, op, "answer lists no recipient")
	}
	a := answers[0]
	res := SendResult{ID: a.ID, Status: a.Status, QueuedReason: safeWord(a.QueuedReason)}
	switch a.Status {
	case "sent", "queued", "scheduled":
		return res, nil
	case "rejected":
		e := vendor.Permanentf(vendorName, op, "recipient rejected")
		if r := safeWord(a.RejectReason); r != "" {
			e.Message += ": " + r
		}
		e.Status, e.Code = resp.StatusCode, "rejected"
		return res, e
	case "invalid":
		e := vendor.Permanentf(vendorName, op, "recipient address invalid")
		e.Status, e.Code = resp.StatusCode, "invalid"
		return res, e
	default:
		// Whether it went out is unknown; a retry could send it twice, so
		// stop here and let a person look.
		e := vendor.Permanentf(vendorName, op, "unexpected recipient status %q", safeWord(a.Status))
		e.Status = resp.StatusCode
		return res, e
	}
}
