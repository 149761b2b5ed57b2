package handlers

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynq"

	"github.com/cepcomunicacion/cepjobs/internal/meta"
	"github.com/cepcomunicacion/cepjobs/internal/vendor"
	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// leadAdsReader is the part of *meta.LeadAdsClient the leadgen handler uses.
type leadAdsReader interface {
	Lead(ctx context.Context, leadgenID string) (meta.LeadAd, error)
}

// leadgenStore is what the leadgen handler needs of the database: the
// same SubmitLead POST /v1/leads uses.
type leadgenStore interface {
	SubmitLead(ctx context.Context, l store.NewLead, now time.Time, idem *store.Idempotency) (store.LeadSubmission, error)
	CampaignForMetaCampaign(ctx context.Context, metaCampaignID string) (string, error)
}

// leadDispatcher sends a new lead's lead:process task to Redis (the lead,
// queued, is its durable record; see outbox.Dispatcher.SendLead).
type leadDispatcher interface {
	SendLead(ctx context.Context, leadID string)
}

// MetaLeadgenDeps wires the meta:leadgen handler.
type MetaLeadgenDeps struct {
	Client   leadAdsReader
	Store    leadgenStore
	Dispatch leadDispatcher
	// Forms maps lead form ids to course slugs (META_LEAD_FORMS).
	Forms map[string]string
	// DefaultCountry is the calling code for phone numbers without one.
	DefaultCountry string
	// MarketingCheckbox is the checkbox_key asking for marketing consent.
	MarketingCheckbox string
	Logger            *slog.Logger
	Now               func() time.Time
}

// MetaLeadgen handles meta:leadgen: it reads the lead the webhook announced
// from the Graph API, maps the form's answers to a lead and stores it
// through SubmitLead exactly as POST /v1/leads does (a duplicate within the
// window adds nothing), then dispatches its lead:process.
type MetaLeadgen struct{ d MetaLeadgenDeps }

// NewMetaLeadgen returns the handler.
func NewMetaLeadgen(d MetaLeadgenDeps) *MetaLeadgen {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	return &MetaLeadgen{d: d}
}

// MetaLeadSubmitter is the submitted_by of leads from Meta lead forms.
const MetaLeadSubmitter = "meta-lead-ads"

// metaIdemPrincipal owns the idempotency keys of Meta leads. The colon
// keeps it apart from every API token name (which cannot hold one).
const metaIdemPrincipal = "meta:lead-ads"

// ProcessTask implements asynq.Handler.
func (h *MetaLeadgen) ProcessTask(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.MetaLeadgen](t)
	if err != nil {
		return err
	}
	ad, err := h.d.Client.Lead(ctx, p.LeadgenID)
	if err != nil {
		if vendor.IsPermanent(err) {
			return fmt.Errorf("meta lead %s: %w: %w", p.LeadgenID, err, asynq.SkipRetry)
		}
		return fmt.Errorf("meta lead %s: %w", p.LeadgenID, err)
	}
	if ad.FormID == "" {
		ad.FormID = p.FormID
	}
	lead, err := h.mapLead(p.LeadgenID, ad)
	if err != nil {
		return fmt.Errorf("meta lead %s (form %s): %w: %w", p.LeadgenID, ad.FormID, err, asynq.SkipRetry)
	}
	if ad.CampaignID != "" {
		switch id, err := h.d.Store.CampaignForMetaCampaign(ctx, ad.CampaignID); {
		case err == nil:
			lead.Campaign = id
		case !errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("meta lead %s: %w", p.LeadgenID, err)
		}
	}

	// The leadgen id is the idempotency key: a second run of this task
	// (a retry after the commit, a redelivery past the outbox) replays
	// the first outcome instead of storing the lead again.
	key := sha256.Sum256([]byte(p.Key()))
	idem := &store.Idempotency{Principal: metaIdemPrincipal, Key: p.Key(), RequestHash: key[:], Render: renderMetaLead}
	res, err := h.d.Store.SubmitLead(ctx, lead, h.d.Now(), idem)
	if err != nil {
		return fmt.Errorf("meta lead %s: %w", p.LeadgenID, err)
	}
	switch {
	case res.Replay != nil:
		var r metaLeadResult
		_ = json.Unmarshal(res.Replay.Body, &r)
		h.d.Logger.Info("meta lead already stored", "leadgen_id", p.LeadgenID, "lead_id", r.LeadID)
	case res.Duplicate:
		h.d.Logger.Info("meta lead is a duplicate", "leadgen_id", p.LeadgenID, "lead_id", res.LeadID, "form_id", ad.FormID)
	default:
		h.d.Dispatch.SendLead(ctx, res.LeadID)
		h.d.Logger.Info("meta lead stored", "leadgen_id", p.LeadgenID, "lead_id", res.LeadID, "form_id", ad.FormID,
			"course", lead.Course, "marketing_consent", lead.ConsentMarketing)
	}
	if rw := t.ResultWriter(); rw != nil {
		if b, err := json.Marshal(metaLeadResult{LeadID: res.LeadID, Duplicate: res.Duplicate}); err == nil && res.Replay == nil {
			_, _ = rw.Write(b)
		}
	}
	return nil
}

// metaLeadResult is the answer stored with the idempotency key and written
// as the task's result: ids only.
type metaLeadResult struct {
	LeadID    string `json:"lead_id"`
	Duplicate bool   `json:"duplicate"`
}

func renderMetaLead(res store.LeadSubmission) (store.Response, error) {
	b, err := json.Marshal(metaLeadResult{LeadID: res.LeadID, Duplicate: res.Duplicate})
	status := http.StatusAccepted
	if res.Duplicate {
		status = http.StatusOK
	}
	return store.Response{Status: status, Body: b}, err
}

// Field names the mapping reads (field_data names are lower case; Meta's
// standard questions have fixed names, custom ones the key set in the
// form).
var (
	emailFields     = []string{"email", "work_email"}
	fullNameFields  = []string{"full_name"}
	firstNameFields = []string{"first_name"}
	lastNameFields  = []string{"last_name"}
	phoneFields     = []string{"phone_number", "phone", "work_phone_number"}
	courseFields    = []string{"course", "curso"}
	campusFields    = []string{"campus", "sede"}
)

// mapLead turns a form's answers into the lead SubmitLead stores. Its
// errors say which question is missing or unusable, never what was
// answered.
func (h *MetaLeadgen) mapLead(leadgenID string, ad meta.LeadAd) (store.NewLead, error) {
	answers := map[string]string{}
	var order []string
	for _, f := range ad.Fields {
		name := strings.ToLower(strings.TrimSpace(f.Name))
		if _, seen := answers[name]; seen || name == "" {
			continue
		}
		answers[name] = strings.TrimSpace(strings.Join(f.Values, ", "))
		order = append(order, name)
	}
	used := map[string]bool{}
	first := func(names []string) string {
		for _, n := range names {
			if v := answers[n]; v != "" {
				used[n] = true
				return v
			}
		}
		return ""
	}

	l := store.NewLead{
		ExternalID: "meta:" + leadgenID,
		Source:     SourceMetaLeadAd,
		// Meta's lead forms cannot be submitted without accepting the
		// advertiser's privacy policy.
		ConsentPrivacy:     true,
		ConsentMarketing:   ad.Checkboxes[h.d.MarketingCheckbox],
		ConsentTextVersion: "meta-form:" + ad.FormID,
		ConsentAcceptedAt:  ad.CreatedTime,
		SubmittedBy:        MetaLeadSubmitter,
		UTM:                map[string]string{"source": "facebook", "medium": "lead-ad"},
	}
	if ad.CampaignID != "" {
		l.UTM["campaign"] = ad.CampaignID
	}
	if ad.AdID != "" {
		l.UTM["content"] = ad.AdID
	}

	email := first(emailFields)
	if email == "" {
		return l, errors.New("the form has no email answer")
	}
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email || !strings.Contains(email[strings.LastIndex(email, "@")+1:], ".") || len(email) > 254 {
		return l, errors.New("the email answer is not an email address")
	}
	l.Email = email

	l.Course = h.d.Forms[ad.FormID]
	if l.Course == "" {
		answer := first(courseFields)
		if answer == "" {
			return l, errors.New("no course: the form is not in META_LEAD_FORMS and has no course question")
		}
		if l.Course = metaSlug(answer); l.Course == "" {
			return l, errors.New("the course answer does not make a course slug")
		}
	}
	if campus := first(campusFields); campus != "" {
		// A campus that does not make a slug is left out: the lead is
		// worth more than its campus.
		l.Site = metaSlug(campus)
		if l.Site == "" {
			h.d.Logger.Warn("meta lead campus answer left out: not a slug", "leadgen_id", leadgenID, "form_id", ad.FormID)
		}
	}

	l.FirstName, l.LastName = first(firstNameFields), first(lastNameFields)
	if l.FirstName == "" && l.LastName == "" {
		if full := strings.Fields(first(fullNameFields)); len(full) > 0 {
			l.FirstName, l.LastName = full[0], strings.Join(full[1:], " ")
		}
	}
	l.FirstName, l.LastName = clipRunes(l.FirstName, 100), clipRunes(l.LastName, 100)

	if raw := first(phoneFields); raw != "" {
		if l.Phone = e164Phone(raw, h.d.DefaultCountry); l.Phone == "" {
			h.d.Logger.Warn("meta lead phone answer left out: not a phone number", "leadgen_id", leadgenID, "form_id", ad.FormID)
		}
	}

	// Other answers go to the message, for sales to read.
	var msg []string
	for _, name := range order {
		if !used[name] && !isKnownField(name) && answers[name] != "" {
			msg = append(msg, name+": "+answers[name])
		}
	}
	l.Message = clipRunes(strings.Join(msg, "\n"), 5000)
	return l, nil
}

func isKnownField(name string) bool {
	for _, group := range [][]string{emailFields, fullNameFields, firstNameFields, lastNameFields, phoneFields, courseFields, campusFields} {
		for _, n := range group {
			if n == name {
				return true
			}
		}
	}
	return false
}

var (
	e164Pattern  = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	phoneJunk    = strings.NewReplacer(" ", "", "-", "", ".", "", "(", "", ")", "", "/", "", "\u00a0", "")
	slugPattern  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,127}$`)
	slugReplacer = strings.NewReplacer("á", "a", "à", "a", "ä", "a", "â", "a", "é", "e", "è", "e", "ë", "e", "ê", "e",
		"í", "i", "ì", "i", "ï", "i", "î", "i", "ó", "o", "ò", "o", "ö", "o", "ô", "o", "ú", "u", "ù", "u", "ü", "u", "û", "u",
		"ñ", "n", "ç", "c", "·", "", "'", "", "’", "")
)

// e164Phone returns a phone number in E.164 form (+34600111222), or "" when raw
// cannot be one. A number with + or 00 keeps its own country code; any
// other is taken as national and gets defaultCountry (digits, no +).
func e164Phone(raw, defaultCountry string) string {
	s := phoneJunk.Replace(strings.TrimSpace(raw))
	switch {
	case strings.HasPrefix(s, "+"):
	case strings.HasPrefix(s, "00"):
		s = "+" + s[2:]
	case defaultCountry != "":
		s = "+" + defaultCountry + s
	default:
		return ""
	}
	if !e164Pattern.MatchString(s) {
		return ""
	}
	return s
}

// metaSlug turns an answer such as "Técnico en Marketing Digital" into
// "tecnico-en-marketing-digital"; "" when nothing usable is left.
func metaSlug(s string) string {
	s = slugReplacer.Replace(strings.ToLower(strings.TrimSpace(s)))
	var b strings.Builder
	dash := false
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_':
			b.WriteRune(r)
			dash = false
		case !dash && b.Len() > 0:
			b.WriteByte('-')
			dash = true
		}
	}
	out := strings.TrimRight(b.String(), "-")
	if !slugPattern.MatchString(out) {
		return ""
	}
	return out
}

func clipRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

// insightsReader is the part of *meta.AdsClient the sync handler uses.
type insightsReader interface {
	Insights(ctx context.Context, accountID string, from, to time.Time) ([]meta.Insight, error)
}

// insightsStore is where the sync handler writes.
type insightsStore interface {
	UpsertMetaInsights(ctx context.Context, rows []store.MetaInsight, now time.Time) (int64, error)
}

// MetaInsightsDeps wires the campaign:sync-meta handler.
type MetaInsightsDeps struct {
	Client insightsReader
	Store  insightsStore
	// AccountID is the ad account (act_…).
	AccountID string
	// Days is how many days, ending with the task's day, are read again.
	Days   int
	Logger *slog.Logger
	Now    func() time.Time
}

// MetaInsights handles campaign:sync-meta: it reads the campaigns' spend,
// impressions, clicks and leads of the last Days days up to the task's day
// and upserts them, so a re-run (or Meta restating a day) overwrites
// rather than adds.
type MetaInsights struct{ d MetaInsightsDeps }

// NewMetaInsights returns the handler.
func NewMetaInsights(d MetaInsightsDeps) *MetaInsights {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Days < 1 {
		d.Days = 1
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	return &MetaInsights{d: d}
}

// MetaInsightsResult is the task's result, shown in the dashboard.
type MetaInsightsResult struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Rows    int    `json:"rows"`
	Changed int64  `json:"changed"`
}

// ProcessTask implements asynq.Handler.
func (h *MetaInsights) ProcessTask(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.Decode[tasks.CampaignSyncMeta](t)
	if err != nil {
		return err
	}
	to, _ := time.Parse(time.DateOnly, p.Day) // Decode checked it
	from := to.AddDate(0, 0, -(h.d.Days - 1))
	got, err := h.d.Client.Insights(ctx, h.d.AccountID, from, to)
	if err != nil {
		if vendor.IsPermanent(err) {
			return fmt.Errorf("sync meta insights %s: %w: %w", p.Day, err, asynq.SkipRetry)
		}
		return fmt.Errorf("sync meta insights %s: %w", p.Day, err)
	}
	rows := make([]store.MetaInsight, len(got))
	for i, in := range got {
		rows[i] = store.MetaInsight{
			MetaCampaignID: in.CampaignID, Day: in.Day, CampaignName: in.CampaignName,
			Spend: in.Spend, Currency: in.Currency, Impressions: in.Impressions, Clicks: in.Clicks, Leads: in.Leads,
		}
	}
	changed, err := h.d.Store.UpsertMetaInsights(ctx, rows, h.d.Now())
	if err != nil {
		return fmt.Errorf("sync meta insights %s: %w", p.Day, err)
	}
	res := MetaInsightsResult{From: from.Format(time.DateOnly), To: p.Day, Rows: len(rows), Changed: changed}
	h.d.Logger.Info("meta insights synced", "from", res.From, "to", res.To, "rows", res.Rows, "changed", res.Changed)
	if rw := t.ResultWriter(); rw != nil {
		if b, err := json.Marshal(res); err == nil {
			_, _ = rw.Write(b)
		}
	}
	return nil
}

// MetaInsightsOff completes campaign:sync-meta without doing anything, for
// a worker without Meta Ads credentials: the scheduler fires the task
// whatever the workers' configuration, and a task with no handler would be
// retried and archived every day.
func MetaInsightsOff(log *slog.Logger) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		log.Warn("meta insights off: task skipped; set META_AD_ACCOUNT_ID and META_ADS_ACCESS_TOKEN")
		return nil
	})
}
