package smtpmail_test

import (
	"strings"
	"testing"

	"github.com/cepcomunicacion/cepjobs/internal/smtpmail"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	const from = "CEP Formación <no-reply@cepcomunicacion.com>"
	for _, tc := range []struct {
		url, from string
		wantErr   string // "" means valid; else a substring, after the variable name
	}{
		{"", from, ""},
		{"smtp://localhost:1025", from, ""},
		{"smtp://user:s3cret@smtp.example.org:587?starttls=required", from, ""},
		{"smtp://user:s3cret@smtp.example.org?auth=login&starttls=opportunistic", from, ""},
		{"smtps://user:s3cret@smtp.example.org", from, ""},
		{"smtp://localhost:1025", "no-reply@cepcomunicacion.com", ""},
		{"http://localhost:1025", from, "SMTP_URL: want scheme smtp or smtps"},
		{"smtp://:1025", from, "SMTP_URL: no host"},
		{"smtp://user:s3cret@host:99999", from, "SMTP_URL: port"},
		{"smtp://user:s3cret@host:x", from, "SMTP_URL: not a URL"},
		{"smtp://host?starttls=maybe", from, "SMTP_URL: starttls"},
		{"smtps://host?starttls=required", from, "SMTP_URL: starttls applies to smtp:// only"},
		{"smtp://host?auth=plain", from, "SMTP_URL: auth given without a user"},
		{"smtp://u:s3cret@host?auth=xoauth", from, "SMTP_URL: auth: want"},
		{"smtp://host?tls=yes", from, `SMTP_URL: unknown parameter "tls"`},
		{"smtp://host/inbox", from, "SMTP_URL: unexpected path"},
		{"smtp://localhost:1025", "CEP <broken", "SMTP_FROM:"},
	} {
		cfg := smtpmail.Config{URL: tc.url, From: tc.from}
		err := cfg.Validate()
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("Validate(%q, %q): got %v, want no error", tc.url, tc.from, err)
		case tc.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErr[:strings.Index(tc.wantErr, ":")+1]) || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("Validate(%q, %q): got %v, want %q", tc.url, tc.from, err, tc.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Validate(%q): error shows the password: %v", tc.url, err)
		}
		if got, want := cfg.Enabled(), tc.url != ""; got != want {
			t.Errorf("Enabled(%q): got %v, want %v", tc.url, got, want)
		}
	}
}
