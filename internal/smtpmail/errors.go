package smtpmail

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/textproto"
	"strconv"
	"strings"

	gomail "github.com/wneessen/go-mail"
	gosmtp "github.com/wneessen/go-mail/smtp"

	"github.com/cepcomunicacion/cepjobs/internal/vendor"
)

// classify turns a failed send into a *vendor.Error. SMTP's reply classes
// decide: 5xx will fail again (mailbox unknown, policy, bad credentials),
// 4xx and lost connections may not. The server's reply text is never
// kept: it usually quotes the recipient.
func classify(ctx context.Context, op string, err error) *vendor.Error {
	e := &vendor.Error{Vendor: vendorName, Op: op}
	if ctxErr := ctx.Err(); ctxErr != nil {
		e.Message, e.Err = "cancelled", ctxErr
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			e.Message = "timed out"
		}
		return e
	}
	var se *gomail.SendError
	if errors.As(err, &se) {
		// Not wrapped: SendError's text lists the recipients.
		code := se.ErrorCode()
		e.Message = stepReason(se.Reason)
		if esc := se.EnhancedStatusCode(); esc != "" {
			e.Message += " (" + esc + ")"
		}
		switch {
		case code >= 500:
			e.Permanent = true
		case code >= 400:
		case se.Reason == gomail.ErrGetSender || se.Reason == gomail.ErrGetRcpts || se.Reason == gomail.ErrNoUnencoded:
			e.Permanent = true // our message or the server's abilities, not the moment
		}
		if code > 0 {
			e.Code = strconv.Itoa(code)
		}
		return e
	}
	e.Err = err
	var tp *textproto.Error
	var certErr *tls.CertificateVerificationError
	var hostErr x509.HostnameError
	var authorityErr x509.UnknownAuthorityError
	var invalidErr x509.CertificateInvalidError
	var recordErr tls.RecordHeaderError
	var netErr net.Error
	var opErr *net.OpError
	switch {
	case errors.As(err, &tp):
		// Greeting, EHLO, STARTTLS or AUTH refused.
		e.Code = strconv.Itoa(tp.Code)
		e.Permanent = tp.Code >= 500
		e.Message = "server refused the session"
		if strings.Contains(err.Error(), "SMTP AUTH failed") {
			e.Message = "authentication failed"
		}
	case errors.As(err, &certErr), errors.As(err, &hostErr), errors.As(err, &authorityErr), errors.As(err, &invalidErr):
		e.Permanent, e.Message = true, "server certificate not trusted"
	case errors.As(err, &recordErr):
		e.Permanent, e.Message = true, "server does not speak TLS on this port"
	case errors.Is(err, gosmtp.ErrUnencrypted):
		e.Permanent, e.Message = true, "refusing to send credentials over an unencrypted connection"
	case errors.Is(err, gomail.ErrPlainAuthNotSupported), errors.Is(err, gomail.ErrLoginAuthNotSupported),
		errors.Is(err, gomail.ErrCramMD5AuthNotSupported), strings.Contains(err.Error(), "does not support SMTP AUTH"):
		e.Permanent, e.Message = true, "server does not offer the configured AUTH mechanism"
	case strings.Contains(err.Error(), "does not support STARTTLS"):
		e.Permanent, e.Message = true, "server does not offer STARTTLS, which SMTP_URL requires"
	case errors.As(err, &netErr) && netErr.Timeout():
		e.Message = "timed out"
	case errors.As(err, &opErr):
		e.Message = "network error: " + opErr.Op
		if opErr.Err != nil {
			e.Message += " " + opErr.Err.Error()
		}
	default:
		e.Message = "connection failed"
	}
	return e
}

// stepReason names the SMTP step that failed.
func stepReason(r gomail.SendErrReason) string {
	switch r {
	case gomail.ErrSMTPMailFrom:
		return "sender rejected"
	case gomail.ErrSMTPRcptTo:
		return "recipient rejected"
	case gomail.ErrSMTPData, gomail.ErrSMTPDataClose, gomail.ErrWriteContent:
		return "message rejected"
	case gomail.ErrConnCheck:
		return "connection lost"
	case gomail.ErrNoUnencoded:
		return "server cannot take 8-bit content"
	case gomail.ErrGetSender:
		return "sender address invalid"
	case gomail.ErrGetRcpts:
		return "recipient address invalid"
	}
	return "send failed"
}
