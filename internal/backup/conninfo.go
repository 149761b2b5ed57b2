package backup

import (
	"errors"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// errBadConnString never repeats the connection string: it may hold a
// password, and url.Parse errors quote their whole input.
var errBadConnString = errors.New("cannot parse the connection string (want postgres://user:password@host:port/dbname?sslmode=disable or key=value pairs)")

// connInfo is a connection string split into what may be shown (on a
// command line, where ps reads it) and the password, which reaches pg_dump
// and pg_restore through PGPASSWORD instead.
type connInfo struct {
	u        *url.URL // URL form, password removed
	kv       []kv     // key=value form, password removed
	password string
}

type kv struct{ key, value string }

// DatabaseName returns the database a connection string names, as List,
// Latest and Prune want it.
func DatabaseName(databaseURL string) (string, error) {
	c, err := pgconn.ParseConfig(databaseURL)
	if err != nil {
		return "", errBadConnString
	}
	return c.Database, nil
}

func parseConnInfo(s string) (connInfo, error) {
	if _, err := pgconn.ParseConfig(s); err != nil {
		return connInfo{}, errBadConnString
	}
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		u, err := url.Parse(s)
		if err != nil {
			return connInfo{}, errBadConnString
		}
		var ci connInfo
		if p, ok := u.User.Password(); ok {
			ci.password = p
			u.User = url.User(u.User.Username())
		}
		if q := u.Query(); q.Has("password") {
			ci.password = q.Get("password")
			q.Del("password")
			u.RawQuery = q.Encode()
		}
		ci.u = u
		return ci, nil
	}
	pairs, err := parseKV(s)
	if err != nil {
		return connInfo{}, errBadConnString
	}
	var ci connInfo
	for _, p := range pairs {
		if p.key == "password" {
			ci.password = p.value
			continue
		}
		ci.kv = append(ci.kv, p)
	}
	return ci, nil
}

// String is the connection string without its password.
func (c connInfo) String() string {
	if c.u != nil {
		return c.u.String()
	}
	var b strings.Builder
	for i, p := range c.kv {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(p.key)
		b.WriteString("='")
		b.WriteString(strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(p.value))
		b.WriteByte('\'')
	}
	return b.String()
}

// full is the connection string with its password, for pgx in this
// process only.
func (c connInfo) full() string {
	if c.password == "" {
		return c.String()
	}
	if c.u != nil {
		u := *c.u
		u.User = url.UserPassword(u.User.Username(), c.password)
		return u.String()
	}
	d := c
	d.kv = append(append([]kv(nil), c.kv...), kv{"password", c.password})
	d.password = ""
	return d.String()
}

// withDatabase points c at another database on the same server.
func (c connInfo) withDatabase(name string) connInfo {
	if c.u != nil {
		u := *c.u
		u.Path = "/" + name
		u.RawPath = ""
		c.u = &u
		return c
	}
	var out []kv
	for _, p := range c.kv {
		if p.key != "dbname" {
			out = append(out, p)
		}
	}
	c.kv = append(out, kv{"dbname", name})
	return c
}

// env is what a libpq child process needs besides its argv.
func (c connInfo) env() []string {
	env := []string{"PGAPPNAME=cepjobs-backup"}
	if c.password != "" {
		env = append(env, "PGPASSWORD="+c.password)
	}
	return env
}

// parseKV reads libpq key=value pairs: values may be single-quoted, with
// backslash escaping a quote or a backslash.
func parseKV(s string) ([]kv, error) {
	var out []kv
	for {
		s = strings.TrimLeft(s, " \t\n\r\f\v")
		if s == "" {
			return out, nil
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, errBadConnString
		}
		key := strings.TrimSpace(s[:eq])
		s = strings.TrimLeft(s[eq+1:], " \t\n\r\f\v")
		var val strings.Builder
		if strings.HasPrefix(s, "'") {
			s = s[1:]
			closed := false
			for len(s) > 0 {
				ch := s[0]
				s = s[1:]
				if ch == '\\' && len(s) > 0 {
					val.WriteByte(s[0])
					s = s[1:]
					continue
				}
				if ch == '\'' {
					closed = true
					break
				}
				val.WriteByte(ch)
			}
			if !closed {
				return nil, errBadConnString
			}
		} else {
			for len(s) > 0 && !strings.ContainsRune(" \t\n\r\f\v", rune(s[0])) {
				if s[0] == '\\' && len(s) > 1 {
					s = s[1:]
				}
				val.WriteByte(s[0])
				s = s[1:]
			}
		}
		out = append(out, kv{key, val.String()})
	}
}
