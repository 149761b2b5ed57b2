package api_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// The credentials that the browser types into the basic auth prompt.
const (
	browserUser = dashUser
	browserPass = dashPass
)

// Time limits of TestDashboardInBrowser. The steps share one budget, so the
// test ends within about browserHardLimit even when Chromium hangs: at that
// point the browser process is killed.
const (
	browserStartTimeout = 15 * time.Second
	browserStepBudget   = 32 * time.Second // every step after the start
	dashboardTimeout    = 30 * time.Second // navigation and render, inside the budget
	browserHardLimit    = 40 * time.Second
	browserDumpTimeout  = 3 * time.Second
)

// TestDashboardInBrowser loads the asynqmon dashboard in a real headless
// Chromium, logs in through the HTTP basic auth challenge as a person would,
// and waits until the React app shows our queue. It catches what the plain
// HTTP test cannot: static assets or API calls that miss the /monitoring
// prefix, or a credential that the browser does not send on the app's own
// requests.
func TestDashboardInBrowser(t *testing.T) {
	chromium := findChromium(t)
	b := setup(t)
	if r := b.do(t, "POST", "/v1/leads", writer, validLead()); r.status != http.StatusAccepted {
		t.Fatalf("post lead: got %d %s, want 202", r.status, r.raw)
	}
	origin := b.srv.URL
	dashURL := origin + "/monitoring/"

	began := time.Now()
	browserCtx, output := startChromium(t, chromium)
	t.Logf("chromium %s started in %v", chromium, time.Since(began).Round(time.Millisecond))
	defer func() {
		if t.Failed() {
			t.Logf("chromium output (tail, without the D-Bus noise of a machine with no bus):\n%s", lastChars(withoutDBus(output.String()), 4000))
		}
	}()
	deadline := time.Now().Add(browserStepBudget)
	step := func(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
		if end := time.Now().Add(d); end.Before(deadline) {
			return context.WithDeadline(parent, end)
		}
		return context.WithDeadline(parent, deadline)
	}

	// Without credentials the browser gets a 401 and its challenge. The tab
	// has its own browser context, so nothing is cached between the two tabs.
	t0 := time.Now()
	anon, cancelAnon := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	defer cancelAnon()
	anonFetch, err := interceptFetch(anon, origin, func(int) fetch.AuthChallengeResponse {
		return fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseCancelAuth}
	})
	if err != nil {
		t.Fatalf("intercept the anonymous tab: %v", err)
	}
	ctx, cancel := step(anon, 10*time.Second)
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(dashURL))
	if err != nil {
		cancel()
		t.Fatalf("open %s without credentials: %v", dashURL, err)
	}
	anonText, err := chromedp.Run(ctx, chromedp.Evaluate[string](pageTextJS))
	cancel()
	if err != nil {
		t.Fatalf("read the page without credentials: %v", err)
	}
	if resp.Status != http.StatusUnauthorized {
		t.Errorf("without credentials: got status %d, want 401", resp.Status)
	}
	if strings.Contains(anonText, "critical") || !strings.Contains(anonText, "dashboard credentials required") {
		t.Errorf("without credentials the page shows %q, want the 401 problem and no queue", lastChars(anonText, 500))
	}
	if ch := anonFetch.challengeList(); len(ch) == 0 || !strings.Contains(strings.ToLower(ch[0]), `basic realm="cepjobs dashboard"`) {
		t.Errorf("without credentials: auth challenges %q, want one Basic challenge for realm \"cepjobs dashboard\"", ch)
	}
	cancelAnon()
	anonFetch.wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("without credentials: 401 and a Basic challenge, in %v", time.Since(t0).Round(time.Millisecond))

	// Log in: the tab answers the challenge with the credentials, through the
	// Fetch domain, as a person answers the browser's prompt. A wrong password
	// makes the server ask again, so give up after a few rounds.
	t0 = time.Now()
	tab, cancelTab := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	defer cancelTab()
	nl := &netLog{origin: origin, urls: map[network.RequestID]string{}}
	if err := chromedp.Listen(tab, nl.listen); err != nil {
		t.Fatalf("listen to the tab: %v", err)
	}
	login, err := interceptFetch(tab, origin, func(n int) fetch.AuthChallengeResponse {
		if n > 3 {
			return fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseCancelAuth}
		}
		return fetch.AuthChallengeResponse{
			Response: fetch.AuthChallengeResponseResponseProvideCredentials,
			Username: browserUser, Password: browserPass,
		}
	})
	if err != nil {
		t.Fatalf("intercept the tab: %v", err)
	}
	defer func() {
		// The handlers end with the tab.
		cancelTab()
		login.wait()
	}()
	defer func() {
		if t.Failed() {
			dumpPage(t, tab, nl, login)
		}
	}()

	ctx, cancel = step(tab, dashboardTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(dashURL)); err != nil {
		t.Fatalf("open %s: %v", dashURL, err)
	}
	// Wait for the queue name in the rendered text: it is there once the
	// bundle under /monitoring/static ran and /monitoring/api/queues answered.
	// Stop early when a request of ours failed: the page will not recover.
	var text string
	for {
		var err error
		text, err = chromedp.Run(ctx, chromedp.Evaluate[string](pageTextJS))
		if err == nil && strings.Contains(text, "critical") {
			break
		}
		if bad := nl.bad(); len(bad) > 0 {
			t.Fatalf("the dashboard did not render, and requests of the page failed (wrong credentials or a bad asset path?):\n  %s",
				strings.Join(bad, "\n  "))
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the dashboard did not show the queue \"critical\" within %v (last error: %v); page text:\n%s",
				time.Since(t0).Round(time.Millisecond), err, lastChars(text, 2000))
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Logf("dashboard rendered the queue \"critical\" in %v", time.Since(t0).Round(time.Millisecond))

	if bad := nl.bad(); len(bad) > 0 {
		t.Errorf("requests of the page failed after the login:\n  %s", strings.Join(bad, "\n  "))
	}
	queues, scripts := false, 0
	for _, r := range nl.responseList() {
		switch {
		case strings.HasPrefix(r.url, origin+"/monitoring/api/queues") && r.status == http.StatusOK:
			queues = true
		case r.kind == network.ResourceTypeScript && strings.HasPrefix(r.url, origin+"/monitoring/static/js/"):
			if r.status != http.StatusOK || !strings.Contains(r.mime, "javascript") {
				t.Errorf("script %s: got %d %s, want 200 JavaScript", r.url, r.status, r.mime)
			}
			scripts++
		}
	}
	if !queues {
		t.Error("the page never got 200 from /monitoring/api/queues")
	}
	if scripts == 0 {
		t.Error("the page loaded no script from /monitoring/static/js/")
	}
	if n := len(login.challengeList()); n == 0 {
		t.Error("the browser got no auth challenge: the login did not go through basic auth")
	} else {
		var sb strings.Builder
		for _, r := range nl.responseList() {
			fmt.Fprintf(&sb, "\n  %d %s %s", r.status, r.kind, strings.TrimPrefix(r.url, origin))
		}
		t.Logf("login: %d auth challenge(s) answered, %d outside request(s) blocked (%s); responses:%s",
			n, len(login.blockedList()), strings.Join(login.blockedList(), ", "), sb.String())
	}
}

// pageTextJS is the text that the page shows, as the user sees it.
const pageTextJS = `document.body ? document.body.innerText : ""`

// findChromium returns the browser to run: $CHROMIUM, /usr/bin/chromium, or
// the first of chromium, chromium-browser and google-chrome on PATH. Without
// one the test fails: CI must run it.
func findChromium(t *testing.T) string {
	t.Helper()
	const how = "install it with `apt-get install -y chromium` (or run scripts/ensure-chromium.sh), or set CHROMIUM to a Chromium or Chrome binary"
	if p := os.Getenv("CHROMIUM"); p != "" {
		path, err := exec.LookPath(p)
		if err != nil {
			t.Fatalf("CHROMIUM=%s is not an executable (%v): %s", p, err, how)
		}
		return path
	}
	if fi, err := os.Stat("/usr/bin/chromium"); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	t.Fatalf("TestDashboardInBrowser needs Chromium, and none was found (CHROMIUM, /usr/bin/chromium, chromium, chromium-browser, google-chrome on PATH): %s", how)
	return ""
}

// startChromium starts a headless Chromium with a fresh profile and returns
// its context and its output. The browser closes when the test ends, and is
// killed at browserHardLimit at the latest.
func startChromium(t *testing.T, path string) (context.Context, *chromiumOutput) {
	t.Helper()
	profile := t.TempDir()
	output := &chromiumOutput{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
		// The machine has no outside network: Chromium must not try to
		// reach Google in the background.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
		chromedp.CombinedOutput(output),
	)
	hard, cancelHard := context.WithTimeout(context.Background(), browserHardLimit)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(hard, opts...)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		// Close gracefully, then make sure: the allocator's cancel waits for
		// the process, and any child left over is killed before the profile
		// directory goes away.
		ctx, cancel := context.WithTimeout(browserCtx, 5*time.Second)
		if err := chromedp.Cancel(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			t.Logf("close chromium: %v", err)
		}
		cancel()
		cancelBrowser()
		cancelAlloc()
		cancelHard()
		if n := killChromiumLeftovers(profile); n > 0 {
			t.Logf("killed %d chromium process(es) left over after the browser closed", n)
		}
	})

	// The first Do starts the browser and ties its life to browserCtx, so it
	// cannot take a timeout context: a timer kills the start instead.
	timer := time.AfterFunc(browserStartTimeout, cancelAlloc)
	err := chromedp.Do(browserCtx)
	if !timer.Stop() {
		t.Fatalf("chromium did not start within %v (%v); output:\n%s", browserStartTimeout, err, lastChars(output.String(), 4000))
	}
	if err != nil {
		t.Fatalf("start chromium %s: %v; output:\n%s", path, err, lastChars(output.String(), 4000))
	}
	return browserCtx, output
}

// killChromiumLeftovers kills the processes that run with the user data directory
// dir, and returns how many it found. Chromium passes --user-data-dir to all
// its children. It only looks on Linux, through /proc.
func killChromiumLeftovers(dir string) int {
	if runtime.GOOS != "linux" {
		return 0
	}
	want := []byte("--user-data-dir=" + dir + "\x00")
	n := 0
	for range 3 {
		found := 0
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err != nil || !bytes.Contains(cmdline, want) {
				continue
			}
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				found++
			}
		}
		if found == 0 {
			break
		}
		n += found
		time.Sleep(50 * time.Millisecond)
	}
	return n
}

// fetchLog answers the Fetch domain of a tab. Requests to the test server go
// on; any other request fails at once, because the machine has no outside
// network and asynqmon's index.html links Google Fonts. Each HTTP auth
// challenge gets answer(n), with n counting the challenges from 1.
type fetchLog struct {
	mu         sync.Mutex
	challenges []string
	blocked    []string
	errs       []string
	wg         sync.WaitGroup
}

func interceptFetch(tab context.Context, origin string, answer func(n int) fetch.AuthChallengeResponse) (*fetchLog, error) {
	l := &fetchLog{}
	// Subscribe before Fetch.enable, so no paused request is missed.
	paused := chromedp.Events(tab, fetch.RequestPaused)
	auth := chromedp.Events(tab, fetch.AuthRequired)
	l.wg.Go(func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			var cerr error
			if sameOrigin(ev.Request.URL, origin) {
				_, cerr = chromedp.Call(tab, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
			} else {
				l.add(&l.blocked, ev.Request.URL)
				_, cerr = chromedp.Call(tab, fetch.FailRequest, fetch.FailRequestParams{
					RequestID: ev.RequestID, ErrorReason: network.ErrorReasonBlockedByClient,
				})
			}
			if cerr != nil && tab.Err() == nil {
				l.add(&l.errs, fmt.Sprintf("answer paused request %s: %v", ev.Request.URL, cerr))
			}
		}
	})
	l.wg.Go(func() {
		for ev, err := range auth {
			if err != nil {
				return
			}
			c := ev.AuthChallenge
			n := l.add(&l.challenges, fmt.Sprintf("%s %s realm=%q for %s", c.Source, c.Scheme, c.Realm, ev.Request.URL))
			res := answer(n)
			if !sameOrigin(ev.Request.URL, origin) {
				res = fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseCancelAuth}
			}
			_, cerr := chromedp.Call(tab, fetch.ContinueWithAuth, fetch.ContinueWithAuthParams{
				RequestID: ev.RequestID, AuthChallengeResponse: &res,
			})
			if cerr != nil && tab.Err() == nil {
				l.add(&l.errs, fmt.Sprintf("answer auth challenge for %s: %v", ev.Request.URL, cerr))
			}
		}
	})
	_, err := chromedp.Call(tab, fetch.Enable, fetch.EnableParams{HandleAuthRequests: new(true)})
	return l, err
}

func (l *fetchLog) add(list *[]string, s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	*list = append(*list, s)
	return len(*list)
}

func (l *fetchLog) challengeList() []string { return l.list(&l.challenges) }
func (l *fetchLog) blockedList() []string   { return l.list(&l.blocked) }
func (l *fetchLog) errList() []string       { return l.list(&l.errs) }

func (l *fetchLog) list(list *[]string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), *list...)
}

// wait waits for the handlers, which end when the tab's context ends.
func (l *fetchLog) wait() { l.wg.Wait() }

// netLog records what the tab loads. Its listen func runs in the loop of the
// tab, in order, so it only records.
type netLog struct {
	origin     string
	mu         sync.Mutex
	urls       map[network.RequestID]string
	responses  []netResponse
	failures   []string
	exceptions []string
}

type netResponse struct {
	url    string
	status int64
	mime   string
	kind   network.ResourceType
}

func (l *netLog) listen(ev any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		l.urls[ev.RequestID] = ev.Request.URL
	case *network.EventResponseReceived:
		l.responses = append(l.responses, netResponse{url: ev.Response.URL, status: ev.Response.Status, mime: ev.Response.MimeType, kind: ev.Type})
	case *network.EventLoadingFailed:
		if url := l.urls[ev.RequestID]; sameOrigin(url, l.origin) && !ev.Canceled {
			l.failures = append(l.failures, fmt.Sprintf("%s %s: %s %s", ev.Type, url, ev.ErrorText, ev.BlockedReason))
		}
	case *cdpruntime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			msg += " " + d.Exception.Description
		}
		l.exceptions = append(l.exceptions, fmt.Sprintf("%s:%d: %s", d.URL, d.LineNumber+1, msg))
	}
}

// bad lists the requests to the test server that got 4xx or 5xx, or failed.
func (l *netLog) bad() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.responses {
		// The browser asks for /favicon.ico on its own when a page, such
		// as the 401 problem, names no icon: that one is not the app's.
		if sameOrigin(r.url, l.origin) && r.status >= 400 && r.url != l.origin+"/favicon.ico" {
			out = append(out, fmt.Sprintf("%s %s: %d", r.kind, r.url, r.status))
		}
	}
	return append(out, l.failures...)
}

func (l *netLog) responseList() []netResponse {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]netResponse(nil), l.responses...)
}

func (l *netLog) exceptionList() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.exceptions...)
}

func sameOrigin(url, origin string) bool {
	return url == origin || strings.HasPrefix(url, origin+"/")
}

// dumpPage logs what the tab shows, what it loaded and a screenshot path,
// for a failed test. The screenshot goes to a directory that outlives the
// test: a t.TempDir is removed when the test ends.
func dumpPage(t *testing.T, tab context.Context, nl *netLog, fl *fetchLog) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, browserDumpTimeout)
	defer cancel()
	if loc, err := chromedp.Run(ctx, chromedp.Location()); err == nil {
		t.Logf("page location: %s", loc)
	}
	if text, err := chromedp.Run(ctx, chromedp.Evaluate[string](pageTextJS)); err == nil {
		t.Logf("page text:\n%s", lastChars(text, 4000))
	} else {
		t.Logf("page text: %v", err)
	}
	var sb strings.Builder
	for _, r := range nl.responseList() {
		fmt.Fprintf(&sb, "\n  %d %s %s (%s)", r.status, r.kind, r.url, r.mime)
	}
	t.Logf("responses:%s", sb.String())
	if ex := nl.exceptionList(); len(ex) > 0 {
		t.Logf("JavaScript exceptions:\n  %s", strings.Join(ex, "\n  "))
	}
	t.Logf("auth challenges: %q; blocked outside requests: %q; fetch errors: %q", fl.challengeList(), fl.blockedList(), fl.errList())
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Logf("screenshot: %v", err)
		return
	}
	dir, err := os.MkdirTemp("", "cepjobs-dashboard-browser-")
	if err == nil {
		path := filepath.Join(dir, "dashboard.png")
		if err = os.WriteFile(path, png, 0o644); err == nil {
			t.Logf("screenshot: %s", path)
			return
		}
	}
	t.Logf("screenshot: %v", err)
}

func withoutDBus(s string) string {
	var out []string
	for line := range strings.Lines(s) {
		if !strings.Contains(line, ":ERROR:dbus/") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}

func lastChars(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

type chromiumOutput struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *chromiumOutput) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *chromiumOutput) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
