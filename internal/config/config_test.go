package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cepcomunicacion/cepjobs/internal/config"
)

const hash = "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"

func TestLoadDefaults(t *testing.T) {
	c, err := config.Load(nil)
	if err != nil {
		t.Fatalf("empty environment: %v", err)
	}
	if c.API.Addr != ":8080" || c.Redis.URL != "redis://127.0.0.1:6379/0" || c.Outbox.Interval != time.Second {
		t.Errorf("defaults: got addr %q redis %q outbox %s", c.API.Addr, c.Redis.URL, c.Outbox.Interval)
	}
	if c.API.Dashboard.Enabled() {
		t.Error("dashboard enabled without credentials")
	}
}

func TestLoadParsesTokens(t *testing.T) {
	c, err := config.Load([]string{
		"CEPJOBS_API_TOKENS=cms:0123456789abcdef0:leads:write|leads:read, ops:fedcba98765432100:backups:read",
		"CEPJOBS_DASHBOARD_USER=ops", "CEPJOBS_DASHBOARD_PASSWORD_HASH=" + hash, "CEPJOBS_DASHBOARD_READ_ONLY=true",
	})
	if err != nil {
		t.Fatal(err)
	}
	toks := c.API.Tokens
	if len(toks) != 2 || toks[0].Name != "cms" || toks[0].Secret != "0123456789abcdef0" ||
		strings.Join(toks[0].Scopes, "|") != "leads:write|leads:read" || toks[1].Scopes[0] != "backups:read" {
		t.Errorf("tokens: got %+v", toks)
	}
	if !c.API.Dashboard.Enabled() || !c.API.Dashboard.ReadOnly {
		t.Errorf("dashboard: got %+v", c.API.Dashboard)
	}
}

func TestLoadReportsEveryProblemAtOnce(t *testing.T) {
	_, err := config.Load([]string{
		"REDIS_URL=http://:hunter2@x",
		"DATABASE_URL=postgres://u:hunter2@%zz",
		"CEPJOBS_HTTP_ADDR=8080",
		"CEPJOBS_API_TOKENS=cms:short:leads:write|leads:wirte,broken",
		"CEPJOBS_DASHBOARD_USER=ops",
		"CEPJOBS_DASHBOARD_READ_ONLY=maybe",
		"CEPJOBS_OUTBOX_INTERVAL=soon",
		"CEPJOBS_DASHBOARD_PASWORD_HASH=x",
		"CEPJOBS_LOG_LEVEL=loud",
		"CEPJOBS_SWEEP_AFTER=0",
	})
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want *config.Error", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"REDIS_URL: unsupported scheme",
		"DATABASE_URL: cannot parse",
		"CEPJOBS_HTTP_ADDR: want host:port",
		"entry 1 (cms): token must be at least 16",
		`unknown scope "leads:wirte"`,
		"entry 2: want name:token:scope|scope",
		"CEPJOBS_DASHBOARD_PASSWORD_HASH: required when CEPJOBS_DASHBOARD_USER is set",
		"CEPJOBS_DASHBOARD_READ_ONLY: want true or false",
		"CEPJOBS_OUTBOX_INTERVAL: want a duration",
		"CEPJOBS_DASHBOARD_PASWORD_HASH: unknown variable (did you mean CEPJOBS_DASHBOARD_PASSWORD_HASH?)",
		"CEPJOBS_LOG_LEVEL: want debug",
		"CEPJOBS_SWEEP_AFTER: must be at least 1s",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "hunter2") || strings.Contains(msg, "short") {
		t.Errorf("error shows a secret:\n%s", msg)
	}
}

func TestVarsRedactsSecrets(t *testing.T) {
	c, err := config.Load([]string{
		"REDIS_URL=redis://:hunter2@127.0.0.1:6379/1",
		"DATABASE_URL=postgres://app:hunter2@db:5432/cep",
		"CEPJOBS_API_TOKENS=cms:0123456789abcdef0:leads:write",
		"CEPJOBS_DASHBOARD_USER=ops", "CEPJOBS_DASHBOARD_PASSWORD_HASH=" + hash,
		"HCAPTCHA_SECRET=0xhunter2",
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]config.Var{}
	var all strings.Builder
	for _, v := range c.Vars() {
		got[v.Name] = v
		all.WriteString(v.Name + "=" + v.Value + "\n")
	}
	for _, secret := range []string{"hunter2", "0123456789abcdef0", hash} {
		if strings.Contains(all.String(), secret) {
			t.Errorf("printed config shows %q:\n%s", secret, all.String())
		}
	}
	if v := got["CEPJOBS_API_TOKENS"].Value; v != "cms:xxxxx:leads:write" {
		t.Errorf("tokens: got %q", v)
	}
	if v := got["REDIS_URL"]; v.Value != "redis://:xxxxx@127.0.0.1:6379/1" || !v.FromEnv {
		t.Errorf("redis url: got %+v", v)
	}
	if v := got["CEPJOBS_HTTP_ADDR"]; v.Value != ":8080" || v.FromEnv {
		t.Errorf("http addr: got %+v", v)
	}
}
