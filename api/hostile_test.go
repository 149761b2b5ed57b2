package api_test

// Hostile input through the real handler, over HTTP, against the real
// PostgreSQL and Redis: every answer is a 4xx problem+json naming the field
// where there is one, nothing is stored or queued, nothing panics, and the
// server still serves afterwards. FuzzEndToEnd fuzzes the same path.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/cepcomunicacion/cepjobs/api"
	"github.com/cepcomunicacion/cepjobs/internal/backup"
)

const hostileToken = "hostile-token-0123456789abcdef"

type listNothing struct{}

func (listNothing) List(context.Context, string) ([]backup.Object, error) { return nil, nil }

// withEverything: a token with every scope and no rate limit, the Meta
// webhook configured, and object storage "configured" so that exports
// and backups are mounted (neither lists nor writes objects here).
func withEverything(c *api.Config, d *api.Deps) {
	c.RateLimit = 0
	c.Tokens = append(c.Tokens, api.Token{Name: "hostile", Secret: hostileToken, Scopes: []string{
		api.ScopeLeadsWrite, api.ScopeLeadsRead, api.ScopeLeadsErase, api.ScopeContentWrite, api.ScopeContentRead,
		api.ScopeCampaignsWrite, api.ScopeCampaignsRead, api.ScopeBackupsWrite, api.ScopeBackupsRead,
		api.ScopeExportsWrite, api.ScopeStatsRead,
	}})
	c.MetaWebhook = api.MetaWebhookConfig{VerifyToken: verifyToken, AppSecret: appSecret}
	d.Backups = listNothing{}
	d.BackupDatabase = "cepcomunicacion"
}

// rowCounter counts the rows of every table in schema cepjobs.
type rowCounter struct {
	conn   *pgx.Conn
	tables []string
}

func newRowCounter(t testing.TB) *rowCounter {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	rows, err := conn.Query(ctx, `select table_name from information_schema.tables
		where table_schema = 'cepjobs' and table_type = 'BASE TABLE' order by 1`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(tables) < 5 {
		t.Fatalf("tables of schema cepjobs: %v %v", tables, err)
	}
	return &rowCounter{conn: conn, tables: tables}
}

func (rc *rowCounter) counts(t testing.TB) map[string]int64 {
	t.Helper()
	var q []string
	for _, tb := range rc.tables {
		// Names from the catalogue, quoted: a literal and an identifier.
		q = append(q, fmt.Sprintf("select '%s'::text, count(*) from cepjobs.%s", strings.ReplaceAll(tb, "'", "''"), pgx.Identifier{tb}.Sanitize()))
	}
	rows, err := rc.conn.Query(context.Background(), strings.Join(q, " union all "))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		out[name] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// queued sums the tasks in every asynq queue.
func (b *bundle) queued(t testing.TB) int {
	t.Helper()
	qs, err := b.inspector.Queues()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, q := range qs {
		info, err := b.inspector.GetQueueInfo(q)
		if err != nil {
			t.Fatal(err)
		}
		n += info.Size
	}
	return n
}

// send sends one raw request; hdr holds header pairs.
func (b *bundle) send(t testing.TB, method, path string, body []byte, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body = nil
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

// checkProblem checks a non-2xx answer is a complete problem+json body.
func checkProblem(t testing.TB, r response) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type: got %q, want application/problem+json", ct)
	}
	if !json.Valid([]byte(r.raw)) {
		t.Fatalf("problem is not JSON: %q", r.raw)
	}
	if s, _ := r.body["type"].(string); s == "" {
		t.Errorf("problem without a type: %s", r.raw)
	}
	if s, _ := r.body["title"].(string); s == "" {
		t.Errorf("problem without a title: %s", r.raw)
	}
	if r.body["status"] != float64(r.status) {
		t.Errorf("problem status %v, HTTP status %d", r.body["status"], r.status)
	}
}

// lead is validLead with edits, as JSON.
func lead(edit func(map[string]any)) []byte {
	l := validLead()
	if edit != nil {
		edit(l)
	}
	b, _ := json.Marshal(l)
	return b
}

// leadWith is validLead's JSON with member key set to raw, for what
// json.Marshal cannot write (invalid UTF-8, huge numbers).
func leadWith(key, raw string) []byte {
	b := lead(func(l map[string]any) { delete(l, key) })
	return append([]byte(`{"`+key+`":`+raw+","), b[1:]...)
}

func TestHostileInputs(t *testing.T) {
	b := setup(t, withEverything)
	rc := newRowCounter(t)
	jsonCT := []string{"Content-Type", "application/json", "Authorization", "Bearer " + hostileToken}
	tenMB := func(prefix string) []byte {
		return append(append([]byte(prefix), bytes.Repeat([]byte("a"), 10<<20)...), `"}`...)
	}
	nested := func(open, close string, n int) string {
		return strings.Repeat(open, n) + "1" + strings.Repeat(close, n)
	}
	type tc struct {
		name   string
		method string
		path   string
		body   []byte
		hdr    []string // replaces jsonCT when set
		status int
		fields []string // the fields the 422 names, in order; nil: not checked
	}
	cases := []tc{
		// Size.
		{name: "10 MB lead", body: tenMB(`{"message":"`), status: 413},
		{name: "10 MB of garbage", body: bytes.Repeat([]byte{0xff, 0}, 5<<20), status: 413},
		{name: "10 MB webhook", path: "/v1/webhooks/meta", body: tenMB(`{"object":"`), status: 413},
		{name: "10 MB content", path: "/v1/content", body: tenMB(`{"kind":"`), status: 413},
		{name: "body just over 64 KiB", body: lead(func(l map[string]any) { l["message"] = strings.Repeat("a", api.MaxBodyBytes) }), status: 413},
		// Encoding.
		{name: "invalid UTF-8 in a value", body: leadWith("first_name", "\"An\xffa\""), status: 422, fields: []string{"first_name"}},
		{name: "invalid UTF-8 in a nested value", body: leadWith("utm", "{\"source\":\"fb\xc3\x28\"}"), status: 422, fields: []string{"utm.source"}},
		{name: "invalid UTF-8 in a key", body: leadWith("na\xffme", `"Ana"`), status: 422, fields: []string{"\"na\ufffdme\""}},
		{name: "lone surrogate escape", body: leadWith("last_name", `"\ud800"`), status: 422, fields: []string{"last_name"}},
		{name: "latin-1 body", body: []byte("{\"first_name\":\"Jos\xe9\"}"), status: 422},
		{name: "UTF-16 body", body: []byte("\xff\xfe{\x00}\x00"), status: 400},
		{name: "byte order mark", body: append([]byte("\xef\xbb\xbf"), lead(nil)...), status: 400},
		// Structure.
		{name: "10k levels of objects", body: []byte(`{"utm":` + nested(`{"a":`, `}`, 10000) + `}`), status: 400},
		{name: "10k levels of arrays", body: []byte(`{"utm":` + nested(`[`, `]`, 10000) + `}`), status: 400},
		{name: "deep but legal nesting", body: []byte(`{"utm":` + nested(`[`, `]`, 5000) + `}`), status: 422},
		{name: "huge number 1e400", body: leadWith("first_name", "1e400"), status: 422, fields: []string{"first_name"}},
		{name: "2^64 as privacy", body: lead(func(l map[string]any) {
			l["consent"] = json.RawMessage(`{"privacy":18446744073709551616,"text_version":"v"}`)
		}), status: 422, fields: []string{"consent.privacy"}},
		{name: "NUL escape in a name", body: lead(func(l map[string]any) { l["first_name"] = "Ana\x00" }), status: 422, fields: []string{"first_name"}},
		{name: "NUL escape in the email", body: lead(func(l map[string]any) { l["email"] = "ana\x00@example.com" }), status: 422, fields: []string{"email"}},
		{name: "NUL escape in a key", body: leadWith(`first\u0000name`, `"x"`), status: 422, fields: []string{`"first\x00name"`}},
		{name: "raw NUL byte", body: []byte("{\"first_name\":\"A\x00\"}"), status: 400},
		{name: "duplicate keys", body: append([]byte(`{"first_name":"Eva",`), lead(nil)[1:]...), status: 422, fields: []string{"first_name"}},
		{name: "duplicate nested keys", body: lead(func(l map[string]any) {
			l["consent"] = json.RawMessage(`{"privacy":true,"privacy":false,"text_version":"v"}`)
		}), status: 422, fields: []string{"consent.privacy"}},
		{name: "trailing garbage", body: append(lead(nil), "garbage"...), status: 400},
		{name: "two objects", body: append(lead(nil), lead(nil)...), status: 400},
		{name: "array instead of an object", body: append(append([]byte("["), lead(nil)...), ']'), status: 400},
		{name: "string instead of an object", body: []byte(`"lead"`), status: 400},
		{name: "array for a nested object", body: lead(func(l map[string]any) { l["consent"] = []any{true} }), status: 422, fields: []string{"consent"}},
		{name: "object for a string", body: lead(func(l map[string]any) { l["email"] = map[string]any{"$ne": ""} }), status: 422, fields: []string{"email"}},
		{name: "empty body", body: []byte{}, status: 400},
		{name: "whitespace body", body: []byte(" \r\n\t "), status: 400},
		{name: "null", body: []byte("null"), status: 400},
		{name: "truncated", body: lead(nil)[:40], status: 400},
		// Injection.
		{name: "SQL in a slug", body: lead(func(l map[string]any) { l["course"] = "x'; drop table cepjobs.leads; --" }), status: 422, fields: []string{"course"}},
		{name: "SQL in the email", body: lead(func(l map[string]any) { l["email"] = "x@example.com' OR '1'='1" }), status: 422, fields: []string{"email"}},
		{name: "header injection in a name", body: lead(func(l map[string]any) { l["first_name"] = "Ana\r\nX-Injected: 1" }), status: 422, fields: []string{"first_name"}},
		{name: "CRLF in the email", body: lead(func(l map[string]any) { l["email"] = "ana@example.com\r\nBcc: all@example.com" }), status: 422, fields: []string{"email"}},
		{name: "LF in the email", body: lead(func(l map[string]any) { l["email"] = "ana\n@example.com" }), status: 422, fields: []string{"email"}},
		{name: "tab in a quoted email", body: lead(func(l map[string]any) { l["email"] = "\"ana\tmaria\"@example.com" }), status: 422, fields: []string{"email"}},
		{name: "display name email", body: lead(func(l map[string]any) { l["email"] = "Ana <ana@example.com>" }), status: 422, fields: []string{"email"}},
		{name: "CRLF in the user agent", body: lead(func(l map[string]any) { l["client"] = map[string]any{"user_agent": "x\r\nSet-Cookie: a=b"} }), status: 422, fields: []string{"client.user_agent"}},
		{name: "CRLF in the text version", body: lead(func(l map[string]any) {
			l["consent"] = map[string]any{"privacy": true, "text_version": "v1\r\nX: y"}
		}), status: 422, fields: []string{"consent.text_version"}},
		// Unicode.
		{name: "bidi override in a name", body: lead(func(l map[string]any) { l["first_name"] = "\u202eanA" }), status: 422, fields: []string{"first_name"}},
		{name: "bidi isolate in a name", body: lead(func(l map[string]any) { l["last_name"] = "a\u2067b\u2069" }), status: 422, fields: []string{"last_name"}},
		{name: "zero-width space in a name", body: lead(func(l map[string]any) { l["first_name"] = "A\u200bna" }), status: 422, fields: []string{"first_name"}},
		{name: "zero-width space in the email", body: lead(func(l map[string]any) { l["email"] = "ana\u200b@example.com" }), status: 422, fields: []string{"email"}},
		{name: "zero-width in a slug", body: lead(func(l map[string]any) { l["course"] = "curso\u200b" }), status: 422, fields: []string{"course"}},
		{name: "byte order mark in a name", body: lead(func(l map[string]any) { l["first_name"] = "\ufeffAna" }), status: 422, fields: []string{"first_name"}},
		{name: "line separator in a name", body: lead(func(l map[string]any) { l["first_name"] = "Ana\u2028Eva" }), status: 422, fields: []string{"first_name"}},
		{name: "only spaces", body: lead(func(l map[string]any) { l["first_name"] = "\u00a0\u3000 " }), status: 422, fields: []string{"first_name"}},
		// Length.
		{name: "overlong name", body: lead(func(l map[string]any) { l["first_name"] = strings.Repeat("ñ", 101) }), status: 422, fields: []string{"first_name"}},
		{name: "overlong message", body: lead(func(l map[string]any) { l["message"] = strings.Repeat("a", 5001) }), status: 422, fields: []string{"message"}},
		{name: "overlong email", body: lead(func(l map[string]any) { l["email"] = strings.Repeat("a", 250) + "@example.com" }), status: 422, fields: []string{"email"}},
		{name: "overlong slug", body: lead(func(l map[string]any) { l["course"] = strings.Repeat("a", 129) }), status: 422, fields: []string{"course"}},
		{name: "overlong captcha token", body: lead(func(l map[string]any) { l["captcha_token"] = strings.Repeat("a", 8193) }), status: 422, fields: []string{"captcha_token"}},
		{name: "overlong utm", body: lead(func(l map[string]any) { l["utm"] = map[string]any{"term": strings.Repeat("a", 201)} }), status: 422, fields: []string{"utm.term"}},
		{name: "many unknown fields", body: manyKeys(2000), status: 422},
		// Media type.
		{name: "text/plain", body: lead(nil), hdr: []string{"Content-Type", "text/plain"}, status: 415},
		{name: "no content type", body: lead(nil), hdr: []string{}, status: 415},
		{name: "form", body: []byte("first_name=Ana"), hdr: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: 415},
		{name: "multipart", body: []byte("--x\r\n\r\n--x--"), hdr: []string{"Content-Type", "multipart/form-data; boundary=x"}, status: 415},
		{name: "malformed content type", body: lead(nil), hdr: []string{"Content-Type", "application/json; charset=\""}, status: 415},
		{name: "json lookalike", body: lead(nil), hdr: []string{"Content-Type", "application/jsonx"}, status: 415},
		// Other endpoints.
		{name: "content: invalid UTF-8 in input", path: "/v1/content", body: []byte("{\"kind\":\"email_copy\",\"input\":{\"purpose\":\"P\xff\",\"audience\":\"A\"}}"), status: 422, fields: []string{"input.purpose"}},
		{name: "content: lone surrogate in input", path: "/v1/content", body: []byte(`{"kind":"email_copy","input":{"purpose":"P","audience":"A","tone":"\udc00"}}`), status: 422, fields: []string{"input.tone"}},
		{name: "content: NUL in input", path: "/v1/content", body: []byte(`{"kind":"email_copy","input":{"purpose":"P\u0000","audience":"A"}}`), status: 422, fields: []string{"input.purpose"}},
		{name: "content: duplicate input keys", path: "/v1/content", body: []byte(`{"kind":"email_copy","input":{"purpose":"P","audience":"A","audience":"B"}}`), status: 422, fields: []string{"input.audience"}},
		{name: "content: 2^64 variants", path: "/v1/content", body: []byte(`{"kind":"meta_ad_copy","input":{"course_title":"T","offer":"O","audience":"A","variants":18446744073709551616}}`), status: 422, fields: []string{"input.variants"}},
		{name: "content: javascript callback", path: "/v1/content", body: []byte(`{"kind":"email_copy","input":{"purpose":"P","audience":"A"},"callback_url":"javascript:alert(1)"}`), status: 422, fields: []string{"callback_url"}},
		{name: "content: input an array", path: "/v1/content", body: []byte(`{"kind":"email_copy","input":[]}`), status: 422, fields: []string{"input"}},
		{name: "campaign: SQL id", path: "/v1/campaigns/" + url.PathEscape("x';drop table x;--") + "/launch", body: []byte(`{"name":"n","template":"t","audience":{}}`), status: 422, fields: []string{"id"}},
		{name: "campaign: bidi name", path: "/v1/campaigns/c1/launch", body: []byte(`{"name":"\u202en","template":"t","audience":{}}`), status: 422, fields: []string{"name"}},
		{name: "campaign: audience an array", path: "/v1/campaigns/c1/launch", body: []byte(`{"name":"n","template":"t","audience":[]}`), status: 422, fields: []string{"audience"}},
		{name: "export: to 9999-12-31", path: "/v1/exports", body: []byte(`{"to":"9999-12-31"}`), status: 422, fields: []string{"to"}},
		{name: "export: from year 0", path: "/v1/exports", body: []byte(`{"from":"0000-01-01T00:00:00+01:00"}`), status: 422, fields: []string{"from"}},
		{name: "export: consent a string", path: "/v1/exports", body: []byte(`{"marketing_consent":"yes"}`), status: 422, fields: []string{"marketing_consent"}},
		{name: "webhook: unsigned", path: "/v1/webhooks/meta", body: leadgenBody("1"), hdr: []string{"Content-Type", "application/json"}, status: 401},
		{name: "webhook: deep nesting", path: "/v1/webhooks/meta", body: []byte(nested(`{"a":`, `}`, 10001)), status: 400},
		{name: "webhook: array", path: "/v1/webhooks/meta", body: []byte(`[]`), status: 400},
		{name: "webhook: trailing garbage", path: "/v1/webhooks/meta", body: append(leadgenBody("555"), 'x'), status: 400},
		{name: "lead id not a UUID", method: "GET", path: "/v1/leads/" + url.PathEscape("' or 1=1 --"), status: 404},
		{name: "lead id in braces", method: "GET", path: "/v1/leads/%7B01a21f83-f54d-7489-8fae-08ea6ef64faa%7D", status: 404},
		{name: "lead id as a URN", method: "GET", path: "/v1/leads/urn:uuid:01a21f83-f54d-7489-8fae-08ea6ef64faa", status: 400},
		{name: "erase id as a URN", method: "DELETE", path: "/v1/leads/urn:uuid:01a21f83-f54d-7489-8fae-08ea6ef64faa", status: 400},
		{name: "content id as a URN", method: "GET", path: "/v1/content/urn:uuid:01a21f83-f54d-7489-8fae-08ea6ef64faa", status: 400},
		{name: "export id as a URN", method: "GET", path: "/v1/exports/urn:uuid:01a21f83-f54d-7489-8fae-08ea6ef64faa", status: 400},
		{name: "export id with NUL", method: "GET", path: "/v1/exports/a%00b", status: 404},
		{name: "campaign id with NUL", method: "GET", path: "/v1/campaigns/a%00b", status: 404},
		{name: "stats: year 0 to 9999", method: "GET", path: "/v1/stats?from=0000-01-01&to=9999-12-31", status: 422, fields: []string{"from", "to"}},
		{name: "stats: bad dimension", method: "GET", path: "/v1/stats?from=2026-01-01&to=2026-01-02&by=day,%00", status: 422, fields: []string{"by"}},
		{name: "verify: challenge with CRLF", method: "GET", path: "/v1/webhooks/meta?hub.mode=subscribe&hub.verify_token=" + verifyToken + "&hub.challenge=a%0d%0aX:1", status: 400},
	}
	// Signed webhook bodies: the signature is right, the body is not.
	for i := range cases {
		c := &cases[i]
		if c.method == "" {
			c.method = http.MethodPost
		}
		if c.path == "" {
			c.path = "/v1/leads"
		}
		if c.hdr == nil {
			c.hdr = jsonCT
			if c.path == "/v1/webhooks/meta" {
				c.hdr = []string{"Content-Type", "application/json", "X-Hub-Signature-256", sign(appSecret, c.body)}
			}
		}
		if c.method != http.MethodPost && len(c.hdr) == len(jsonCT) {
			c.body = nil
		}
		if len(c.hdr) == 0 || c.hdr[0] != "Authorization" {
			if !strings.HasPrefix(c.path, "/v1/webhooks/") {
				c.hdr = append(slices.Clone(c.hdr), "Authorization", "Bearer "+hostileToken)
			}
		}
	}

	before, queuedBefore := rc.counts(t), b.queued(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := b.send(t, c.method, c.path, c.body, c.hdr...)
			if r.status != c.status {
				t.Errorf("status: got %d, want %d: %.500s", r.status, c.status, r.raw)
			}
			checkProblem(t, r)
			if c.fields != nil && !fieldsMatch(fieldsOf(r), c.fields) {
				t.Errorf("fields: got %q, want %q (and fields under them): %.500s", fieldsOf(r), c.fields, r.raw)
			}
			if r.status == http.StatusUnprocessableEntity && len(fieldsOf(r)) == 0 {
				t.Errorf("a 422 naming no field: %.500s", r.raw)
			}
		})
	}
	if after := rc.counts(t); !mapsEqual(before, after) {
		t.Errorf("rows changed after hostile input only:\nbefore %v\nafter  %v", before, after)
	}
	if n := b.queued(t); n != queuedBefore {
		t.Errorf("queued tasks: %d before, %d after hostile input only", queuedBefore, n)
	}
	for _, bad := range []string{`"level":"ERROR"`, "panic"} {
		if strings.Contains(b.logs.String(), bad) {
			t.Errorf("log holds %s:\n%s", bad, b.logs.String())
		}
	}

	// Still healthy, and still taking leads.
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := b.send(t, "GET", p, nil); r.status != http.StatusOK {
			t.Errorf("GET %s after hostile input: %d %s", p, r.status, r.raw)
		}
	}
	if r := b.send(t, "POST", "/v1/leads", lead(nil), jsonCT...); r.status != http.StatusAccepted {
		t.Errorf("a valid lead after hostile input: %d %s", r.status, r.raw)
	}
}

// TestHostileButValidTextIsStoredVerbatim: names are free text. SQL in a
// name, quotes, RTL script and emoji (zero-width joiners included) are a
// name like any other: stored as sent, through bind parameters, and the
// tables are still there.
func TestHostileButValidTextIsStoredVerbatim(t *testing.T) {
	b := setup(t, withEverything)
	rc := newRowCounter(t)
	before := rc.counts(t)
	names := []string{
		"Robert'); DROP TABLE cepjobs.leads;--",
		`O'Brien "Bobby" \ Tables`,
		"محمد عبد الله",
		"👩‍👩‍👧 Ana", // zero-width joiners inside an emoji sequence
		"Ana%00%0d%0a<script>",
	}
	for _, name := range names {
		r := b.send(t, "POST", "/v1/leads", lead(func(l map[string]any) { l["first_name"] = name }),
			"Content-Type", "application/json", "Authorization", "Bearer "+hostileToken)
		if r.status != http.StatusAccepted {
			t.Fatalf("first_name %q: got %d %s", name, r.status, r.raw)
		}
		var got string
		if err := rc.conn.QueryRow(context.Background(), `select first_name from cepjobs.leads where id = $1`, r.body["id"]).Scan(&got); err != nil || got != name {
			t.Errorf("stored first_name: got %q (%v), want %q", got, err, name)
		}
	}
	after := rc.counts(t)
	if after["leads"] != before["leads"]+int64(len(names)) {
		t.Errorf("leads: %d before, %d after %d leads", before["leads"], after["leads"], len(names))
	}
}

// fieldsMatch: every wanted field is named, and every field named is a
// wanted one or under one ("consent.privacy" under "consent").
func fieldsMatch(got, want []string) bool {
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	for _, g := range got {
		if !slices.ContainsFunc(want, func(w string) bool { return g == w || strings.HasPrefix(g, w+".") }) {
			return false
		}
	}
	return true
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// FuzzEndToEnd sends fuzzed requests to every endpoint that reads a body,
// a query or a path id, over HTTP to the real handler on the real
// PostgreSQL and Redis, and checks: no 5xx, non-2xx answers are complete
// problem+json bodies, and a non-2xx answer changed no row of any table.
func FuzzEndToEnd(f *testing.F) {
	seeds := []struct {
		which byte
		arg   string
		body  string
	}{
		{0, "", string(lead(nil))},
		{0, "", string(leadWith("na\xffme", `"Ana"`))},
		{0, "", `{"first_name":"\ud800"}`},
		{1, "", `{"kind":"email_copy","input":{"purpose":"P\u0000","audience":"A"}}`},
		{1, "", "{\"kind\":\"email_copy\",\"input\":{\"purpose\":\"P\xff\",\"audience\":\"A\"}}"},
		{2, "c1", `{"name":"n","template":"t","audience":{"to":"9999-12-31"}}`},
		{2, "c1", `{"name":"n","template":"t","audience":{"from":"0000-01-01T00:00:00+23:59"}}`},
		{3, "", `{"to":"9999-12-31"}`},
		{3, "", `{"from":"2026-11-01","marketing_consent":false}`},
		{4, "", string(leadgenBody("444555666"))},
		{4, "", `{"object":"page","entry":[{"id":1e400,"changes":[{"field":"leadgen","value":{"leadgen_id":18446744073709551616}}]}]}`},
		{5, "urn:uuid:01a21f83-f54d-7489-8fae-08ea6ef64faa", ""},
		{6, "{01a21f83-f54d-7489-8fae-08ea6ef64faa}", ""},
		{7, "01a21f83f54d74898fae08ea6ef64faa", ""},
		{8, "from=0000-01-01&to=0000-12-31&by=campaign", ""},
		{9, "urn:uuid:01a21f83-f54d-7489-8fae-08ea6ef64faa", ""},
		{10, "a%00b", ""},
		{11, "", "ignored"},
	}
	for _, s := range seeds {
		f.Add(s.which, s.arg, []byte(s.body))
	}
	b := setup(f, withEverything)
	rc := newRowCounter(f)
	hdr := []string{"Content-Type", "application/json", "Authorization", "Bearer " + hostileToken}
	f.Fuzz(func(t *testing.T, which byte, arg string, body []byte) {
		var method, path string
		h := hdr
		pid := url.PathEscape(arg)
		if pid == "" {
			pid = "x"
		}
		switch which % 12 {
		case 0:
			method, path = "POST", "/v1/leads"
		case 1:
			method, path = "POST", "/v1/content"
		case 2:
			method, path = "POST", "/v1/campaigns/"+pid+"/launch"
		case 3:
			method, path = "POST", "/v1/exports"
		case 4:
			method, path = "POST", "/v1/webhooks/meta"
			h = []string{"Content-Type", "application/json", "X-Hub-Signature-256", sign(appSecret, body)}
		case 5:
			method, path = "GET", "/v1/leads/"+pid
		case 6:
			method, path = "GET", "/v1/content/"+pid
		case 7:
			method, path = "GET", "/v1/exports/"+pid
		case 8:
			method, path = "GET", "/v1/stats?"+strings.NewReplacer("#", "%23", " ", "%20").Replace(arg)
		case 9:
			method, path = "DELETE", "/v1/leads/"+pid
		case 10:
			method, path = "GET", "/v1/campaigns/"+pid
		case 11:
			method, path = "POST", "/v1/backups"
		}
		if method == "GET" || method == "DELETE" {
			body = nil
		}
		if _, err := url.Parse(b.srv.URL + path); err != nil {
			return
		}
		before := rc.counts(t)
		r := b.send(t, method, path, body, h...)
		if r.status >= 500 {
			t.Fatalf("%s %s: %d %s\nlog: %s", method, path, r.status, r.raw, tailString(b.logs.String(), 4000))
		}
		if r.status < 300 {
			return
		}
		if r.status < 400 {
			if r.status != http.StatusMovedPermanently {
				t.Fatalf("%s %s: %d %s", method, path, r.status, r.raw)
			}
			return
		}
		checkProblem(t, r)
		if r.status == http.StatusUnprocessableEntity && len(fieldsOf(r)) == 0 {
			t.Fatalf("%s %s: a 422 naming no field: %s", method, path, r.raw)
		}
		if method == "POST" && r.body["type"] == "https://cepjobs.dev/problems/malformed-value" {
			// Validation let through a value PostgreSQL refused.
			t.Fatalf("%s %s: a body value reached PostgreSQL unchecked: %s", method, path, r.raw)
		}
		if after := rc.counts(t); !mapsEqual(before, after) {
			t.Fatalf("%s %s answered %d but rows changed:\nbefore %v\nafter  %v", method, path, r.status, before, after)
		}
	})
}

func tailString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// manyKeys is an object of n distinct unknown keys.
func manyKeys(n int) []byte {
	var sb strings.Builder
	sb.WriteString("{")
	for i := range n {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `"k%d":1`, i)
	}
	sb.WriteString("}")
	return []byte(sb.String())
}
