package main_test

// End-to-end: the real intake binary, started as a process, driven over HTTP
// against the real PostgreSQL and Redis (and a private redis-server where the
// test has to stop Redis).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/cepcomunicacion/cepjobs/api"
	"github.com/cepcomunicacion/cepjobs/internal/redisconn"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
	"github.com/cepcomunicacion/cepjobs/tasks"
)

const (
	token    = "e2e-token-0123456789abcdef"
	dashPass = "e2e dashboard password"
)

var (
	binary   string
	dbURL    string
	dashHash string
)

func TestMain(m *testing.M) {
	testenv.Main(m, "cepjobs-e2e-", func(dir string) (func(), error) {
		bins, err := testenv.BuildBinaries(dir, "intake")
		if err != nil {
			return nil, err
		}
		binary = bins["intake"]
		url, drop, err := testenv.CreateDatabase(context.Background(), "intake")
		if err != nil {
			return nil, err
		}
		dbURL = url
		dashHash, err = api.HashPassword(dashPass)
		return drop, err
	})
}

// proc is a running intake.
type proc struct {
	*testenv.Proc
	base string
}

func start(t *testing.T, redisURL string, extraEnv ...string) *proc {
	t.Helper()
	port := testenv.FreePort(t)
	env := append([]string{
		"REDIS_URL=" + redisURL,
		"DATABASE_URL=" + dbURL,
		fmt.Sprintf("CEPJOBS_HTTP_ADDR=127.0.0.1:%d", port),
		"CEPJOBS_API_TOKENS=cms:" + token + ":leads:write|leads:read,viewer:viewer-token-0123456789:leads:read",
		"CEPJOBS_DASHBOARD_USER=ops",
		"CEPJOBS_DASHBOARD_PASSWORD_HASH=" + dashHash,
		"CEPJOBS_OUTBOX_INTERVAL=100ms",
		"CEPJOBS_SHUTDOWN_TIMEOUT=10s",
	}, extraEnv...)
	p := &proc{Proc: testenv.StartProc(t, "intake", binary, env), base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	p.WaitHTTP(t, p.base+"/healthz", 20*time.Second)
	return p
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (p *proc) do(t *testing.T, method, path string, body any, hdr ...string) reply {
	t.Helper()
	var rd io.Reader
	if s, ok := body.(string); ok {
		rd = strings.NewReader(s)
	} else if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, p.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

var counter struct {
	sync.Mutex
	n int
}

func lead() map[string]any {
	counter.Lock()
	counter.n++
	n := counter.n
	counter.Unlock()
	return map[string]any{
		"external_id": "cms-123", "first_name": "Ana", "last_name": "García",
		"email": fmt.Sprintf("ana.e2e.%d.%d@example.com", time.Now().UnixNano(), n),
		"phone": "+34600111222", "course": "tecnico-marketing-digital", "campaign": "meta-otono-2026",
		"site": "sevilla", "source": "web-form", "message": "…",
		"utm":           map[string]any{"source": "facebook", "medium": "cpc", "campaign": "otono"},
		"consent":       map[string]any{"privacy": true, "marketing": false, "text_version": "2026-01", "accepted_at": "2026-11-27T10:00:00Z"},
		"client":        map[string]any{"ip": "203.0.113.7", "user_agent": "Mozilla/5.0"},
		"captcha_token": "…",
	}
}

func inspector(t *testing.T, redisURL string) *asynq.Inspector {
	opt, err := redisconn.Parse(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	in := asynq.NewInspector(opt)
	t.Cleanup(func() { in.Close() })
	return in
}

func pending(in *asynq.Inspector) int {
	q, err := in.GetQueueInfo(tasks.QueueCritical)
	if err != nil {
		return -1
	}
	return q.Pending
}

func TestIntakeEndToEnd(t *testing.T) {
	redisURL := testenv.RedisURL(t, testenv.RedisDBIntake)
	p := start(t, redisURL)
	in := inspector(t, redisURL)

	// A valid lead: 202, queued, visible.
	l := lead()
	r := p.do(t, "POST", "/v1/leads", l)
	if r.status != 202 || r.body["status"] != "queued" || r.body["duplicate"] != false {
		t.Fatalf("valid lead: got %d %s", r.status, r.raw)
	}
	id := r.body["id"].(string)
	if got := pending(in); got != 1 {
		t.Errorf("pending lead:process tasks: got %d, want 1", got)
	}
	if g := p.do(t, "GET", "/v1/leads/"+id, nil); g.status != 200 || g.body["id"] != id || g.body["status"] != "queued" {
		t.Errorf("GET lead: got %d %s", g.status, g.raw)
	}

	// Duplicate within 24 h: 200, same id, no new task.
	l["email"] = strings.ToUpper(l["email"].(string))
	if d := p.do(t, "POST", "/v1/leads", l); d.status != 200 || d.body["id"] != id || d.body["duplicate"] != true {
		t.Errorf("duplicate: got %d %s", d.status, d.raw)
	}

	// Idempotent replay and conflict.
	l2 := lead()
	a := p.do(t, "POST", "/v1/leads", l2, "Idempotency-Key", "cms-form-1")
	b := p.do(t, "POST", "/v1/leads", l2, "Idempotency-Key", "cms-form-1")
	if a.status != 202 || b.status != 202 || a.raw != b.raw {
		t.Errorf("replay: got %d %s then %d %s", a.status, a.raw, b.status, b.raw)
	}
	l2["course"] = "otro-curso"
	if c := p.do(t, "POST", "/v1/leads", l2, "Idempotency-Key", "cms-form-1"); c.status != 409 {
		t.Errorf("key reused with another body: got %d %s", c.status, c.raw)
	}
	if got := pending(in); got != 2 {
		t.Errorf("pending tasks after duplicate and replay: got %d, want 2", got)
	}

	// Each kind of invalid input.
	for _, tc := range []struct {
		name   string
		body   any
		hdr    []string
		status int
	}{
		{"malformed json", `{"first_name":`, nil, 400},
		{"wrong content type", `{}`, []string{"Content-Type", "text/plain"}, 415},
		{"too large", `{"message":"` + strings.Repeat("x", 70<<10) + `"}`, nil, 413},
		{"invalid fields", map[string]any{"email": "nope", "consent": map[string]any{"privacy": false}}, nil, 422},
		{"unknown field", func() map[string]any { m := lead(); m["dni"] = "123"; return m }(), nil, 422},
		{"no token", lead(), []string{"Authorization", ""}, 401},
		{"bad token", lead(), []string{"Authorization", "Bearer nope-nope-nope-nope-nope"}, 401},
		{"missing scope", lead(), []string{"Authorization", "Bearer viewer-token-0123456789"}, 403},
	} {
		got := p.do(t, "POST", "/v1/leads", tc.body, tc.hdr...)
		if got.status != tc.status || got.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: got %d %s (%s), want %d problem+json", tc.name, got.status, got.header.Get("Content-Type"), got.raw, tc.status)
		}
	}
	if got := pending(in); got != 2 {
		t.Errorf("pending tasks after bad input: got %d, want 2", got)
	}

	// Dashboard behind basic auth.
	for _, tc := range []struct {
		user, pass string
		want       int
	}{{"", "", 401}, {"ops", "wrong", 401}, {"ops", dashPass, 200}} {
		req, _ := http.NewRequest("GET", p.base+"/monitoring/api/queues", nil)
		if tc.user != "" {
			req.SetBasicAuth(tc.user, tc.pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("dashboard as %q/%q: got %d, want %d", tc.user, tc.pass, resp.StatusCode, tc.want)
		}
		if tc.want == 200 && !strings.Contains(string(body), `"queue":"critical"`) {
			t.Errorf("dashboard queues: got %s, want the critical queue", body)
		}
	}

	// Nothing personal in the log.
	for _, pii := range []string{"ana.e2e", "+34600111222", "203.0.113.7", "García", token, dashPass} {
		if strings.Contains(p.Logs.String(), pii) {
			t.Errorf("log contains %q", pii)
		}
	}
}

// TestRedisDownLosesNothing stops Redis under a running intake: leads are
// still accepted, and all of them are queued once Redis is back.
func TestRedisDownLosesNothing(t *testing.T) {
	port := testenv.FreePort(t)
	redis := startRedis(t, port)
	redisURL := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	p := start(t, redisURL)
	in := inspector(t, redisURL)

	if r := p.do(t, "POST", "/v1/leads", lead()); r.status != 202 {
		t.Fatalf("with redis up: got %d %s", r.status, r.raw)
	}
	redis.stop(t)

	const n = 20
	for i := range n {
		r := p.do(t, "POST", "/v1/leads", lead())
		if r.status != 202 {
			t.Fatalf("lead %d with redis down: got %d %s, want 202", i, r.status, r.raw)
		}
	}
	if r := p.do(t, "GET", "/readyz", nil); r.status != 503 {
		t.Errorf("readyz with redis down: got %d, want 503", r.status)
	}

	startRedis(t, port) // same port, empty: the first lead's task is gone with the old process
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("%d relayed tasks", n), func() bool { return pending(in) == n })
	// And no more than that, later either.
	time.Sleep(500 * time.Millisecond)
	if got := pending(in); got != n {
		t.Errorf("pending tasks: got %d, want exactly %d", got, n)
	}
	if r := p.do(t, "GET", "/readyz", nil); r.status != 200 {
		t.Errorf("readyz with redis back: got %d", r.status)
	}
}

type redisProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startRedis(t *testing.T, port int) *redisProc {
	t.Helper()
	cmd := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server (install redis-server): %v", err)
	}
	r := &redisProc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(r.done) }()
	t.Cleanup(func() { r.stop(t) })
	opt, _ := redisconn.Parse(fmt.Sprintf("redis://127.0.0.1:%d/0", port))
	c := redisconn.Client(opt)
	defer c.Close()
	testenv.Eventually(t, 10*time.Second, "private redis", func() bool {
		return c.Ping(context.Background()).Err() == nil
	})
	return r
}

func (r *redisProc) stop(t *testing.T) {
	select {
	case <-r.done:
		return
	default:
	}
	_ = r.cmd.Process.Kill()
	<-r.done
}

// TestSIGTERMFinishesInFlightRequests sends SIGTERM while a request is
// waiting on a slow hCaptcha: the request completes, new connections are
// refused, and the process exits 0 well within the shutdown timeout.
func TestSIGTERMFinishesInFlightRequests(t *testing.T) {
	entered := make(chan struct{}, 1)
	siteverify := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		time.Sleep(1500 * time.Millisecond)
		fmt.Fprint(w, `{"success":true}`)
	}))
	defer siteverify.Close()
	redisURL := testenv.RedisURL(t, testenv.RedisDBIntake)
	p := start(t, redisURL, "HCAPTCHA_SECRET=0x-e2e", "HCAPTCHA_VERIFY_URL="+siteverify.URL)

	result := make(chan reply, 1)
	go func() { result <- p.do(t, "POST", "/v1/leads", lead()) }()
	<-entered
	start := time.Now()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-result
	if r.status != 202 {
		t.Errorf("in-flight request: got %d %s, want 202", r.status, r.raw)
	}
	if err, done := p.Wait(10 * time.Second); !done {
		t.Fatal("intake did not exit within 10 s of SIGTERM")
	} else if err != nil {
		t.Errorf("exit: got %v, want status 0", err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("shutdown took %s", d)
	}
	if _, err := http.Get(p.base + "/healthz"); err == nil {
		t.Error("still accepting connections after exit")
	}
	sc := bufio.NewScanner(strings.NewReader(p.Logs.String()))
	var sawStop bool
	for sc.Scan() {
		sawStop = sawStop || strings.Contains(sc.Text(), "intake stopped")
	}
	if !sawStop {
		t.Error("log lacks the intake stopped line")
	}
}
