package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

type ctxKey int

const (
	keyRequestID ctxKey = iota
	keyToken
	keyLogInfo
)

// logInfo is filled in by inner middleware for the request log line.
type logInfo struct{ token string }

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// requestID takes a sane X-Request-Id from the caller or makes one, and
// echoes it on the response.
func (s *Server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !requestIDRE.MatchString(id) {
			var b [12]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), keyRequestID, id)))
	})
}

func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(keyRequestID).(string)
	return id
}

// recoverer turns a panic into a logged 500 problem: no panic reaches a user
// as a dropped connection, and the process keeps serving.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic serving request", "request_id", requestIDFrom(r.Context()), "path", r.URL.Path, "panic", v)
			writeProblem(w, r, problem(http.StatusInternalServerError, "internal error"))
		}()
		next.ServeHTTP(w, r)
	})
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cepjobs_http_requests_total",
			Help: "HTTP requests served, by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cepjobs_http_request_duration_seconds",
			Help:    "HTTP request latency by route pattern.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration)
	}
	return m
}

// instrument counts, times and logs each request under its route pattern,
// and bounds its run time.
func (s *Server) instrument(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		info := &logInfo{}
		ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), keyLogInfo, info), s.cfg.RequestTimeout)
		defer cancel()
		next.ServeHTTP(sw, r.WithContext(ctx))
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		d := time.Since(start)
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
		s.metrics.duration.WithLabelValues(route).Observe(d.Seconds())
		if route == "GET /metrics" || route == "GET /healthz" || route == "GET /readyz" {
			return // probes would drown the log
		}
		level := slog.LevelInfo
		switch {
		case sw.status == http.StatusServiceUnavailable:
			level = slog.LevelWarn // a dependency or a setting, said in the body
		case sw.status >= 500:
			level = slog.LevelError
		}
		// Route pattern, not path: paths carry ids, and no body or client
		// address is logged.
		s.log.Log(r.Context(), level, "request", "request_id", requestIDFrom(r.Context()), "route", route,
			"status", sw.status, "duration_ms", float64(d.Microseconds())/1000, "token", info.token)
	})
}

func tokenFrom(ctx context.Context) *Token {
	t, _ := ctx.Value(keyToken).(*Token)
	return t
}

// authorize checks the bearer token (constant time, against every token, so
// timing tells nothing), the scope, and the token's rate limit.
func (s *Server) authorize(scope string, next http.Handler) http.Handler {
	digests := make([][32]byte, len(s.cfg.Tokens))
	for i, t := range s.cfg.Tokens {
		digests[i] = sha256.Sum256([]byte(t.Secret))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, secret, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || secret == "" {
			s.unauthorized(w, r, "send Authorization: Bearer <token>")
			return
		}
		got := sha256.Sum256([]byte(strings.TrimSpace(secret)))
		match := -1
		for i := range digests {
			if subtle.ConstantTimeCompare(got[:], digests[i][:]) == 1 {
				match = i
			}
		}
		if match < 0 {
			s.unauthorized(w, r, "the token is not valid")
			return
		}
		tok := &s.cfg.Tokens[match]
		if info, ok := r.Context().Value(keyLogInfo).(*logInfo); ok {
			info.token = tok.Name
		}
		r = r.WithContext(context.WithValue(r.Context(), keyToken, tok))
		if !slices.Contains(tok.Scopes, scope) {
			writeProblem(w, r, problem(http.StatusForbidden, "this token lacks the scope "+scope))
			return
		}
		if wait := s.limiter.wait(tok.Name); wait > 0 {
			p := problem(http.StatusTooManyRequests, "rate limit for this token exceeded; retry after the time in Retry-After")
			p.retryAfter = wait
			writeProblem(w, r, p)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request, detail string) {
	p := problem(http.StatusUnauthorized, detail)
	p.header = http.Header{"Www-Authenticate": {`Bearer realm="cepjobs"`}}
	writeProblem(w, r, p)
}

// limiters holds one token bucket per API token.
type limiters struct {
	mu    sync.Mutex
	rate  rate.Limit
	burst int
	m     map[string]*rate.Limiter
}

func newLimiters(perSecond float64, burst int) *limiters {
	if perSecond <= 0 {
		perSecond = math.Inf(1)
	}
	return &limiters{rate: rate.Limit(perSecond), burst: max(burst, 1), m: map[string]*rate.Limiter{}}
}

// wait returns 0 when the request may go ahead, else how long to wait.
func (l *limiters) wait(name string) time.Duration {
	l.mu.Lock()
	lim, ok := l.m[name]
	if !ok {
		lim = rate.NewLimiter(l.rate, l.burst)
		l.m[name] = lim
	}
	l.mu.Unlock()
	res := lim.Reserve()
	if d := res.Delay(); d > 0 {
		res.Cancel()
		return max(d, time.Second)
	}
	return 0
}

var errNoRegistry = errors.New("no metrics registry")
