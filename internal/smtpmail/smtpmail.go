// Package smtpmail sends email over SMTP — the alternative to an email API
// when SMTP_URL is set, and MailHog in development — and renders the
// welcome email. It builds and sends with go-mail and classifies SMTP
// replies into vendor.Error (vendor "smtp"): 5xx permanent, 4xx and
// transport failures transient.
package smtpmail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/cepcomunicacion/cepjobs/internal/vendor"
)

const vendorName = "smtp"

// commandTimeout bounds each SMTP command; the caller's ctx bounds the
// whole conversation.
const commandTimeout = 30 * time.Second

// Client sends through one SMTP server. It holds no connection: each Send
// dials, sends and quits, which suits a few emails per lead and leaves
// nothing to close.
type Client struct {
	s         settings
	from      *mail.Address
	tlsConfig *tls.Config
	now       func() time.Time
}

// New returns a Client for cfg, which must be valid and enabled. A nil
// tlsConfig verifies the server against the system roots; tests pass one
// trusting their own certificate.
func New(cfg Config, tlsConfig *tls.Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("smtp config: %w", err)
	}
	if !cfg.Enabled() {
		return nil, errors.New("smtp config: SMTP_URL is not set")
	}
	s, _ := parseURL(cfg.URL)
	from, _ := mail.ParseAddress(cfg.From)
	if tlsConfig == nil {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	} else {
		tlsConfig = tlsConfig.Clone()
	}
	if tlsConfig.ServerName == "" {
		tlsConfig.ServerName = s.host
	}
	return &Client{s: s, from: from, tlsConfig: tlsConfig, now: time.Now}, nil
}

// Recipient is who a message goes to.
type Recipient struct {
	Email string
	Name  string
}

// Message is one email. At least one of Text and HTML is needed; with both
// it goes out as multipart/alternative.
type Message struct {
	To      Recipient
	Subject string
	Text    string
	HTML    string
	// Headers are extra headers. A Message-ID derived from the lead and
	// the email's purpose ("lead-<id>.welcome@cepcomunicacion.com") lets
	// receivers and our logs recognise a resend of the same email.
	Headers map[string]string
}

// reservedHeaders are set from Message's fields; letting Headers set them
// too would send two.
var reservedHeaders = map[string]bool{
	"From": true, "To": true, "Cc": true, "Bcc": true, "Sender": true, "Subject": true, "Date": true,
	"Mime-Version": true, "Content-Type": true, "Content-Transfer-Encoding": true,
}

var (
	headerName = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)
	messageID  = regexp.MustCompile(`^[^\s<>@]+@[^\s<>@]+$`)
)

// Send delivers m and returns its Message-ID (without angle brackets).
// Errors are *vendor.Error and never hold the recipient or the server's
// reply text, which often quotes the address. SMTP has no idempotency: a
// retry after a lost reply to DATA may deliver twice, which is what the
// stable Message-ID is for.
func (c *Client) Send(ctx context.Context, m Message) (string, error) {
	const op = "send"
	msg, id, err := c.build(m)
	if err != nil {
		return "", vendor.Permanentf(vendorName, op, "%v", err)
	}
	var stop func() bool
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	// go-mail uses ctx only to dial; closing the connection when ctx ends
	// is what makes a cancelled or timed-out task stop mid-conversation.
	dial := func(dctx context.Context, network, addr string) (net.Conn, error) {
		d := &net.Dialer{}
		var conn net.Conn
		var err error
		if c.s.implicitTLS {
			conn, err = (&tls.Dialer{NetDialer: d, Config: c.tlsConfig}).DialContext(dctx, network, addr)
		} else {
			conn, err = d.DialContext(dctx, network, addr)
		}
		if err != nil {
			return nil, err
		}
		stop = context.AfterFunc(ctx, func() { conn.Close() })
		return conn, nil
	}
	opts := []gomail.Option{
		gomail.WithPort(c.s.port),
		gomail.WithTimeout(commandTimeout),
		gomail.WithTLSPolicy(c.s.starttls),
		gomail.WithTLSConfig(c.tlsConfig),
		gomail.WithDialContextFunc(dial),
	}
	if c.s.user != "" {
		opts = append(opts, gomail.WithSMTPAuth(c.s.auth), gomail.WithUsername(c.s.user), gomail.WithPassword(c.s.pass))
	}
	gm, err := gomail.NewClient(c.s.host, opts...)
	if err != nil {
		return "", vendor.Permanentf(vendorName, op, "set up client: %v", err)
	}
	err = gm.DialAndSendWithContext(ctx, msg)
	// A failed QUIT after the server accepted the message is no failure.
	if err != nil && !msg.IsDelivered() {
		return "", classify(ctx, op, err)
	}
	return id, nil
}

// build turns m into a go-mail message. Its errors name no address.
func (c *Client) build(m Message) (*gomail.Msg, string, error) {
	if m.Text == "" && m.HTML == "" {
		return nil, "", errors.New("message has no content")
	}
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	if err := msg.FromFormat(c.from.Name, c.from.Address); err != nil {
		return nil, "", errors.New("sender address invalid")
	}
	email := strings.TrimSpace(m.To.Email)
	if email == "" {
		return nil, "", errors.New("recipient has no email address")
	}
	if err := msg.AddToFormat(strings.TrimSpace(m.To.Name), email); err != nil {
		return nil, "", errors.New("recipient address invalid")
	}
	msg.Subject(oneLine(m.Subject))
	msg.SetDateWithValue(c.now())
	var id string
	for k, v := range m.Headers {
		name := textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k))
		switch {
		case !headerName.MatchString(name):
			return nil, "", fmt.Errorf("header name %q invalid", k)
		case reservedHeaders[name]:
			return nil, "", fmt.Errorf("header %q comes from the message fields", name)
		case strings.ContainsAny(v, "\r\n"):
			return nil, "", fmt.Errorf("header %q has a line break", name)
		case name == "Message-Id":
			id = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(v), "<"), ">")
			if !messageID.MatchString(id) {
				return nil, "", errors.New("header Message-ID invalid; want local@domain")
			}
			msg.SetMessageIDWithValue(id)
		default:
			msg.SetGenHeader(gomail.Header(name), v)
		}
	}
	if id == "" {
		msg.SetMessageID()
		id = strings.Trim(msg.GetMessageID(), "<>")
	}
	switch {
	case m.Text != "" && m.HTML != "":
		msg.SetBodyString(gomail.TypeTextPlain, m.Text)
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	case m.Text != "":
		msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	default:
		msg.SetBodyString(gomail.TypeTextHTML, m.HTML)
	}
	return msg, id, nil
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
