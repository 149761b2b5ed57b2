package graph

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
)

// DefaultBaseURL is the Graph API host.
const DefaultBaseURL = "https://graph.facebook.com"

// DefaultVersion is the newest Graph API version when this was written
// (v26.0, released 2026-07-29). Each version lives about two years; Meta
// documents Conversions API versions as supported for at least two.
const DefaultVersion = "v26.0"

var (
	versionPattern = regexp.MustCompile(`^v[0-9]+\.[0-9]+$`)
	idPattern      = regexp.MustCompile(`^[0-9]+$`)
)

// URL is base/version/id/edge. The id is escaped even though it is checked
// to be numeric: it ends up in a path.
func URL(base, version, id, edge string) string {
	return strings.TrimRight(base, "/") + "/" + version + "/" + url.PathEscape(id) + "/" + edge
}

// CheckBaseURL reports whether v can be a Graph API base URL; name is the
// variable it came from, for the error text.
func CheckBaseURL(name, v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return errors.New(name + ": want an http(s) URL without query, such as " + DefaultBaseURL)
	}
	return nil
}

// CheckVersion reports whether v looks like a Graph API version.
func CheckVersion(name, v string) error {
	if !versionPattern.MatchString(v) {
		return errors.New(name + ": want a Graph API version such as " + DefaultVersion)
	}
	return nil
}

// CheckID reports whether v looks like a Graph object id (all digits).
func CheckID(name, v string) error {
	if !idPattern.MatchString(v) {
		return errors.New(name + ": want the numeric id Meta shows for it")
	}
	return nil
}
