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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

type ctxKey int

const keyState ctxKey = 0

// reqState is what the middleware learns about a request: its id, and the
// token authorize accepted (which the request log line names). It is put in
// the request's context once, by requestID, and filled in from there: every
// r.WithContext copies the whole http.Request.
type reqState struct {
	id    string
	token *Token
}

func stateFrom(ctx context.Context) *reqState {
	st, _ := ctx.Value(keyState).(*reqState)
	return st
}

// validRequestID says whether a caller's X-Request-Id is safe to echo and
// log: 1 to 64 of A-Z a-z 0-9 . _ - (a loop: a regular expression here cost
// ~2 % of the intake's CPU per request).
func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// requestID takes a sane X-Request-Id from the caller or makes one, and
// echoes it on the response.
func (s *Server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			var b [12]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), keyState, &reqState{id: id})))
	})
}

func requestIDFrom(ctx context.Context) string {
	if st := stateFrom(ctx); st != nil {
		return st.id
	}
	return ""
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
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
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
		var id, token string
		if st := stateFrom(ctx); st != nil {
			id = st.id
			if st.token != nil {
				token = st.token.Name
			}
		}
		s.log.LogAttrs(ctx, level, "request", slog.String("request_id", id), slog.String("route", route),
			slog.Int("status", sw.status), slog.Float64("duration_ms", float64(d.Microseconds())/1000), slog.String("token", token))
	})
}

func tokenFrom(ctx context.Context) *Token {
	if st := stateFrom(ctx); st != nil {
		return st.token
	}
	return nil
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
		st := stateFrom(r.Context())
		if st == nil { // a handler wired without requestID in front
			st = &reqState{}
			r = r.WithContext(context.WithValue(r.Context(), keyState, st))
		}
		st.token = tok
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
