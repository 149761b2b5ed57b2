package devenv

import (
	"net/url"
	"regexp"
	"strings"
)

// redactedPassword replaces passwords; it matches what url.URL.Redacted uses.
const redactedPassword = "xxxxx"

// keywordPassword matches password=… in key/value DSNs ("host=x password=y"),
// which pgx accepts as DATABASE_URL too.
var keywordPassword = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]+)`)

// redact returns conn with any password replaced, for logs and errors.
// It works on the raw text rather than on url.Parse so that malformed URLs,
// which are exactly the ones that end up in error messages, are covered.
func redact(conn string) string {
	if _, pw, ok := userinfoPassword(conn); ok {
		start, end := pw[0], pw[1]
		return conn[:start] + redactedPassword + conn[end:]
	}
	return keywordPassword.ReplaceAllString(conn, "${1}"+redactedPassword)
}

// userinfoPassword finds the password in scheme://user:password@host and
// returns its raw text and byte range in conn.
func userinfoPassword(conn string) (string, [2]int, bool) {
	i := strings.Index(conn, "://")
	if i < 0 {
		return "", [2]int{}, false
	}
	authStart := i + len("://")
	authority := conn[authStart:]
	if j := strings.IndexAny(authority, "/?#"); j >= 0 {
		authority = authority[:j]
	}
	// The last @ ends the userinfo: an unescaped @ in a password is
	// malformed but common, and it must not leak either.
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return "", [2]int{}, false
	}
	colon := strings.Index(authority[:at], ":")
	if colon < 0 {
		return "", [2]int{}, false
	}
	start, end := authStart+colon+1, authStart+at
	return conn[start:end], [2]int{start, end}, true
}

// redactedError carries a message scrubbed of a password while keeping the
// original error reachable for errors.Is (timeouts, cancellation).
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// scrubError hides conn's password in err's message: drivers and url.Parse
// sometimes quote the connection string they were given. It replaces the
// password only where it appears as one (whole string, user:pw@,
// password=pw), because replacing every occurrence of a password like
// "postgres" would garble the message.
func scrubError(err error, conn string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := strings.ReplaceAll(msg, conn, redact(conn))
	if raw, _, ok := userinfoPassword(conn); ok && raw != "" {
		forms := []string{raw}
		if dec, derr := url.PathUnescape(raw); derr == nil && dec != raw {
			forms = append(forms, dec)
		}
		for _, f := range forms {
			clean = strings.ReplaceAll(clean, ":"+f+"@", ":"+redactedPassword+"@")
		}
	}
	clean = keywordPassword.ReplaceAllString(clean, "${1}"+redactedPassword)
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}
