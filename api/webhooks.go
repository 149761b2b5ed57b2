package api

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/cepcomunicacion/cepjobs/store"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

// MetaWebhookConfig is the Meta Webhooks endpoint's part of the
// configuration. Without a verify token Meta cannot subscribe the endpoint
// (403); without the app secret no notification is accepted (401): an
// unsigned notification is never trusted.
type MetaWebhookConfig struct {
	// VerifyToken is the string typed into the Verify Token field of the
	// app's Webhooks settings; Meta sends it back when subscribing.
	VerifyToken string `env:"META_VERIFY_TOKEN" secret:"true"`
	// AppSecret is the Meta app's secret (App settings → Basic): Meta signs
	// each notification body with it (X-Hub-Signature-256).
	AppSecret string `env:"META_APP_SECRET" secret:"true"`
}

// Validate reports what is wrong with c.
func (c MetaWebhookConfig) Validate() error {
	var errs []error
	if c.VerifyToken != "" && (len(c.VerifyToken) < 16 || strings.ContainsAny(c.VerifyToken, " \t\r\n")) {
		errs = append(errs, errors.New("META_VERIFY_TOKEN: use at least 16 characters without spaces (try: openssl rand -hex 24), and type the same in the app's Webhooks settings"))
	}
	if c.AppSecret != "" && (len(c.AppSecret) < 16 || strings.ContainsAny(c.AppSecret, " \t\r\n")) {
		errs = append(errs, errors.New("META_APP_SECRET: want the app secret from the app's Basic settings (32 hex characters)"))
	}
	return errors.Join(errs...)
}

// MaxWebhookBytes bounds a webhook body. Meta batches changes, so it is
// larger than MaxBodyBytes.
const MaxWebhookBytes = 1 << 20

// webhookStore queues the tasks a webhook brings, all in one transaction.
type webhookStore interface {
	QueueTasks(ctx context.Context, ts []store.QueuedTask, now time.Time) ([]string, error)
}

// mountWebhooks mounts the Meta Webhooks endpoint: GET answers the
// subscription challenge, POST takes signed notifications. Neither takes a
// bearer token: Meta calls them, and the verify token and the signature
// are what authenticate it.
func (s *Server) mountWebhooks(mux *http.ServeMux, d Deps) {
	cfg := d.Config.MetaWebhook
	s.handle(mux, "GET /v1/webhooks/meta", s.handleMetaVerify(cfg))
	ws, ok := d.Store.(webhookStore)
	if !ok {
		return
	}
	s.handle(mux, "POST /v1/webhooks/meta", s.handleMetaNotification(cfg, ws))
}

// challengePattern bounds what is echoed back: Meta sends an integer.
var challengePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,256}$`)

// handleMetaVerify answers Meta's verification request
// (hub.mode=subscribe&hub.verify_token=…&hub.challenge=…) with the
// challenge, as plain text, when the token matches META_VERIFY_TOKEN.
func (s *Server) handleMetaVerify(cfg MetaWebhookConfig) http.Handler {
	want := sha256.Sum256([]byte(cfg.VerifyToken))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		got := sha256.Sum256([]byte(q.Get("hub.verify_token")))
		switch {
		case cfg.VerifyToken == "":
			s.fail(w, r, problem(http.StatusForbidden, "webhook verification is not configured: set META_VERIFY_TOKEN"))
			return
		case q.Get("hub.mode") != "subscribe":
			s.fail(w, r, problem(http.StatusForbidden, "hub.mode must be subscribe"))
			return
		case subtle.ConstantTimeCompare(got[:], want[:]) != 1:
			s.fail(w, r, problem(http.StatusForbidden, "hub.verify_token does not match"))
			return
		case !challengePattern.MatchString(q.Get("hub.challenge")):
			s.fail(w, r, problem(http.StatusBadRequest, "hub.challenge is missing or malformed"))
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, q.Get("hub.challenge"))
	})
}

// metaNotification is a Webhooks notification body.
type metaNotification struct {
	Object string `json:"object"`
	Entry  []struct {
		ID      metaID `json:"id"`
		Changes []struct {
			Field string          `json:"field"`
			Value json.RawMessage `json:"value"`
		} `json:"changes"`
	} `json:"entry"`
}

// leadgenValue is the value of a leadgen change. ad_id, adgroup_id and
// created_time come too; the handler reads them from the lead itself.
type leadgenValue struct {
	LeadgenID metaID `json:"leadgen_id"`
	PageID    metaID `json:"page_id"`
	FormID    metaID `json:"form_id"`
}

// webhookAnswer is the answer to a notification: counts only.
type webhookAnswer struct {
	Leadgen int `json:"leadgen"`
	Queued  int `json:"queued"`
	Ignored int `json:"ignored"`
}

// handleMetaNotification checks the signature of the raw body, queues one
// meta:leadgen outbox row per leadgen change (all rows in one transaction;
// a lead already queued is not queued again), dispatches the new rows and
// answers 200 at once: Meta retries anything else, and the lead is read
// from the Graph API by the worker, not here.
func (s *Server) handleMetaNotification(cfg MetaWebhookConfig, st webhookStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if cfg.AppSecret == "" {
			s.fail(w, r, problem(http.StatusUnauthorized, "notifications cannot be verified: set META_APP_SECRET"))
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxWebhookBytes))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				s.fail(w, r, problem(http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", MaxWebhookBytes)))
				return
			}
			s.fail(w, r, problem(http.StatusBadRequest, "could not read the body"))
			return
		}
		if !validSignature(cfg.AppSecret, body, r.Header.Get("X-Hub-Signature-256")) {
			s.fail(w, r, problem(http.StatusUnauthorized, "X-Hub-Signature-256 is missing or does not match the body"))
			return
		}
		var n metaNotification
		if err := json.Unmarshal(body, &n); err != nil {
			s.fail(w, r, problem(http.StatusBadRequest, "malformed JSON: "+jsonSyntaxDetail(err)))
			return
		}
		var (
			ans      webhookAnswer
			queued   []store.QueuedTask
			payloads []tasks.MetaLeadgen
		)
		for _, e := range n.Entry {
			for _, c := range e.Changes {
				if n.Object != "page" || c.Field != "leadgen" {
					ans.Ignored++
					continue
				}
				ans.Leadgen++
				var v leadgenValue
				if err := json.Unmarshal(c.Value, &v); err != nil {
					ans.Ignored++
					s.log.Warn("meta webhook: unreadable leadgen change", "request_id", requestIDFrom(ctx), "page_id", string(e.ID))
					continue
				}
				p := tasks.MetaLeadgen{LeadgenID: string(v.LeadgenID), PageID: string(v.PageID), FormID: string(v.FormID)}
				if p.PageID == "" {
					p.PageID = string(e.ID)
				}
				b, err := json.Marshal(p)
				if err == nil {
					err = p.Validate()
				}
				if err != nil {
					ans.Ignored++
					s.log.Warn("meta webhook: leadgen change without usable ids", "request_id", requestIDFrom(ctx), "err", err)
					continue
				}
				queued = append(queued, store.QueuedTask{TaskType: tasks.TypeMetaLeadgen, Payload: b, Key: p.Key()})
				payloads = append(payloads, p)
			}
		}
		if len(queued) > 0 {
			ids, err := st.QueueTasks(ctx, queued, s.now())
			if err != nil {
				// Meta retries a non-2xx answer: nothing is lost.
				s.fail(w, r, err)
				return
			}
			for i, id := range ids {
				if id == "" {
					continue // queued by an earlier delivery
				}
				ans.Queued++
				s.dispatch.Now(ctx, id, tasks.TypeMetaLeadgen, queued[i].Payload)
				s.log.Info("meta lead queued", "request_id", requestIDFrom(ctx), "leadgen_id", payloads[i].LeadgenID, "form_id", payloads[i].FormID, "outbox_id", id)
			}
		}
		writeJSON(w, http.StatusOK, ans)
	})
}

// validSignature checks X-Hub-Signature-256 ("sha256=" and the hex
// HMAC-SHA256 of the raw body keyed with the app secret) in constant time.
func validSignature(secret string, body []byte, header string) bool {
	hexSig, ok := strings.CutPrefix(strings.TrimSpace(header), "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hmac.Equal(mac.Sum(nil), got)
}

// metaID decodes a Graph API id sent as a JSON string or, in some
// notifications, as a JSON number.
type metaID string

func (g *metaID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*g = metaID(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*g = metaID(n.String())
	return nil
}
