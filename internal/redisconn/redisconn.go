// Package redisconn turns REDIS_URL into asynq connection options. It accepts
// a single server, Sentinel and Cluster, so the fleet can grow from one VPS
// to a replicated Redis without code changes:
//
//	redis://[user:password@]host:port[/db]
//	rediss://[user:password@]host:port[/db]            (TLS)
//	redis-socket://[user:password@]/path/to/socket[?db=N]
//	redis-sentinel://[user:password@]h1:26379,h2:26379[/db]?master=NAME[&sentinel_password=P][&tls=true]
//	redis-cluster://[user:password@]h1:6379,h2:6379[?tls=true]
//
// It also has a Redact that keeps passwords out of logs and errors.
package redisconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Timeouts shared by every connection: short enough that a dead Redis makes
// a request fall back to the outbox quickly instead of hanging.
const (
	dialTimeout  = 2 * time.Second
	readTimeout  = 3 * time.Second
	writeTimeout = 3 * time.Second
)

// Parse parses a REDIS_URL. Errors never quote the URL (it may hold a
// password).
func Parse(raw string) (asynq.RedisConnOpt, error) {
	if raw == "" {
		return nil, errors.New("empty url")
	}
	u, hosts, err := parseURL(raw)
	if err != nil {
		return nil, err
	}
	user := u.User.Username()
	pass, _ := u.User.Password()
	q := u.Query()
	useTLS := q.Get("tls") == "true"
	switch u.Scheme {
	case "redis", "rediss":
		if u.Host == "" {
			return nil, errors.New("missing host (want redis://host:port/db)")
		}
		db, err := pathDB(u.Path)
		if err != nil {
			return nil, err
		}
		o := asynq.RedisClientOpt{Addr: withPort(u.Host, "6379"), Username: user, Password: pass, DB: db,
			DialTimeout: dialTimeout, ReadTimeout: readTimeout, WriteTimeout: writeTimeout}
		if u.Scheme == "rediss" {
			o.TLSConfig = &tls.Config{ServerName: hostOnly(u.Host), MinVersion: tls.VersionTLS12}
		}
		return o, nil
	case "redis-socket":
		if u.Path == "" {
			return nil, errors.New("missing socket path (want redis-socket:///path/to/redis.sock)")
		}
		db := 0
		if v := q.Get("db"); v != "" {
			if db, err = strconv.Atoi(v); err != nil || db < 0 {
				return nil, errors.New("db must be a non-negative number")
			}
		}
		return asynq.RedisClientOpt{Network: "unix", Addr: u.Path, Username: user, Password: pass, DB: db,
			DialTimeout: dialTimeout, ReadTimeout: readTimeout, WriteTimeout: writeTimeout}, nil
	case "redis-sentinel":
		addrs, err := hostList(hosts, "26379")
		if err != nil {
			return nil, err
		}
		master := q.Get("master")
		if master == "" {
			return nil, errors.New("missing master name (add ?master=NAME)")
		}
		db, err := pathDB(u.Path)
		if err != nil {
			return nil, err
		}
		o := asynq.RedisFailoverClientOpt{MasterName: master, SentinelAddrs: addrs,
			SentinelPassword: q.Get("sentinel_password"), Username: user, Password: pass, DB: db,
			DialTimeout: dialTimeout, ReadTimeout: readTimeout, WriteTimeout: writeTimeout}
		if useTLS {
			o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		return o, nil
	case "redis-cluster":
		addrs, err := hostList(hosts, "6379")
		if err != nil {
			return nil, err
		}
		if u.Path != "" && u.Path != "/" && u.Path != "/0" {
			return nil, errors.New("redis cluster has only database 0")
		}
		o := asynq.RedisClusterClientOpt{Addrs: addrs, Username: user, Password: pass,
			DialTimeout: dialTimeout, ReadTimeout: readTimeout, WriteTimeout: writeTimeout}
		if useTLS {
			o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		return o, nil
	case "":
		return nil, errors.New("missing scheme (want redis://host:port/db)")
	default:
		return nil, fmt.Errorf("unsupported scheme %q (want redis, rediss, redis-socket, redis-sentinel or redis-cluster)", u.Scheme)
	}
}

// Client makes a go-redis client for the options; the caller closes it.
func Client(o asynq.RedisConnOpt) redis.UniversalClient {
	return o.MakeRedisClient().(redis.UniversalClient)
}

// Ping checks that Redis answers within the timeout.
func Ping(ctx context.Context, c redis.UniversalClient, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}

// Redact returns the URL with any password replaced, for logs and config
// dumps. An unparsable URL is not echoed at all.
func Redact(raw string) string {
	if raw == "" {
		return ""
	}
	u, _, err := parseURL(raw)
	if err != nil {
		return "(unparsable, not shown)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	if q.Has("sentinel_password") {
		q.Set("sentinel_password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// parseURL parses raw, whose host part may be a comma-separated list with
// ports on some entries only, which net/url refuses. The list comes back as
// it was written; the URL gets a placeholder host.
func parseURL(raw string) (*url.URL, string, error) {
	bad := errors.New("not a url (want redis://[user:password@]host:port/db)")
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, "", bad
	}
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo, hosts := "", authority
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, hosts = authority[:i+1], authority[i+1:]
	}
	placeholder := "placeholder"
	if hosts == "" {
		placeholder = ""
	}
	u, err := url.Parse(scheme + "://" + userinfo + placeholder + tail)
	if err != nil {
		return nil, "", bad
	}
	u.Host = hosts
	return u, hosts, nil
}

func pathDB(p string) (int, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return 0, nil
	}
	db, err := strconv.Atoi(p)
	if err != nil || db < 0 {
		return 0, errors.New("database must be a non-negative number after the host (redis://host:port/0)")
	}
	return db, nil
}

func hostList(h, defPort string) ([]string, error) {
	if h == "" {
		return nil, errors.New("missing hosts (want host:port[,host:port…])")
	}
	var out []string
	for _, a := range strings.Split(h, ",") {
		if a = strings.TrimSpace(a); a == "" {
			return nil, errors.New("empty host in the list")
		}
		out = append(out, withPort(a, defPort))
	}
	return out, nil
}

func withPort(h, def string) string {
	if _, _, err := net.SplitHostPort(h); err == nil {
		return h
	}
	return net.JoinHostPort(strings.Trim(h, "[]"), def)
}

func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}
