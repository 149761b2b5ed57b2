package llm

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Config is the AI content generation part of the configuration. With no
// API key, generation is off. Any OpenAI-compatible chat completions
// endpoint works: OpenAI, Anthropic's compatibility endpoint
// (https://api.anthropic.com/v1/), Ollama (http://localhost:11434/v1, any
// non-empty key) or vLLM.
type Config struct {
	APIKey string `env:"OPENAI_API_KEY" secret:"true"`
	// BaseURL is the endpoint's API root; requests go to BaseURL +
	// "/chat/completions".
	BaseURL string `env:"OPENAI_BASE_URL" default:"https://api.openai.com/v1"`
	Model   string `env:"OPENAI_MODEL" default:"gpt-4o-mini"`
	// DailyBudgetUSD caps a day's spend; callers check it with
	// Generator.EstimateCostUSD before they queue or run a job.
	DailyBudgetUSD float64 `env:"CEPJOBS_LLM_DAILY_BUDGET_USD" default:"10"`
	// RPM and TPM are this process's request and token rates, kept below
	// the account's limits so the endpoint rarely answers 429.
	RPM int `env:"CEPJOBS_LLM_RPM" default:"60"`
	TPM int `env:"CEPJOBS_LLM_TPM" default:"200000"`
	// MaxTokens is the most a job's answer may use, per call.
	MaxTokens   int           `env:"CEPJOBS_LLM_MAX_TOKENS" default:"2000"`
	CallTimeout time.Duration `env:"CEPJOBS_LLM_CALL_TIMEOUT" default:"60s"`
	// MaxRepairs is how many times an invalid answer is sent back with
	// its problems before the job fails.
	MaxRepairs int `env:"CEPJOBS_LLM_MAX_REPAIRS" default:"2"`
	// JSONSchema asks for response_format json_schema (Structured
	// Outputs); false asks for json_object, for endpoints without it.
	// Answers are validated in Go either way. Its default is true only
	// through the loader: a Config built in code must set it.
	JSONSchema bool `env:"CEPJOBS_LLM_JSON_SCHEMA" default:"true"`
	// Prices overrides or extends the built-in price table:
	// model=input/output in USD per million tokens, such as
	// "llama3.1=0/0,gpt-4o-mini=0.15/0.60".
	Prices []string `env:"CEPJOBS_LLM_PRICES"`
}

// Defaults for a Config built in code; the loader reads the same values
// from the tags.
const (
	DefaultBaseURL     = "https://api.openai.com/v1"
	DefaultModel       = "gpt-4o-mini"
	DefaultRPM         = 60
	DefaultTPM         = 200000
	DefaultMaxTokens   = 2000
	DefaultCallTimeout = 60 * time.Second
)

// Enabled reports whether content generation is configured.
func (c Config) Enabled() bool { return c.APIKey != "" }

// withDefaults fills what the loader would have, for a Config built in
// code. MaxRepairs, DailyBudgetUSD and JSONSchema keep their zero values,
// which are meaningful.
func (c Config) withDefaults() Config {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if c.Model == "" {
		c.Model = DefaultModel
	}
	if c.RPM == 0 {
		c.RPM = DefaultRPM
	}
	if c.TPM == 0 {
		c.TPM = DefaultTPM
	}
	if c.MaxTokens == 0 {
		c.MaxTokens = DefaultMaxTokens
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	return c
}

// Validate reports what is wrong with c. The model's price is checked
// only when generation is enabled: without it, budgets could not be
// enforced.
func (c Config) Validate() error {
	var errs []error
	if strings.ContainsAny(c.APIKey, " \t\r\n") {
		errs = append(errs, errors.New("OPENAI_API_KEY: contains white space; paste the key alone"))
	}
	if c.BaseURL != "" {
		// The URL is not echoed: it may carry credentials.
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			errs = append(errs, errors.New("OPENAI_BASE_URL: want the API root as an http(s) URL, such as https://api.openai.com/v1"))
		} else if strings.HasSuffix(strings.TrimRight(u.Path, "/"), "/chat/completions") {
			errs = append(errs, errors.New("OPENAI_BASE_URL: want the API root, without /chat/completions"))
		}
	}
	if c.Enabled() && strings.TrimSpace(c.Model) == "" {
		errs = append(errs, errors.New("OPENAI_MODEL: required when OPENAI_API_KEY is set"))
	}
	if strings.ContainsAny(c.Model, " \t\r\n") {
		errs = append(errs, errors.New("OPENAI_MODEL: contains white space"))
	}
	if c.DailyBudgetUSD <= 0 {
		errs = append(errs, errors.New("CEPJOBS_LLM_DAILY_BUDGET_USD: want a positive amount in US dollars, such as 10"))
	}
	if c.RPM < 1 {
		errs = append(errs, errors.New("CEPJOBS_LLM_RPM: want at least 1 request per minute"))
	}
	if c.MaxTokens < 1 || c.MaxTokens > 200000 {
		errs = append(errs, errors.New("CEPJOBS_LLM_MAX_TOKENS: want 1 to 200000 tokens"))
	}
	if c.TPM < 1 {
		errs = append(errs, errors.New("CEPJOBS_LLM_TPM: want at least 1 token per minute"))
	} else if c.TPM < 2*c.MaxTokens {
		// A call reserves its prompt and max_tokens; below this no
		// call could ever fit in a minute.
		errs = append(errs, fmt.Errorf("CEPJOBS_LLM_TPM: want at least twice CEPJOBS_LLM_MAX_TOKENS (%d)", 2*c.MaxTokens))
	}
	if c.CallTimeout <= 0 {
		errs = append(errs, errors.New("CEPJOBS_LLM_CALL_TIMEOUT: want a positive duration, such as 60s"))
	}
	if c.MaxRepairs < 0 || c.MaxRepairs > 5 {
		errs = append(errs, errors.New("CEPJOBS_LLM_MAX_REPAIRS: want 0 to 5"))
	}
	table, err := parsePrices(c.Prices)
	if err != nil {
		errs = append(errs, err)
	} else if c.Enabled() && c.Model != "" {
		if _, ok := table.lookup(c.Model); !ok {
			errs = append(errs, fmt.Errorf("CEPJOBS_LLM_PRICES: no price known for OPENAI_MODEL %q; add %s=input/output in USD per million tokens (0/0 for a local model)", c.Model, c.Model))
		}
	}
	return errors.Join(errs...)
}
