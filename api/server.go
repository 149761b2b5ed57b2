package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cepcomunicacion/cepjobs/store"
)

// leadStore is what the API needs of the database.
type leadStore interface {
	SubmitLead(ctx context.Context, l store.NewLead, now time.Time, idem *store.Idempotency) (store.LeadSubmission, error)
	LookupIdempotency(ctx context.Context, idem *store.Idempotency) (*store.Response, error)
	LeadStatus(ctx context.Context, id string) (store.LeadStatus, error)
	QueueTask(ctx context.Context, taskType string, payload []byte, now time.Time) (string, error)
	contentStore
	Ping(ctx context.Context) error
}

// dispatcher sends a freshly written outbox row to Redis.
type dispatcher interface {
	// Now sends a freshly written outbox row's task.
	Now(ctx context.Context, id, taskType string, payload []byte)
	// SendLead sends a new lead's lead:process task (it has no outbox row).
	SendLead(ctx context.Context, leadID string)
}

// pinger is anything /readyz checks.
type pinger interface {
	Ping(ctx context.Context) error
}

// Deps is what NewServer wires together.
type Deps struct {
	Config   Config
	Store    leadStore
	Dispatch dispatcher
	// Captcha is nil when verification is off.
	Captcha captchaVerifier
	// Redis is pinged by /readyz.
	Redis pinger
	// RedisConnOpt is where the dashboard reads the queues.
	RedisConnOpt asynq.RedisConnOpt
	// Backups lists stored backups of BackupDatabase; nil when object
	// storage is not configured.
	Backups        backupLister
	BackupDatabase string
	// CampaignMailOff says why campaigns cannot send (no Mailchimp
	// Transactional), so launches are refused with 503; "" when they can.
	CampaignMailOff string
	Logger          *slog.Logger
	Registry        *prometheus.Registry
	Now             func() time.Time
}

// Server is the intake's HTTP handler.
type Server struct {
	cfg      Config
	store    leadStore
	dispatch dispatcher
	captcha  captchaVerifier
	redis    pinger
	log      *slog.Logger
	now      func() time.Time
	metrics  *httpMetrics
	limiter  *limiters
	handler  http.Handler
	closers  []func() error
	draining atomic.Bool
}

// NewServer builds the handler with every route mounted.
func NewServer(d Deps) (*Server, error) {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		return nil, fmt.Errorf("new server: nil logger")
	}
	s := &Server{
		cfg: d.Config, store: d.Store, dispatch: d.Dispatch, captcha: d.Captcha, redis: d.Redis,
		log: d.Logger, now: d.Now,
		metrics: newHTTPMetrics(d.Registry),
		limiter: newLimiters(d.Config.RateLimit, d.Config.RateBurst),
	}
	mux := http.NewServeMux()
	s.routes(mux, d)
	s.handler = s.recoverer(s.requestID(notFound(mux)))
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Drain makes /readyz fail so load balancers stop sending traffic, ahead of
// http.Server.Shutdown.
func (s *Server) Drain() { s.draining.Store(true) }

// Close releases what the routes hold (the dashboard's Redis connection).
func (s *Server) Close() error {
	var first error
	for _, c := range s.closers {
		if err := c(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// fail writes err as problem+json. Server-side errors are logged here, once;
// client errors are not (they are in the request log line as a status).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	p := toProblem(err)
	if p.Status >= 500 {
		s.log.Error("request failed", "request_id", requestIDFrom(r.Context()), "route", r.Pattern, "err", err)
	}
	writeProblem(w, r, p)
}
