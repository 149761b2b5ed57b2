package store

// Group commit for lead submissions. Each POST /v1/leads used to be its own
// transaction (lock, duplicate check, two inserts, commit): five round trips
// and one WAL flush per lead. Under load the intake now hands submissions to
// a few committer goroutines; each takes every submission waiting at that
// moment (up to maxLeadBatch) and stores them in one transaction with one
// statement per step. Nothing waits for a batch to fill: a lone submission
// is committed at once, and batches only form while a commit is running.
//
// Every lock is taken in one statement in key order, by every path, so two
// batches (or a batch and a single submission) never deadlock. A batch that
// fails on a database error is retried one submission at a time, so one
// lead's problem never fails another's.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/cepcomunicacion/cepjobs/internal/gather"
)

// maxLeadBatch bounds the submissions one transaction stores.
const maxLeadBatch = 64

// errStoreClosed answers submissions that arrive after Close.
var errStoreClosed = errors.New("store is closed")

type leadJob struct {
	ctx  context.Context
	lead NewLead
	now  time.Time
	idem *Idempotency

	res  LeadSubmission
	err  error
	done chan struct{}
}

func (j *leadJob) finish(res LeadSubmission, err error) {
	j.res, j.err = res, err
	close(j.done)
}

// leadBatcher runs the committers. Its channel is unbuffered: a submission
// is handed over only to a committer that takes it, so none is stranded at
// Close.
type leadBatcher struct {
	s          *Store
	committers int
	once       sync.Once
	jobs       chan *leadJob
	stop       chan struct{}
	stopOnce   sync.Once
	wg         sync.WaitGroup
}

func newLeadBatcher(s *Store, committers int) *leadBatcher {
	return &leadBatcher{s: s, committers: max(committers, 1), jobs: make(chan *leadJob), stop: make(chan struct{})}
}

func (b *leadBatcher) submit(j *leadJob) (LeadSubmission, error) {
	b.once.Do(func() {
		for range b.committers {
			b.wg.Go(b.run)
		}
	})
	j.done = make(chan struct{})
	select {
	case b.jobs <- j:
	case <-j.ctx.Done():
		return LeadSubmission{}, j.ctx.Err()
	case <-b.stop:
		return LeadSubmission{}, errStoreClosed
	}
	select {
	case <-j.done:
		return j.res, j.err
	case <-j.ctx.Done():
		// The batch may still commit it; a retry is then a duplicate (or an
		// Idempotency-Key replay), and its outbox row is relayed.
		return LeadSubmission{}, j.ctx.Err()
	}
}

func (b *leadBatcher) close() {
	b.stopOnce.Do(func() { close(b.stop) })
	b.wg.Wait()
}

func (b *leadBatcher) run() {
	batch := make([]*leadJob, 0, maxLeadBatch)
	for {
		var ok bool
		if batch, ok = gather.Next(b.jobs, b.stop, batch); !ok {
			return
		}
		b.commit(batch)
	}
}

func (b *leadBatcher) commit(batch []*leadJob) {
	live := make([]*leadJob, 0, len(batch))
	var deadline time.Time
	for _, j := range batch {
		if err := j.ctx.Err(); err != nil {
			j.finish(LeadSubmission{}, err)
			continue
		}
		live = append(live, j)
		if d, ok := j.ctx.Deadline(); ok && d.After(deadline) {
			deadline = d
		}
	}
	if len(live) == 0 {
		return
	}
	// The batch outlives any one caller giving up: it commits for all.
	if deadline.IsZero() {
		deadline = time.Now().Add(30 * time.Second)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	results, err := b.s.submitBatch(ctx, live)
	if err == nil {
		for i, j := range live {
			j.finish(results[i].res, results[i].err)
		}
		return
	}
	var pgErr *pgconn.PgError
	if len(live) > 1 && errors.As(err, &pgErr) {
		// The server refused something in the batch: find out whose it is.
		for _, j := range live {
			res, err := b.s.submitOne(j.ctx, j.lead, j.now, j.idem)
			j.finish(res, err)
		}
		return
	}
	for _, j := range live {
		j.finish(LeadSubmission{}, fmt.Errorf("submit lead: %w", err))
	}
}

type jobResult struct {
	res LeadSubmission
	err error
}

type dupKey struct{ email, course string }

type existingLead struct {
	id, status string
	receivedAt time.Time
}

type idemKey struct{ principal, key string }

type storedIdem struct {
	hash []byte
	resp Response
}

// submitBatch stores jobs in one transaction. An error fails them all; a
// per-job error (an Idempotency-Key conflict) is in that job's result.
//
// The transaction is two round trips: begin, the locks and the reads go in
// one pipelined batch, the inserts and the commit in another. Each statement
// still runs after the one before it (the reads see what the locks protect),
// but neither side waits on the network in between.
func (s *Store) submitBatch(ctx context.Context, jobs []*leadJob) ([]jobResult, error) {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Release()
	results, err := submitBatchOn(ctx, c.Conn(), jobs)
	if err != nil && !c.Conn().IsClosed() {
		// Whatever the batch left open ends here, so the connection goes
		// back to the pool for reuse (pgxpool would destroy one still in a
		// transaction); one that cannot even roll back is closed.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, rerr := c.Conn().Exec(rctx, "rollback"); rerr != nil {
			_ = c.Conn().Close(rctx)
		}
	}
	return results, err
}

func submitBatchOn(ctx context.Context, conn *pgx.Conn, jobs []*leadJob) ([]jobResult, error) {
	results := make([]jobResult, len(jobs))

	// Every lock of the batch, in key order; the idempotency keys seen
	// before; the leads already received within the duplicate window.
	keys := make([]int64, 0, 2*len(jobs))
	norms := make([]string, len(jobs))
	var principals, idemKeys []string
	for i, j := range jobs {
		norms[i] = NormalizeEmail(j.lead.Email)
		keys = append(keys, lockKey("lead", norms[i], j.lead.Course))
		if j.idem != nil {
			keys = append(keys, lockKey("idem", j.idem.Principal, j.idem.Key))
			principals, idemKeys = append(principals, j.idem.Principal), append(idemKeys, j.idem.Key)
		}
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	var (
		emails, courses []string
		oldest          = jobs[0].now
		seen            = map[dupKey]bool{}
	)
	for i, j := range jobs {
		k := dupKey{norms[i], j.lead.Course}
		if !seen[k] {
			seen[k] = true
			emails, courses = append(emails, k.email), append(courses, k.course)
		}
		if j.now.Before(oldest) {
			oldest = j.now
		}
	}
	b := &pgx.Batch{}
	b.Queue("begin")
	b.Queue(`select pg_advisory_xact_lock(k) from unnest($1::int8[]) as k`, keys)
	if len(idemKeys) > 0 {
		b.Queue(`
			select k.principal, k.key, k.request_hash, k.status_code, k.response_body
			from cepjobs.idempotency_keys k
			join unnest($1::text[], $2::text[]) as u(p, k) on k.principal = u.p and k.key = u.k`, principals, idemKeys)
	}
	// LATERAL: one index probe per email and course, never a scan of the
	// window.
	b.Queue(`
		select u.e, u.c, l.id::text, l.status, l.received_at
		from unnest($1::text[], $2::text[]) as u(e, c)
		cross join lateral (
			select id, status, received_at from cepjobs.leads
			where email_normalized = u.e and course = u.c and received_at > $3
			order by received_at desc limit 1) as l`,
		emails, courses, oldest.Add(-DuplicateWindow))
	idems := map[idemKey]storedIdem{}
	existing := make(map[dupKey]existingLead, len(emails))
	if err := func() error {
		br := conn.SendBatch(ctx, b)
		defer br.Close()
		for range 2 { // begin, locks
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		if len(idemKeys) > 0 {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			for rows.Next() {
				var ik idemKey
				var st storedIdem
				if err := rows.Scan(&ik.principal, &ik.key, &st.hash, &st.resp.Status, &st.resp.Body); err != nil {
					rows.Close()
					return err
				}
				idems[ik] = st
			}
			if err := rows.Err(); err != nil {
				return err
			}
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		for rows.Next() {
			var k dupKey
			var e existingLead
			if err := rows.Scan(&k.email, &k.course, &e.id, &e.status, &e.receivedAt); err != nil {
				rows.Close()
				return err
			}
			existing[k] = e
		}
		if err := rows.Err(); err != nil {
			return err
		}
		return br.Close()
	}(); err != nil {
		return nil, err
	}

	// Decide each job, in arrival order.
	var ins leadInserts
	answered := map[idemKey]int{} // idempotency key → job index answered in this batch
	for i, j := range jobs {
		if j.idem != nil {
			ik := idemKey{j.idem.Principal, j.idem.Key}
			if st, ok := idems[ik]; ok {
				if string(st.hash) != string(j.idem.RequestHash) {
					results[i].err = fmt.Errorf("submit lead: %w", ErrIdempotencyConflict)
				} else {
					resp := st.resp
					results[i].res.Replay = &resp
				}
				continue
			}
			if first, ok := answered[ik]; ok {
				// The same key twice in one batch: the second is a retry
				// of the first and gets its answer.
				if string(jobs[first].idem.RequestHash) != string(j.idem.RequestHash) {
					results[i].err = fmt.Errorf("submit lead: %w", ErrIdempotencyConflict)
					continue
				}
				resp, err := jobs[first].idem.Render(results[first].res)
				if err != nil {
					return nil, err
				}
				results[i].res.Replay = &resp
				continue
			}
			answered[ik] = i
		}
		k := dupKey{norms[i], j.lead.Course}
		if e, ok := existing[k]; ok && e.receivedAt.After(j.now.Add(-DuplicateWindow)) {
			results[i].res = LeadSubmission{LeadID: e.id, Duplicate: true, Status: e.status}
			continue
		}
		id, err := uuid.NewV7()
		if err != nil {
			return nil, err
		}
		if err := ins.add(id.String(), norms[i], j.lead, j.now); err != nil {
			return nil, err
		}
		results[i].res = LeadSubmission{LeadID: id.String(), Status: LeadQueued}
		// A later job of this batch with the same email and course is a
		// duplicate of this one.
		existing[k] = existingLead{id: id.String(), status: LeadQueued, receivedAt: j.now}
	}

	// One insert per table, then commit.
	b = &pgx.Batch{}
	if len(ins.id) > 0 {
		ins.queue(b)
	}
	if err := queueIdempotencies(b, jobs, results); err != nil {
		return nil, err
	}
	b.Queue("commit")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	return results, nil
}

// queueIdempotencies queues the insert of the answers to remember under the
// jobs' Idempotency-Keys.
func queueIdempotencies(b *pgx.Batch, jobs []*leadJob, results []jobResult) error {
	var (
		principals, keys []string
		hashes, bodies   [][]byte
		codes            []int32
		created          []time.Time
	)
	saved := map[idemKey]bool{}
	for i, j := range jobs {
		r := results[i]
		if j.idem == nil || r.err != nil || r.res.Replay != nil {
			continue
		}
		ik := idemKey{j.idem.Principal, j.idem.Key}
		if saved[ik] {
			continue
		}
		saved[ik] = true
		resp, err := j.idem.Render(r.res)
		if err != nil {
			return err
		}
		principals, keys = append(principals, ik.principal), append(keys, ik.key)
		hashes, bodies = append(hashes, j.idem.RequestHash), append(bodies, resp.Body)
		codes, created = append(codes, int32(resp.Status)), append(created, j.now)
	}
	if len(keys) == 0 {
		return nil
	}
	b.Queue(`
		insert into cepjobs.idempotency_keys (principal, key, request_hash, status_code, response_body, created_at)
		select * from unnest($1::text[], $2::text[], $3::bytea[], $4::int4[], $5::bytea[], $6::timestamptz[])`,
		principals, keys, hashes, codes, bodies, created)
	return nil
}

// leadInserts are the columns of the leads a batch stores.
type leadInserts struct {
	id, externalID, firstName, lastName, email, emailNorm, phone []string
	course, campaign, site, source, message, utm                 []string
	consentPrivacy, consentMarketing                             []bool
	consentText                                                  []string
	consentAt                                                    []pgtype.Timestamptz
	clientIP, clientUA                                           []string
	receivedAt                                                   []time.Time
	submittedBy                                                  []string
}

func (c *leadInserts) add(id, norm string, l NewLead, now time.Time) error {
	utm, err := json.Marshal(nonNil(l.UTM))
	if err != nil {
		return err
	}
	ip := ""
	if l.ClientIP.IsValid() {
		ip = l.ClientIP.String()
	}
	c.id = append(c.id, id)
	c.externalID = append(c.externalID, l.ExternalID)
	c.firstName = append(c.firstName, l.FirstName)
	c.lastName = append(c.lastName, l.LastName)
	c.email = append(c.email, l.Email)
	c.emailNorm = append(c.emailNorm, norm)
	c.phone = append(c.phone, l.Phone)
	c.course = append(c.course, l.Course)
	c.campaign = append(c.campaign, l.Campaign)
	c.site = append(c.site, l.Site)
	c.source = append(c.source, l.Source)
	c.message = append(c.message, l.Message)
	c.utm = append(c.utm, string(utm))
	c.consentPrivacy = append(c.consentPrivacy, l.ConsentPrivacy)
	c.consentMarketing = append(c.consentMarketing, l.ConsentMarketing)
	c.consentText = append(c.consentText, l.ConsentTextVersion)
	c.consentAt = append(c.consentAt, pgtype.Timestamptz{Time: l.ConsentAcceptedAt, Valid: !l.ConsentAcceptedAt.IsZero()})
	c.clientIP = append(c.clientIP, ip)
	c.clientUA = append(c.clientUA, l.ClientUserAgent)
	c.receivedAt = append(c.receivedAt, now)
	c.submittedBy = append(c.submittedBy, l.SubmittedBy)
	return nil
}

func (c *leadInserts) queue(b *pgx.Batch) {
	b.Queue(`
		insert into cepjobs.leads (
			id, external_id, first_name, last_name, email, email_normalized, phone,
			course, campaign, site, source, message, utm,
			consent_privacy, consent_marketing, consent_text_version, consent_accepted_at,
			client_ip, client_user_agent, received_at, submitted_by, status, status_changed_at)
		select u.id, nullif(u.external_id, ''), u.first_name, nullif(u.last_name, ''), u.email, u.email_normalized, nullif(u.phone, ''),
			u.course, nullif(u.campaign, ''), nullif(u.site, ''), u.source, nullif(u.message, ''), u.utm::jsonb,
			u.consent_privacy, u.consent_marketing, u.consent_text_version, u.consent_accepted_at,
			nullif(u.client_ip, '')::inet, nullif(u.client_user_agent, ''), u.received_at, u.submitted_by, 'queued', u.received_at
		from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
			$8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
			$14::bool[], $15::bool[], $16::text[], $17::timestamptz[],
			$18::text[], $19::text[], $20::timestamptz[], $21::text[])
			as u(id, external_id, first_name, last_name, email, email_normalized, phone,
			course, campaign, site, source, message, utm,
			consent_privacy, consent_marketing, consent_text_version, consent_accepted_at,
			client_ip, client_user_agent, received_at, submitted_by)`,
		c.id, c.externalID, c.firstName, c.lastName, c.email, c.emailNorm, c.phone,
		c.course, c.campaign, c.site, c.source, c.message, c.utm,
		c.consentPrivacy, c.consentMarketing, c.consentText, c.consentAt,
		c.clientIP, c.clientUA, c.receivedAt, c.submittedBy)
}
