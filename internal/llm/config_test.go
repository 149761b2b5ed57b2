package llm_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cepcomunicacion/cepjobs/internal/llm"
)

// valid is the configuration the loader makes from the defaults, with a key.
func valid() llm.Config {
	return llm.Config{
		APIKey: "sk-abc123", BaseURL: "https://api.openai.com/v1", Model: "gpt-4o-mini",
		DailyBudgetUSD: 10, RPM: 60, TPM: 200000, MaxTokens: 2000, CallTimeout: time.Minute,
		MaxRepairs: 2, JSONSchema: true,
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mod  func(*llm.Config)
		errs []string // each problem's variable name, in order
	}{
		{"defaults", func(*llm.Config) {}, nil},
		{"disabled with defaults", func(c *llm.Config) { c.APIKey = "" }, nil},
		{"disabled, unknown model is not checked", func(c *llm.Config) { c.APIKey, c.Model = "", "mistral" }, nil},
		{"dated snapshot", func(c *llm.Config) { c.Model = "gpt-4o-mini-2024-07-18" }, nil},
		{"claude", func(c *llm.Config) {
			c.Model, c.BaseURL = "claude-sonnet-4-5-20250929", "https://api.anthropic.com/v1/"
		}, nil},
		{"local model priced", func(c *llm.Config) {
			c.Model, c.BaseURL, c.Prices = "llama3.1:8b", "http://localhost:11434/v1", []string{"llama3.1=0/0"}
		}, nil},
		{"unknown model", func(c *llm.Config) { c.Model = "mistral-large" }, []string{"CEPJOBS_LLM_PRICES"}},
		{"bad price entry", func(c *llm.Config) { c.Prices = []string{"gpt-4o-mini=cheap"} }, []string{"CEPJOBS_LLM_PRICES"}},
		{"negative price", func(c *llm.Config) { c.Prices = []string{"x=-1/2"} }, []string{"CEPJOBS_LLM_PRICES"}},
		{"key with space", func(c *llm.Config) { c.APIKey = "sk-abc123 " }, []string{"OPENAI_API_KEY"}},
		{"base URL", func(c *llm.Config) { c.BaseURL = "api.openai.com" }, []string{"OPENAI_BASE_URL"}},
		{"base URL with path", func(c *llm.Config) { c.BaseURL = "https://api.openai.com/v1/chat/completions" }, []string{"OPENAI_BASE_URL"}},
		{"no model", func(c *llm.Config) { c.Model = " " }, []string{"OPENAI_MODEL", "OPENAI_MODEL", "CEPJOBS_LLM_PRICES"}},
		{"numbers", func(c *llm.Config) {
			c.DailyBudgetUSD, c.RPM, c.MaxTokens, c.TPM, c.CallTimeout, c.MaxRepairs = 0, 0, 0, 0, 0, -1
		}, []string{"CEPJOBS_LLM_DAILY_BUDGET_USD", "CEPJOBS_LLM_RPM", "CEPJOBS_LLM_MAX_TOKENS", "CEPJOBS_LLM_TPM", "CEPJOBS_LLM_CALL_TIMEOUT", "CEPJOBS_LLM_MAX_REPAIRS"}},
		{"TPM below a call", func(c *llm.Config) { c.TPM = 3000 }, []string{"CEPJOBS_LLM_TPM"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := valid()
			tc.mod(&c)
			err := c.Validate()
			var got []string
			if err != nil {
				for _, line := range strings.Split(err.Error(), "\n") {
					name, _, _ := strings.Cut(line, ":")
					got = append(got, name)
				}
				if strings.Contains(err.Error(), "sk-abc123") {
					t.Errorf("Validate shows the key: %v", err)
				}
			}
			if diff := cmp.Diff(tc.errs, got); diff != "" {
				t.Errorf("problems by variable (-want +got):\n%s\nerror: %v", diff, err)
			}
		})
	}
}

func TestConfigEnabled(t *testing.T) {
	t.Parallel()
	if (llm.Config{}).Enabled() {
		t.Errorf("Enabled without a key: got true, want false")
	}
	if !(llm.Config{APIKey: "k"}).Enabled() {
		t.Errorf("Enabled with a key: got false, want true")
	}
}

// TestConfigTags pins the variable names and defaults operators set.
func TestConfigTags(t *testing.T) {
	t.Parallel()
	want := map[string]string{
		"OPENAI_API_KEY":               "",
		"OPENAI_BASE_URL":              "https://api.openai.com/v1",
		"OPENAI_MODEL":                 "gpt-4o-mini",
		"CEPJOBS_LLM_DAILY_BUDGET_USD": "10",
		"CEPJOBS_LLM_RPM":              "60",
		"CEPJOBS_LLM_TPM":              "200000",
		"CEPJOBS_LLM_MAX_TOKENS":       "2000",
		"CEPJOBS_LLM_CALL_TIMEOUT":     "60s",
		"CEPJOBS_LLM_MAX_REPAIRS":      "2",
		"CEPJOBS_LLM_JSON_SCHEMA":      "true",
		"CEPJOBS_LLM_PRICES":           "",
	}
	got := map[string]string{}
	typ := reflect.TypeFor[llm.Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		got[f.Tag.Get("env")] = f.Tag.Get("default")
		if f.Tag.Get("env") == "OPENAI_API_KEY" && f.Tag.Get("secret") != "true" {
			t.Errorf("OPENAI_API_KEY is not marked secret")
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("variables and defaults (-want +got):\n%s", diff)
	}
}
