package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/testenv"
)

var dbURL string

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithDatabase(m, "cli", &dbURL, nil))
}

func runCLI(t *testing.T, stdin string, environ []string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), append([]string{"cepjobs"}, args...), environ, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), err
}

func TestConfigPrintsRedacted(t *testing.T) {
	out, _, err := runCLI(t, "", []string{
		"DATABASE_URL=postgres://app:hunter2@db/cep", "CEPJOBS_API_TOKENS=cms:0123456789abcdef0:leads:write",
		"HCAPTCHA_SECRET=0xsecret",
	}, "config")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DATABASE_URL", "postgres://app:xxxxx@db/cep", "cms:xxxxx:leads:write", "CEPJOBS_HTTP_ADDR", ":8080", "default"} {
		if !strings.Contains(out, want) {
			t.Errorf("config output lacks %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{"hunter2", "0123456789abcdef0", "0xsecret"} {
		if strings.Contains(out, secret) {
			t.Errorf("config output shows %q", secret)
		}
	}
}

func TestConfigListsEveryProblem(t *testing.T) {
	out, _, err := runCLI(t, "", []string{"CEPJOBS_HTTP_ADR=:9090", "REDIS_URL=nope", "CEPJOBS_RATE_LIMIT=-1"}, "config")
	if err == nil {
		t.Fatal("invalid config: got nil error")
	}
	for _, want := range []string{"3 problems", "CEPJOBS_HTTP_ADR: unknown variable (did you mean CEPJOBS_HTTP_ADDR?)", "REDIS_URL:", "CEPJOBS_RATE_LIMIT:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if !strings.Contains(out, "VARIABLE") {
		t.Error("config still prints the table when invalid")
	}
}

func TestUnknownCommand(t *testing.T) {
	_, stderr, err := runCLI(t, "", nil, "frobnicate")
	var ee exitError
	if !errors.As(err, &ee) || ee != 2 || !strings.Contains(stderr, "unknown command") || !strings.Contains(stderr, "usage:") {
		t.Errorf("got %v, stderr %q", err, stderr)
	}
}

func TestHashPassword(t *testing.T) {
	out, _, err := runCLI(t, "a long enough password\n", nil, "hash-password")
	if err != nil || !strings.HasPrefix(out, "$2a$") {
		t.Fatalf("got %q, %v", out, err)
	}
	if _, _, err := runCLI(t, "short\n", nil, "hash-password"); err == nil {
		t.Error("short password: got nil error")
	}
	// The hash works as configuration.
	if _, _, err := runCLI(t, "", []string{"CEPJOBS_DASHBOARD_USER=ops", "CEPJOBS_DASHBOARD_PASSWORD_HASH=" + strings.TrimSpace(out)}, "config"); err != nil {
		t.Errorf("config with the printed hash: %v", err)
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	env := []string{"DATABASE_URL=" + dbURL}
	out, _, err := runCLI(t, "", env, "migrate")
	if err != nil || !strings.Contains(out, "migrated from version") && !strings.Contains(out, "already at version") {
		t.Fatalf("first migrate: %q, %v", out, err)
	}
	out, _, err = runCLI(t, "", env, "migrate")
	if err != nil || !strings.Contains(out, "already at version") {
		t.Fatalf("second migrate: %q, %v", out, err)
	}
}

func TestDevRunsTheFleet(t *testing.T) {
	redisURL := testenv.RedisURL(t, testenv.RedisDBCLI)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"cepjobs", "dev", "-dir", t.TempDir()},
			[]string{"REDIS_URL=" + redisURL, "DATABASE_URL=" + dbURL, "CEPJOBS_HTTP_ADDR=127.0.0.1:0"},
			strings.NewReader(""), pw, &stderr)
		pw.Close()
	}()

	// Read the banner for the URLs and the generated credentials.
	var api, token, user, pass string
	sc := bufio.NewScanner(pr)
	tokenRE := regexp.MustCompile(`API token .*:\s+(\S+)`)
	loginRE := regexp.MustCompile(`dashboard login .*:\s+(\S+) / (\S+)`)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 2 && f[0] == "API" {
			api = strings.TrimSuffix(f[1], "/v1/leads")
		}
		if m := tokenRE.FindStringSubmatch(line); m != nil {
			token = m[1]
		}
		if m := loginRE.FindStringSubmatch(line); m != nil {
			user, pass = m[1], m[2]
		}
		if strings.Contains(line, "worker-llm") {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if api == "" || token == "" || user == "" || pass == "" {
		t.Fatalf("banner incomplete: api %q token %q login %q/%q\nstderr: %s", api, token, user, pass, stderr.String())
	}

	body := `{"first_name":"Ana","email":"dev.test@example.com","course":"tecnico-marketing-digital","source":"web-form","consent":{"privacy":true,"text_version":"2026-01"}}`
	req, _ := http.NewRequest("POST", api+"/v1/leads", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if resp.StatusCode != 202 && resp.StatusCode != 200 {
		t.Fatalf("POST lead with the printed token: got %d %v", resp.StatusCode, got)
	}
	// No vendor credentials: the automation worker in the same process
	// settles the lead with every channel skipped.
	var final map[string]any
	testenv.Eventually(t, 20*time.Second, "lead completed", func() bool {
		req, _ := http.NewRequest("GET", api+"/v1/leads/"+got["id"].(string), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		final = nil
		_ = json.NewDecoder(resp.Body).Decode(&final)
		return final["status"] == "completed"
	})
	ds, _ := final["deliveries"].([]any)
	for _, d := range ds {
		if m := d.(map[string]any); m["status"] != "skipped" || m["reason"] == "" {
			t.Errorf("delivery without credentials: got %v, want skipped with a reason", m)
		}
	}
	if len(ds) != 4 {
		t.Errorf("deliveries: got %d, want 4", len(ds))
	}

	req, _ = http.NewRequest("GET", api+"/monitoring/api/queues", nil)
	req.SetBasicAuth(user, pass)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("dashboard with the printed login: got %d", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("dev after cancel: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("dev did not stop within 20 s of cancel")
	}
	if strings.Contains(stderr.String(), pass) || strings.Contains(stderr.String(), token) {
		t.Error("the log shows the generated credentials (they belong on stdout only)")
	}
}
