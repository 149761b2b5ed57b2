package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cepcomunicacion/cepjobs/internal/hcaptcha"
	"github.com/cepcomunicacion/cepjobs/store"
)

// Problem is an RFC 9457 problem details body.
type Problem struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail,omitempty"`
	Instance  string       `json:"instance,omitempty"`
	RequestID string       `json:"request_id,omitempty"`
	Errors    []FieldError `json:"errors,omitempty"`

	retryAfter time.Duration
	header     http.Header
}

// FieldError names one bad field of a request body, as a JSON path
// ("consent.privacy").
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (p *Problem) Error() string { return fmt.Sprintf("%d %s: %s", p.Status, p.Title, p.Detail) }

func problem(status int, detail string) *Problem {
	return &Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail}
}

func validationProblem(errs []FieldError) *Problem {
	p := problem(http.StatusUnprocessableEntity, "the request body has invalid fields; see errors")
	p.Type = "https://cepjobs.dev/problems/validation"
	if len(errs) > maxFieldErrors {
		// A body of a thousand unknown keys gets a readable answer, not a
		// larger one.
		errs = append(errs[:maxFieldErrors-1:maxFieldErrors-1],
			FieldError{Field: errs[maxFieldErrors-1].Field, Message: fmt.Sprintf("and %d more problems in other fields", len(errs)-maxFieldErrors+1)})
	}
	p.Errors = errs
	return p
}

// maxFieldErrors bounds the field errors of one answer.
const maxFieldErrors = 50

// toProblem is the one place an error becomes an HTTP status.
func toProblem(err error) *Problem {
	var p *Problem
	switch {
	case errors.As(err, &p):
		return p
	case errors.Is(err, store.ErrNotFound):
		return problem(http.StatusNotFound, "no such resource")
	case errors.Is(err, store.ErrIdempotencyConflict):
		p := problem(http.StatusConflict, "this Idempotency-Key was used with a different request; use a new key for a new request")
		p.Type = "https://cepjobs.dev/problems/idempotency-conflict"
		return p
	case malformedValue(err):
		// A value PostgreSQL cannot read as its column's type: from the
		// request (an id that uuid.Parse takes but PostgreSQL does not, such
		// as urn:uuid:…), so the request's fault, and retrying is useless.
		p := problem(http.StatusBadRequest, "a value in the request is malformed: ids are UUIDs such as 01a21f83-f54d-7489-8fae-08ea6ef64faa")
		p.Type = "https://cepjobs.dev/problems/malformed-value"
		return p
	case errors.Is(err, hcaptcha.ErrRejected):
		return validationProblem([]FieldError{{Field: "captcha_token", Message: "captcha verification failed"}})
	case errors.Is(err, hcaptcha.ErrUnavailable):
		p := problem(http.StatusServiceUnavailable, "captcha verification is unavailable right now; nothing was stored, retry later")
		p.retryAfter = 5 * time.Second
		return p
	case store.IsUnavailable(err):
		// PostgreSQL down or restarting: nothing was stored (a lead is
		// written whole or not at all), and a retry will do.
		p := problem(http.StatusServiceUnavailable, "the database is unavailable right now; nothing was stored, retry (with the same Idempotency-Key)")
		p.retryAfter = 2 * time.Second
		return p
	case errors.Is(err, errShuttingDown):
		p := problem(http.StatusServiceUnavailable, "the server is shutting down; retry")
		p.retryAfter = time.Second
		return p
	default:
		p := problem(http.StatusInternalServerError, "internal error; nothing was lost if the answer was not 2xx, retry with the same Idempotency-Key")
		return p
	}
}

var errShuttingDown = errors.New("shutting down")

// malformedValue reports PostgreSQL's invalid_text_representation (22P02).
func malformedValue(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "22P02"
}

func writeProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	p.Instance = r.URL.Path
	p.RequestID = requestIDFrom(r.Context())
	for k, vs := range p.header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if p.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((p.retryAfter+time.Second-1)/time.Second)))
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}
