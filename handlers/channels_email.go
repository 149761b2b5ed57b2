package handlers

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/cepcomunicacion/cepjobs/internal/mailchimp"
	"github.com/cepcomunicacion/cepjobs/internal/mandrill"
	"github.com/cepcomunicacion/cepjobs/internal/smtpmail"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// mailchimpUpserter is the part of *mailchimp.Client the channel uses.
type mailchimpUpserter interface {
	UpsertMember(ctx context.Context, m mailchimp.Member) (mailchimp.MemberResult, error)
}

// MailchimpChannel adds consenting leads to the marketing audience. The
// upsert is keyed by the address's hash, so a repeat is harmless.
type MailchimpChannel struct{ Client mailchimpUpserter }

// Name implements Channel.
func (MailchimpChannel) Name() tasks.Channel { return tasks.ChannelMailchimp }

// RateKey implements Channel.
func (MailchimpChannel) RateKey() string { return "mailchimp" }

// Skip implements Channel: without marketing consent a lead is never put on
// a mailing list.
func (MailchimpChannel) Skip(l store.LeadDetail) string {
	if !l.ConsentMarketing {
		return "no marketing consent"
	}
	return ""
}

// Deliver implements Channel.
func (c MailchimpChannel) Deliver(ctx context.Context, l store.LeadDetail, _ store.Delivery, _ func(json.RawMessage) error) (string, error) {
	tags := []string{"curso:" + l.Course}
	if l.Campaign != "" {
		tags = append(tags, "campana:"+l.Campaign)
	}
	if l.Site != "" {
		tags = append(tags, "sede:"+l.Site)
	}
	res, err := c.Client.UpsertMember(ctx, mailchimp.Member{
		Email: l.Email, FirstName: l.FirstName, LastName: l.LastName, Phone: l.Phone, Tags: tags,
	})
	if err != nil {
		return "", err
	}
	return res.ID, nil
}

// mandrillSender is the part of *mandrill.Client the email paths use.
type mandrillSender interface {
	SendTemplate(ctx context.Context, tm mandrill.TemplateMessage) (mandrill.SendResult, error)
	SendMessage(ctx context.Context, m mandrill.Message) (mandrill.SendResult, error)
}

// smtpSender is the part of *smtpmail.Client the email paths use.
type smtpSender interface {
	Send(ctx context.Context, m smtpmail.Message) (string, error)
}

// WelcomeEmailChannel sends the welcome email: through Mailchimp
// Transactional with the course's template, or, when SMTP_URL is set,
// rendered here and sent over SMTP (MailHog in development).
type WelcomeEmailChannel struct {
	Mandrill    mandrillSender
	TemplateFor func(course string) string
	SMTP        smtpSender
}

// Name implements Channel.
func (WelcomeEmailChannel) Name() tasks.Channel { return tasks.ChannelWelcomeEmail }

// RateKey implements Channel.
func (c WelcomeEmailChannel) RateKey() string {
	if c.SMTP != nil {
		return "smtp"
	}
	return "mandrill"
}

// Skip implements Channel: the welcome email answers the person's own
// request, so privacy consent (which every stored lead has) is enough.
func (WelcomeEmailChannel) Skip(store.LeadDetail) string { return "" }

// Deliver implements Channel.
func (c WelcomeEmailChannel) Deliver(ctx context.Context, l store.LeadDetail, _ store.Delivery, _ func(json.RawMessage) error) (string, error) {
	name := strings.TrimSpace(l.FirstName + " " + l.LastName)
	if c.SMTP != nil {
		subject, text, html := smtpmail.Welcome(l.Course, l.FirstName)
		return c.SMTP.Send(ctx, smtpmail.Message{
			To: smtpmail.Recipient{Email: l.Email, Name: name}, Subject: subject, Text: text, HTML: html,
			Headers: map[string]string{"Message-ID": "lead-" + l.ID + ".welcome@cepcomunicacion.com"},
		})
	}
	res, err := c.Mandrill.SendTemplate(ctx, mandrill.TemplateMessage{
		Template:  c.TemplateFor(l.Course),
		To:        mandrill.Recipient{Email: l.Email, Name: name},
		MergeVars: map[string]string{"FNAME": l.FirstName, "COURSE": l.Course, "CAMPUS": l.Site},
		Tags:      []string{"welcome"},
		Metadata:  map[string]string{"lead_id": l.ID},
	})
	if err != nil {
		return "", err
	}
	return res.ID, nil
}

// TransactionalEmail sends stored emails (email:send) over SMTP when
// configured, else through Mailchimp Transactional.
type TransactionalEmail struct {
	Mandrill mandrillSender
	SMTP     smtpSender
}

// RateKey implements EmailSender.
func (t TransactionalEmail) RateKey() string {
	if t.SMTP != nil {
		return "smtp"
	}
	return "mandrill"
}

// SendEmail implements EmailSender.
func (t TransactionalEmail) SendEmail(ctx context.Context, e store.Email) (string, error) {
	if t.SMTP != nil {
		return t.SMTP.Send(ctx, smtpmail.Message{
			To: smtpmail.Recipient{Email: e.ToEmail, Name: e.ToName}, Subject: e.Subject, Text: e.Text, HTML: e.HTML,
			Headers: map[string]string{"Message-ID": "email-" + e.ID + "@cepcomunicacion.com"},
		})
	}
	if e.Template != "" {
		res, err := t.Mandrill.SendTemplate(ctx, mandrill.TemplateMessage{
			Template: e.Template, To: mandrill.Recipient{Email: e.ToEmail, Name: e.ToName},
			MergeVars: e.MergeVars, Tags: e.Tags, Metadata: map[string]string{"email_id": e.ID},
		})
		return res.ID, err
	}
	res, err := t.Mandrill.SendMessage(ctx, mandrill.Message{
		To: mandrill.Recipient{Email: e.ToEmail, Name: e.ToName}, Subject: e.Subject, HTML: e.HTML, Text: e.Text,
		Tags: e.Tags, Metadata: map[string]string{"email_id": e.ID},
	})
	return res.ID, err
}
