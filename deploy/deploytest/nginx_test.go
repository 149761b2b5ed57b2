package deploytest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cepcomunicacion/cepjobs/internal/testenv"
)

// findNginx returns the nginx binary. `make test` and .ci/run install it
// (scripts/ensure-nginx.sh); without it the tests fail saying so.
func findNginx(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("nginx is not installed: run scripts/ensure-nginx.sh (Debian: apt-get install nginx)")
	return ""
}

// nginxSite is an nginx.conf that includes deploy/nginx as the platform
// would (mounted as cepjobs/ beside it), with the two files a deployment
// writes itself replaced: where the intake is, and who may see /monitoring.
// A nil override keeps the shipped file.
type nginxSite struct {
	upstream *string // cepjobs-upstream.conf
	allow    *string // monitoring-allow.conf
}

func (s nginxSite) write(t *testing.T, port int) (dir string) {
	t.Helper()
	dir = t.TempDir()
	inc := filepath.Join(dir, "cepjobs")
	if err := os.MkdirAll(inc, 0o755); err != nil {
		t.Fatal(err)
	}
	shipped, err := filepath.Glob(filepath.Join(root, "deploy/nginx/*.conf"))
	if err != nil || len(shipped) == 0 {
		t.Fatalf("no deploy/nginx/*.conf: %v", err)
	}
	for _, f := range shipped {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		switch filepath.Base(f) {
		case "cepjobs-upstream.conf":
			if s.upstream != nil {
				b = []byte(*s.upstream)
			}
		case "monitoring-allow.conf":
			if s.allow != nil {
				b = []byte(*s.allow)
			}
		}
		if err := os.WriteFile(filepath.Join(inc, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log stderr notice;
events { worker_connections 64; }
http {
    access_log off;
    default_type text/plain;
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    include cepjobs/cepjobs-http.conf;
    server {
        listen 127.0.0.1:%[3]d;
        server_name localhost;
        include cepjobs/cepjobs.conf;
    }
}
`, dir, tmp, port)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func nginxTest(t *testing.T, nginx, dir string) {
	t.Helper()
	out, err := exec.Command(nginx, "-t", "-e", "stderr", "-p", dir, "-c", filepath.Join(dir, "nginx.conf")).CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
}

// startNginx runs nginx in the foreground as one process (no master, no
// workers changing user) and stops it when the test ends.
func startNginx(t *testing.T, nginx, dir string, port int) string {
	t.Helper()
	nginxTest(t, nginx, dir)
	cmd := exec.Command(nginx, "-e", "stderr", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	logs := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("nginx log:\n%s", logs.String())
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	testenv.Eventually(t, 10*time.Second, "nginx listening", func() bool {
		select {
		case <-done:
			t.Fatalf("nginx exited:\n%s", logs.String())
		default:
		}
		resp, err := http.Get(base + "/nothing-here")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	return base
}

// startRedis runs a private redis-server: every Redis DB index of the
// shared test server already belongs to another package.
func startRedis(t *testing.T) string {
	t.Helper()
	port := testenv.FreePort(t)
	cmd := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server (install redis-server): %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	defer c.Close()
	testenv.Eventually(t, 10*time.Second, "private redis", func() bool { return c.Ping(context.Background()).Err() == nil })
	return fmt.Sprintf("redis://127.0.0.1:%d/0", port)
}

// startIntake builds and runs the real intake binary.
func startIntake(t *testing.T) (addr string) {
	t.Helper()
	bins, err := testenv.BuildBinaries(t.TempDir(), "intake")
	if err != nil {
		t.Fatal(err)
	}
	dbURL, drop, err := testenv.CreateDatabase(context.Background(), "deploy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	port := testenv.FreePort(t)
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	p := testenv.StartProc(t, "intake", bins["intake"], []string{
		"REDIS_URL=" + startRedis(t),
		"DATABASE_URL=" + dbURL,
		"CEPJOBS_HTTP_ADDR=" + addr,
		"CEPJOBS_API_TOKENS=cms:" + testAPIToken + ":leads:write|leads:read",
		"CEPJOBS_DASHBOARD_USER=ops",
		"CEPJOBS_DASHBOARD_PASSWORD_HASH=" + testDashHash(t),
		"CEPJOBS_LOG_LEVEL=warn",
	})
	p.WaitHTTP(t, "http://"+addr+"/readyz", 60*time.Second)
	return addr
}

type answer struct {
	status int
	header http.Header
	body   string
}

var client = &http.Client{
	Timeout:       20 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func do(t *testing.T, method, url string, body []byte, hdr ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+testAPIToken)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func leadBody(t *testing.T, email string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"external_id": "cms-deploytest", "first_name": "Ana", "last_name": "García",
		"email": email, "phone": "+34600111222", "course": "tecnico-marketing-digital",
		"source": "web-form",
		"consent": map[string]any{"privacy": true, "marketing": false, "text_version": "2026-01",
			"accepted_at": "2026-11-27T10:00:00Z"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// securityHeaders checks the platform's set on any answer, the intake's or
// nginx's own.
func securityHeaders(t *testing.T, what string, a answer, csp string) {
	t.Helper()
	want := map[string]string{
		"Strict-Transport-Security": "max-age=31536000",
		"X-Content-Type-Options":    "nosniff",
		"X-Frame-Options":           "DENY",
		"Referrer-Policy":           "no-referrer",
	}
	for k, v := range want {
		if got := a.header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s: header %s: got %q, want exactly [%s]", what, k, got, v)
		}
	}
	if csp != "" && !strings.Contains(a.header.Get("Content-Security-Policy"), csp) {
		t.Errorf("%s: Content-Security-Policy %q, want it to contain %q", what, a.header.Get("Content-Security-Policy"), csp)
	}
}

func problemStatus(t *testing.T, what string, a answer, status int) {
	t.Helper()
	if a.status != status {
		t.Fatalf("%s: got %d %s, want %d", what, a.status, a.body, status)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s: Content-Type %q, want application/problem+json", what, ct)
	}
	var p struct {
		Status    int    `json:"status"`
		Title     string `json:"title"`
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal([]byte(a.body), &p); err != nil || p.Status != status || p.Title == "" || p.RequestID == "" {
		t.Errorf("%s: body %q (%v), want a problem with status %d, a title and a request_id", what, a.body, err, status)
	}
}

// TestNginxShippedConfig: the files as shipped (the intake at intake:8080,
// nobody allowed on /monitoring) pass nginx -t.
func TestNginxShippedConfig(t *testing.T) {
	t.Parallel()
	nginx := findNginx(t)
	dir := nginxSite{}.write(t, testenv.FreePort(t))
	nginxTest(t, nginx, dir)
	if allow := readFile(t, "deploy/nginx/monitoring-allow.conf"); regexp.MustCompile(`(?m)^\s*allow\s`).MatchString(allow) {
		t.Errorf("deploy/nginx/monitoring-allow.conf allows someone as shipped; it must start closed:\n%s", allow)
	}
	conf := readFile(t, "deploy/nginx/cepjobs.conf")
	if !regexp.MustCompile(`include cepjobs/monitoring-allow\.conf;\s*deny all;`).MatchString(conf) {
		t.Error("cepjobs.conf: /monitoring must include the allow-list and then deny all")
	}
}

// TestNginxInFrontOfIntake runs a real nginx with deploy/nginx in front of
// a real intake (and then in front of nothing), and drives it over HTTP.
func TestNginxInFrontOfIntake(t *testing.T) {
	t.Parallel()
	nginx := findNginx(t)
	intake := startIntake(t)

	upstream := "map $host $cepjobs_intake { default " + intake + "; }\n"
	allowLoopback := "allow 127.0.0.1;\n"
	port := testenv.FreePort(t)
	base := startNginx(t, nginx, nginxSite{upstream: &upstream, allow: &allowLoopback}.write(t, port), port)

	t.Run("lead accepted with the caller's request id", func(t *testing.T) {
		a := do(t, "POST", base+"/v1/leads", leadBody(t, "ana.nginx.1@example.com"), "X-Request-Id", "cms-form-42.a_b")
		if a.status != http.StatusAccepted {
			t.Fatalf("POST /v1/leads through nginx: got %d %s, want 202", a.status, a.body)
		}
		if got := a.header.Get("X-Request-Id"); got != "cms-form-42.a_b" {
			t.Errorf("X-Request-Id echoed by the intake: got %q, want the caller's", got)
		}
		securityHeaders(t, "202", a, "default-src 'none'")
		var lead struct{ ID string }
		_ = json.Unmarshal([]byte(a.body), &lead)
		if g := do(t, "GET", base+"/v1/leads/"+lead.ID, nil); g.status != http.StatusOK {
			t.Errorf("GET /v1/leads/%s through nginx: got %d %s", lead.ID, g.status, g.body)
		}
	})

	t.Run("request id made by nginx reaches the intake", func(t *testing.T) {
		for _, sent := range []string{"", "bad id with spaces"} {
			a := do(t, "POST", base+"/v1/leads", leadBody(t, fmt.Sprintf("ana.nginx.%d@example.com", len(sent)+2)), "X-Request-Id", sent)
			if a.status != http.StatusAccepted {
				t.Fatalf("POST: got %d %s", a.status, a.body)
			}
			if got := a.header.Get("X-Request-Id"); !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(got) {
				t.Errorf("X-Request-Id %q sent: intake echoed %q, want nginx's $request_id (32 hex)", sent, got)
			}
		}
	})

	t.Run("70 KiB body refused by nginx", func(t *testing.T) {
		big := []byte(`{"message":"` + strings.Repeat("x", 70<<10) + `"}`)
		a := do(t, "POST", base+"/v1/leads", big, "X-Request-Id", "too-big-1")
		problemStatus(t, "70 KiB lead", a, http.StatusRequestEntityTooLarge)
		securityHeaders(t, "413", a, "")
		if !strings.Contains(a.body, `"request_id":"too-big-1"`) {
			t.Errorf("413 body %q lacks the request id", a.body)
		}
		// Webhooks take up to 1 MiB: the same body goes through to the intake.
		w := do(t, "POST", base+"/v1/webhooks/meta", big)
		if w.status == http.StatusRequestEntityTooLarge || w.status == http.StatusBadGateway || w.header.Get("X-Request-Id") == "" {
			t.Errorf("70 KiB webhook: got %d %s, want the intake's own answer", w.status, w.body)
		}
	})

	t.Run("dashboard from an allowed address", func(t *testing.T) {
		a := do(t, "GET", base+"/monitoring/", nil, "Authorization", "")
		if a.status != http.StatusUnauthorized || !strings.HasPrefix(a.header.Get("Www-Authenticate"), "Basic") {
			t.Fatalf("GET /monitoring/ without credentials: got %d %v, want the intake's 401 Basic challenge", a.status, a.header)
		}
		securityHeaders(t, "401", a, "default-src 'self'")
		r := do(t, "GET", base+"/monitoring", nil)
		if r.status != http.StatusMovedPermanently || !strings.HasSuffix(r.header.Get("Location"), "/monitoring/") {
			t.Errorf("GET /monitoring: got %d Location %q, want 301 to /monitoring/", r.status, r.header.Get("Location"))
		}
		auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:"+dashPassword))
		page := do(t, "GET", base+"/monitoring/", nil, "Authorization", auth)
		if page.status != http.StatusOK {
			t.Fatalf("GET /monitoring/ with credentials: got %d", page.status)
		}
		cspAllowsPage(t, page)
		api := do(t, "GET", base+"/monitoring/api/queues", nil, "Authorization", auth)
		if api.status != http.StatusOK {
			t.Errorf("dashboard API through nginx: got %d %s", api.status, api.body)
		}
	})

	// Second site: nobody but 192.0.2.1 on /monitoring, and the intake gone.
	allowOther := "allow 192.0.2.1;\n"
	dead := "map $host $cepjobs_intake { default 127.0.0.1:" + fmt.Sprint(testenv.FreePort(t)) + "; }\n"
	port2 := testenv.FreePort(t)
	base2 := startNginx(t, nginx, nginxSite{upstream: &dead, allow: &allowOther}.write(t, port2), port2)

	t.Run("dashboard from another address", func(t *testing.T) {
		auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:"+dashPassword))
		for _, path := range []string{"/monitoring/", "/monitoring", "/monitoring/api/queues"} {
			a := do(t, "GET", base2+path, nil, "Authorization", auth)
			if a.status != http.StatusForbidden {
				t.Errorf("GET %s from 127.0.0.1 (not allowed): got %d, want nginx's 403", path, a.status)
			}
		}
	})

	t.Run("intake down", func(t *testing.T) {
		a := do(t, "POST", base2+"/v1/leads", leadBody(t, "ana.nginx.down@example.com"), "X-Request-Id", "down-1")
		problemStatus(t, "intake down", a, http.StatusBadGateway)
		if a.header.Get("Retry-After") == "" {
			t.Error("502 without Retry-After")
		}
		securityHeaders(t, "502", a, "")
	})
}

var (
	scriptRE = regexp.MustCompile(`(?s)<script([^>]*)>(.*?)</script>`)
	srcRE    = regexp.MustCompile(`src="([^"]*)"`)
	styleRE  = regexp.MustCompile(`<link rel="stylesheet" href="([^"]*)"`)
)

// cspAllowsPage checks, without a browser, that the dashboard's
// Content-Security-Policy allows what its page loads: its inline scripts,
// its own script files, and its stylesheets' origins.
func cspAllowsPage(t *testing.T, page answer) {
	t.Helper()
	directives := map[string][]string{}
	for _, d := range strings.Split(page.header.Get("Content-Security-Policy"), ";") {
		f := strings.Fields(d)
		if len(f) > 0 {
			directives[f[0]] = f[1:]
		}
	}
	scriptSrc := directives["script-src"]
	if scriptSrc == nil {
		scriptSrc = directives["default-src"]
	}
	inline, files := 0, 0
	for _, m := range scriptRE.FindAllStringSubmatch(page.body, -1) {
		if src := srcRE.FindStringSubmatch(m[1]); src != nil {
			files++
			if !strings.HasPrefix(src[1], "/monitoring/") || !slices.Contains(scriptSrc, "'self'") {
				t.Errorf("script %s is not allowed by script-src %v", src[1], scriptSrc)
			}
			continue
		}
		inline++
		sum := sha256.Sum256([]byte(m[2]))
		hash := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
		if !slices.Contains(scriptSrc, "'unsafe-inline'") && !slices.Contains(scriptSrc, hash) {
			t.Errorf("inline script %.40q… is blocked by script-src %v (its hash is %s)", m[2], scriptSrc, hash)
		}
	}
	if inline == 0 || files == 0 {
		t.Errorf("dashboard page: %d inline and %d file scripts; the page is not what this check expects:\n%.500s", inline, files, page.body)
	}
	styleSrc := directives["style-src"]
	for _, m := range styleRE.FindAllStringSubmatch(page.body, -1) {
		href := m[1]
		if !strings.HasPrefix(href, "https://") {
			continue
		}
		origin := "https://" + strings.SplitN(strings.TrimPrefix(href, "https://"), "/", 2)[0]
		if !slices.Contains(styleSrc, origin) {
			t.Errorf("stylesheet %s is blocked by style-src %v", href, styleSrc)
		}
	}
}
