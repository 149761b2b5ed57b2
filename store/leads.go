package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// DuplicateWindow is how far back a lead with the same email and course makes
// a new one a duplicate.
const DuplicateWindow = 24 * time.Hour

// Lead statuses.
const (
	LeadQueued     = "queued"
	LeadProcessing = "processing"
	LeadCompleted  = "completed"
	LeadPartial    = "partial"
	LeadFailed     = "failed"
)

// NewLead is a lead as accepted by the intake, before it has an id.
type NewLead struct {
	ExternalID string
	FirstName  string
	LastName   string
	Email      string
	Phone      string
	Course     string
	Campaign   string
	Site       string
	Source     string
	Message    string
	UTM        map[string]string

	ConsentPrivacy     bool
	ConsentMarketing   bool
	ConsentTextVersion string
	ConsentAcceptedAt  time.Time // zero when the CMS did not say
	ClientIP           netip.Addr
	ClientUserAgent    string

	// SubmittedBy is the name of the API token that posted the lead.
	SubmittedBy string
}

// Response is a stored HTTP answer, replayed for a repeated Idempotency-Key.
type Response struct {
	Status int
	Body   []byte
}

// Idempotency ties a write to a client-chosen key. Render produces the answer
// stored with the key, inside the same transaction as the write, so the key
// and what it stands for commit together or not at all.
type Idempotency struct {
	Principal   string
	Key         string
	RequestHash []byte
	Render      func(LeadSubmission) (Response, error)
}

// LeadSubmission is the outcome of SubmitLead.
type LeadSubmission struct {
	LeadID    string
	Duplicate bool
	// Status is the lead's current status (queued for a new lead).
	Status string
	// Replay is the stored answer when the Idempotency-Key was seen before.
	Replay *Response
}

// SubmitLead stores a lead. A lead with the same email (case-insensitive)
// and course received within DuplicateWindow is not stored again: the
// existing id comes back with Duplicate set. Concurrent submissions share
// transactions (see leadbatch.go).
//
// A new lead has no outbox row: the lead itself, queued, is the durable
// record of its lead:process task. The caller enqueues the task right after,
// with the lead id as TaskID (outbox.Dispatcher.SendLead), writing an outbox row only if Redis refuses it,
// and the sweep re-sends the task of a lead still queued past
// CEPJOBS_SWEEP_AFTER whose task is not in Redis (a crash between commit and
// enqueue, a Redis that lost it).
func (s *Store) SubmitLead(ctx context.Context, l NewLead, now time.Time, idem *Idempotency) (LeadSubmission, error) {
	return s.leads.submit(&leadJob{ctx: ctx, lead: l, now: now, idem: idem})
}

// submitOne stores one submission in its own transaction: the path a batch
// falls back to when the server refused it.
func (s *Store) submitOne(ctx context.Context, l NewLead, now time.Time, idem *Idempotency) (LeadSubmission, error) {
	var res LeadSubmission
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		res = LeadSubmission{}
		// Both locks in one statement, in key order, as a batch takes them.
		keys := []int64{lockKey("lead", NormalizeEmail(l.Email), l.Course)}
		if idem != nil {
			keys = append(keys, lockKey("idem", idem.Principal, idem.Key))
		}
		slices.Sort(keys)
		if _, err := tx.Exec(ctx, `select pg_advisory_xact_lock(k) from unnest($1::int8[]) as k`, keys); err != nil {
			return err
		}
		if idem != nil {
			replay, err := readIdempotency(ctx, tx, idem)
			if err != nil {
				return err
			}
			if replay != nil {
				res.Replay = replay
				return nil
			}
		}
		if err := submitLead(ctx, tx, l, now, &res); err != nil {
			return err
		}
		if idem != nil {
			return saveIdempotency(ctx, tx, idem, res, now)
		}
		return nil
	})
	if err != nil {
		return LeadSubmission{}, fmt.Errorf("submit lead: %w", err)
	}
	return res, nil
}

func submitLead(ctx context.Context, tx pgx.Tx, l NewLead, now time.Time, res *LeadSubmission) error {
	// The caller holds the lock on the email and course, so two concurrent
	// posts of one form cannot both pass the duplicate check.
	norm := NormalizeEmail(l.Email)
	var existing, status string
	err := tx.QueryRow(ctx, `
		select id::text, status from cepjobs.leads
		where email_normalized = $1 and course = $2 and received_at > $3
		order by received_at desc limit 1`,
		norm, l.Course, now.Add(-DuplicateWindow)).Scan(&existing, &status)
	switch {
	case err == nil:
		res.LeadID, res.Duplicate, res.Status = existing, true, status
		return nil
	case err != pgx.ErrNoRows:
		return err
	}

	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	utm, err := json.Marshal(nonNil(l.UTM))
	if err != nil {
		return err
	}
	var ip *netip.Addr
	if l.ClientIP.IsValid() {
		ip = &l.ClientIP
	}
	var acceptedAt *time.Time
	if !l.ConsentAcceptedAt.IsZero() {
		acceptedAt = &l.ConsentAcceptedAt
	}
	_, err = tx.Exec(ctx, `
		insert into cepjobs.leads (
			id, external_id, first_name, last_name, email, email_normalized, phone,
			course, campaign, site, source, message, utm,
			consent_privacy, consent_marketing, consent_text_version, consent_accepted_at,
			client_ip, client_user_agent, received_at, submitted_by, status, status_changed_at)
		values ($1, nullif($2, ''), $3, nullif($4, ''), $5, $6, nullif($7, ''),
			$8, nullif($9, ''), nullif($10, ''), $11, nullif($12, ''), $13,
			$14, $15, $16, $17,
			$18, nullif($19, ''), $20, $21, 'queued', $20)`,
		id, l.ExternalID, l.FirstName, l.LastName, l.Email, norm, l.Phone,
		l.Course, l.Campaign, l.Site, l.Source, l.Message, utm,
		l.ConsentPrivacy, l.ConsentMarketing, l.ConsentTextVersion, acceptedAt,
		ip, l.ClientUserAgent, now, l.SubmittedBy)
	if err != nil {
		return err
	}
	res.LeadID, res.Status = id.String(), LeadQueued
	return nil
}

// LookupIdempotency returns the stored answer for a key seen before, nil for
// a new key, or ErrIdempotencyConflict when the key came with another
// request. It takes no lock: SubmitLead checks again under one.
func (s *Store) LookupIdempotency(ctx context.Context, idem *Idempotency) (*Response, error) {
	r, err := readIdempotency(ctx, s.pool, idem)
	if err != nil && err != ErrIdempotencyConflict {
		return nil, fmt.Errorf("lookup idempotency key: %w", err)
	}
	return r, err
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func readIdempotency(ctx context.Context, q querier, idem *Idempotency) (*Response, error) {
	var (
		hash []byte
		resp Response
	)
	err := q.QueryRow(ctx, `
		select request_hash, status_code, response_body from cepjobs.idempotency_keys
		where principal = $1 and key = $2`, idem.Principal, idem.Key).Scan(&hash, &resp.Status, &resp.Body)
	if err == pgx.ErrNoRows {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if string(hash) != string(idem.RequestHash) {
		return nil, ErrIdempotencyConflict
	}
	return &resp, nil
}

func saveIdempotency(ctx context.Context, tx pgx.Tx, idem *Idempotency, res LeadSubmission, now time.Time) error {
	resp, err := idem.Render(res)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `
		insert into cepjobs.idempotency_keys (principal, key, request_hash, status_code, response_body, created_at)
		values ($1, $2, $3, $4, $5, $6)`,
		idem.Principal, idem.Key, idem.RequestHash, resp.Status, resp.Body, now)
	return err
}

// NormalizeEmail is the form duplicates are detected on.
func NormalizeEmail(email string) string {
	return strings.ToLower(strings.TrimSpace(email))
}

// lockKey hashes parts into an advisory lock key. Collisions only serialise
// two unrelated submissions for a moment; they never merge them.
func lockKey(parts ...string) int64 {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return int64(binary.BigEndian.Uint64(h[:8]))
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// LeadStatus is what GET /v1/leads/{id} shows: the lead's progress, without
// its personal data.
type LeadStatus struct {
	ID         string
	Status     string
	Course     string
	Source     string
	ReceivedAt time.Time
	UpdatedAt  time.Time
	Deliveries []Delivery
}

// Delivery is the record of one channel of one lead.
type Delivery struct {
	Channel   string
	Status    string
	Attempts  int
	LastError string
	// Reason says why a channel was skipped or failed.
	Reason    string
	VendorRef string
	// Detail is the channel's own progress record (JSON).
	Detail json.RawMessage
	// AttemptStartedAt is set before each vendor call.
	AttemptStartedAt *time.Time
	UpdatedAt        time.Time
	DeliveredAt      *time.Time
}

// LeadStatus returns a lead's status and deliveries, or ErrNotFound.
func (s *Store) LeadStatus(ctx context.Context, id string) (LeadStatus, error) {
	var ls LeadStatus
	if _, err := uuid.Parse(id); err != nil {
		return ls, ErrNotFound
	}
	err := s.pool.QueryRow(ctx, `
		select id::text, status, course, source, received_at, status_changed_at
		from cepjobs.leads where id = $1`, id).
		Scan(&ls.ID, &ls.Status, &ls.Course, &ls.Source, &ls.ReceivedAt, &ls.UpdatedAt)
	if err != nil {
		return LeadStatus{}, fmt.Errorf("lead status: %w", mapErr(err))
	}
	ls.Deliveries, err = deliveries(ctx, s.pool, id)
	if err != nil {
		return LeadStatus{}, fmt.Errorf("lead status: %w", err)
	}
	return ls, nil
}
