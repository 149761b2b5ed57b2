package smtpmail

import (
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"strconv"
	"strings"

	gomail "github.com/wneessen/go-mail"
)

// Config is the SMTP part of the configuration. With SMTP_URL set, email
// goes out over SMTP (MailHog in development) instead of an email API.
//
// SMTP_URL forms:
//
//	smtp://host:port                 STARTTLS if the server offers it (MailHog: smtp://localhost:1025)
//	smtp://user:pass@host:587?starttls=required
//	smtps://user:pass@host:465       TLS from the first byte
//
// Parameters: starttls=opportunistic|required|none (smtp:// only; default
// opportunistic) and auth=plain|login|cram-md5 (default plain, used only
// with a user). The default port is 587 for smtp and 465 for smtps.
// Credentials are never sent over an unencrypted connection to a host
// other than localhost, whatever starttls says.
type Config struct {
	URL  string `env:"SMTP_URL" secret:"url"`
	From string `env:"SMTP_FROM" default:"CEP Formación <no-reply@cepcomunicacion.com>"`
}

// Enabled reports whether email goes out over SMTP.
func (c Config) Enabled() bool { return c.URL != "" }

// Validate reports what is wrong with c. Messages never quote the URL,
// which may hold a password.
func (c Config) Validate() error {
	var errs []error
	if c.URL != "" {
		if _, err := parseURL(c.URL); err != nil {
			errs = append(errs, fmt.Errorf("SMTP_URL: %v", err))
		}
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		errs = append(errs, errors.New(`SMTP_FROM: want an address such as "CEP Formación <no-reply@cepcomunicacion.com>"`))
	}
	return errors.Join(errs...)
}

// settings is SMTP_URL taken apart.
type settings struct {
	host        string
	port        int
	implicitTLS bool
	starttls    gomail.TLSPolicy
	user, pass  string
	auth        gomail.SMTPAuthType
}

var (
	starttlsPolicies = map[string]gomail.TLSPolicy{
		"opportunistic": gomail.TLSOpportunistic,
		"required":      gomail.TLSMandatory,
		"none":          gomail.NoTLS,
	}
	authTypes = map[string]gomail.SMTPAuthType{
		"plain":    gomail.SMTPAuthPlain,
		"login":    gomail.SMTPAuthLogin,
		"cram-md5": gomail.SMTPAuthCramMD5,
	}
)

func parseURL(raw string) (settings, error) {
	// url.Parse's error quotes the input, password included: never show it.
	u, err := url.Parse(raw)
	if err != nil {
		return settings{}, errors.New("not a URL; want smtp://[user:pass@]host[:port] or smtps://…")
	}
	s := settings{host: u.Hostname(), starttls: gomail.TLSOpportunistic, auth: gomail.SMTPAuthNoAuth}
	switch u.Scheme {
	case "smtp":
		s.port = 587
	case "smtps":
		s.port, s.implicitTLS, s.starttls = 465, true, gomail.NoTLS
	default:
		return settings{}, fmt.Errorf("want scheme smtp or smtps, got %q", u.Scheme)
	}
	if s.host == "" {
		return settings{}, errors.New("no host")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return settings{}, fmt.Errorf("port %q is not between 1 and 65535", p)
		}
		s.port = n
	}
	if u.Path != "" && u.Path != "/" {
		return settings{}, errors.New("unexpected path; want smtp://host:port")
	}
	if u.User != nil {
		s.user = u.User.Username()
		s.pass, _ = u.User.Password()
		s.auth = gomail.SMTPAuthPlain
	}
	for k, v := range u.Query() {
		val := strings.ToLower(v[len(v)-1])
		switch k {
		case "starttls":
			p, ok := starttlsPolicies[val]
			if !ok {
				return settings{}, errors.New("starttls: want opportunistic, required or none")
			}
			if s.implicitTLS {
				return settings{}, errors.New("starttls applies to smtp:// only; smtps:// is TLS from the start")
			}
			s.starttls = p
		case "auth":
			a, ok := authTypes[val]
			if !ok {
				return settings{}, errors.New("auth: want plain, login or cram-md5")
			}
			if s.user == "" {
				return settings{}, errors.New("auth given without a user")
			}
			s.auth = a
		default:
			return settings{}, fmt.Errorf("unknown parameter %q; known: starttls, auth", k)
		}
	}
	return s, nil
}
