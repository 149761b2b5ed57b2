// Package llm writes marketing content (course descriptions, Meta ad copy,
// emails) with a language model behind any OpenAI-compatible chat
// completions endpoint, through github.com/sashabaranov/go-openai. It owns
// the kinds and their input and output rules, the versioned prompts, the
// price table, the in-process rate limits, and the classification of the
// endpoint's failures as *vendor.Error.
//
// Answers are never trusted: each is checked in Go against its kind's
// schema and length limits, whatever the endpoint enforced, and an invalid
// one is sent back with its problems up to MaxRepairs times.
package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/cepcomunicacion/cepjobs/internal/vendor"
)

// Request is one piece of content to write.
type Request struct {
	Kind     string // a Kind
	Language string // BCP 47 tag; empty means DefaultLanguage
	Input    json.RawMessage
	// MaxTokens bounds each call's answer; 0, or more than
	// CEPJOBS_LLM_MAX_TOKENS, means CEPJOBS_LLM_MAX_TOKENS.
	MaxTokens int
}

// Result is the content written and what it took.
type Result struct {
	// Output is the answer, validated and normalized: the JSON of the
	// kind's *Output struct.
	Output json.RawMessage
	// Model is the model that answered, as the endpoint names it (often a
	// dated snapshot of the configured one).
	Model string
	// PromptVersion is the prompt that wrote it, "course_description/v1".
	PromptVersion string
	// Usage and cost over every call, repairs included.
	PromptTokens, CompletionTokens int
	CostUSD                        float64
	// Calls is how many answers the endpoint gave; Repairs how many of
	// them were asked for because the previous one was invalid.
	Calls   int
	Repairs int
}

// Generator writes content. It is safe for concurrent use; its rate
// limits are shared by all goroutines using it.
type Generator struct {
	cfg     Config
	client  *openai.Client
	log     *slog.Logger
	price   Price
	prompts map[Kind]*prompt
	limit   *limiter
	now     func() time.Time
}

// New returns a generator for cfg, which must be enabled and valid.
// httpClient may be nil for vendor.NewHTTPClient; log may be nil to
// discard. Logs never hold the prompt, the input or the answer.
func New(cfg Config, httpClient *http.Client, log *slog.Logger) (*Generator, error) {
	cfg = cfg.withDefaults()
	if !cfg.Enabled() {
		return nil, errors.New("OPENAI_API_KEY: required for content generation")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	table, err := parsePrices(cfg.Prices)
	if err != nil {
		return nil, err
	}
	price, _ := table.lookup(cfg.Model) // Validate checked it is there
	prompts, err := loadPrompts(promptFiles)
	if err != nil {
		return nil, err
	}
	if httpClient == nil {
		// A little over the call timeout: the context's deadline ends
		// a call first and names CEPJOBS_LLM_CALL_TIMEOUT in the error;
		// the client's is a backstop.
		httpClient = vendor.NewHTTPClient(cfg.CallTimeout + 5*time.Second)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	oc := openai.DefaultConfig(cfg.APIKey)
	oc.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	oc.HTTPClient = httpClient
	return &Generator{
		cfg:     cfg,
		client:  openai.NewClientWithConfig(oc),
		log:     log,
		price:   price,
		prompts: prompts,
		limit:   newLimiter(cfg.RPM, cfg.TPM, cfg.CallTimeout),
		now:     time.Now,
	}, nil
}

// Model is the configured model.
func (g *Generator) Model() string { return g.cfg.Model }

// job is a request made ready to send.
type job struct {
	in        parsedInput
	version   string
	schema    json.RawMessage
	messages  []openai.ChatCompletionMessage
	maxTokens int
}

// prepare checks req and renders its prompt. An invalid request is a
// permanent error listing every bad field.
func (g *Generator) prepare(req Request) (job, error) {
	in, errs := parseInput(req.Kind, req.Language, req.Input)
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return job{}, &vendor.Error{
			Vendor: vendorName, Op: "generate", Code: CodeInvalidRequest,
			Message: strings.Join(capProblems(msgs), "; "), Permanent: true,
		}
	}
	p := g.prompts[in.kind]
	schema := outputSchema(in.kind, in.n)
	system, user, err := p.render(promptData{
		Language:     in.language,
		LanguageName: languageName(in.language),
		Input:        in.typed,
		InputJSON:    string(in.clean),
		Schema:       string(schema),
		Rules:        rules("", specs[in.kind].output, in.n),
		Variants:     in.n,
	})
	if err != nil {
		return job{}, fmt.Errorf("prepare %s: %w", in.kind, err)
	}
	maxTokens := g.cfg.MaxTokens
	if req.MaxTokens > 0 && req.MaxTokens < maxTokens {
		maxTokens = req.MaxTokens
	}
	return job{
		in: in, version: p.version, schema: schema, maxTokens: maxTokens,
		messages: []openai.ChatCompletionMessage{
			{Role: openai.ChatMessageRoleSystem, Content: system},
			{Role: openai.ChatMessageRoleUser, Content: user},
		},
	}, nil
}

// Generate writes the content req asks for. Errors are *vendor.Error,
// classified: permanent (bad key, unknown model, content policy, an
// invalid request, answers still invalid after MaxRepairs) or transient
// (timeouts, network, 5xx), with Throttled and RetryAfter when the
// endpoint or our own limiter asks to slow down. Cancelling ctx stops the
// call in flight. On error the Result still carries the usage and cost of
// the calls that were answered, so spend can be recorded.
func (g *Generator) Generate(ctx context.Context, req Request) (Result, error) {
	j, err := g.prepare(req)
	if err != nil {
		return Result{}, err
	}
	res := Result{Model: g.cfg.Model, PromptVersion: j.version}
	msgs := j.messages
	var problems []string
	for attempt := 0; attempt <= g.cfg.MaxRepairs; attempt++ {
		if attempt > 0 {
			msgs = append(msgs, openai.ChatCompletionMessage{
				Role:    openai.ChatMessageRoleUser,
				Content: "Your answer broke these rules:\n- " + strings.Join(problems, "\n- ") + "\nAnswer again with valid JSON only.",
			})
			res.Repairs++
		}
		choice, err := g.call(ctx, j, msgs, &res)
		if err != nil {
			return res, err
		}
		content := choice.Message.Content
		var out json.RawMessage
		out, problems = ValidateOutput(j.in.kind, j.in.n, extractJSON(content))
		if len(problems) > 0 && choice.FinishReason == openai.FinishReasonLength {
			problems = append([]string{fmt.Sprintf("the answer was cut off at the token limit (%d); write shorter texts", j.maxTokens)}, problems...)
		}
		if len(problems) == 0 {
			res.Output = out
			return res, nil
		}
		problems = capProblems(problems)
		// Problems name fields and lengths, never the text.
		g.log.Info("llm answer invalid", "kind", j.in.kind, "prompt_version", j.version, "attempt", attempt+1, "problems", problems)
		if strings.TrimSpace(content) != "" {
			// The model repairs its own answer best when it sees it.
			msgs = append(msgs, openai.ChatCompletionMessage{Role: openai.ChatMessageRoleAssistant, Content: content})
		}
	}
	return res, &vendor.Error{
		Vendor: vendorName, Op: opChat, Status: http.StatusOK, Code: CodeInvalidAnswer, Permanent: true,
		Message: fmt.Sprintf("answer invalid after %d attempts: %s", res.Calls, strings.Join(problems, "; ")),
	}
}

// call sends one request and returns its answer's choice. Usage and cost
// are added to res as soon as an answer arrives.
func (g *Generator) call(ctx context.Context, j job, msgs []openai.ChatCompletionMessage, res *Result) (openai.ChatCompletionChoice, error) {
	req := g.chatRequest(j, msgs)
	if err := g.limit.wait(ctx, estimateTokens(msgs, g.schemaSent(j))+j.maxTokens); err != nil {
		return openai.ChatCompletionChoice{}, err
	}
	callCtx, cancel := context.WithTimeout(ctx, g.cfg.CallTimeout)
	defer cancel()
	start := time.Now()
	resp, err := g.client.CreateChatCompletion(callCtx, req)
	if err != nil {
		return openai.ChatCompletionChoice{}, g.callError(ctx, callCtx, err, resp.Header())
	}
	res.Calls++
	res.PromptTokens += resp.Usage.PromptTokens
	res.CompletionTokens += resp.Usage.CompletionTokens
	res.CostUSD += g.price.cost(resp.Usage.PromptTokens, resp.Usage.CompletionTokens)
	if resp.Model != "" {
		res.Model = resp.Model
	}
	if len(resp.Choices) == 0 {
		return openai.ChatCompletionChoice{}, &vendor.Error{Vendor: vendorName, Op: opChat, Status: http.StatusOK, Message: "answer has no choices"}
	}
	choice := resp.Choices[0]
	g.log.Debug("llm call", "kind", j.in.kind, "prompt_version", j.version, "model", res.Model,
		"prompt_tokens", resp.Usage.PromptTokens, "completion_tokens", resp.Usage.CompletionTokens,
		"finish_reason", string(choice.FinishReason), "duration", time.Since(start))
	switch {
	case choice.FinishReason == openai.FinishReasonContentFilter:
		return choice, &vendor.Error{
			Vendor: vendorName, Op: opChat, Status: http.StatusOK, Code: CodeContentFilter, Permanent: true,
			Message: "the endpoint's content filter withheld the answer; rephrase the input",
		}
	case choice.Message.Refusal != "":
		// The refusal's text is not shown: it may quote the input.
		return choice, &vendor.Error{
			Vendor: vendorName, Op: opChat, Status: http.StatusOK, Code: CodeRefusal, Permanent: true,
			Message: "the model declined to write this content",
		}
	}
	return choice, nil
}

// callError classifies a failed call. go-openai returns three sorts: an
// *APIError or *RequestError for an HTTP answer, the HTTP client's error
// when no answer came, a JSON error when a 2xx body is not a completion,
// and its own sentinels when it refuses a request before sending it.
func (g *Generator) callError(parent, call context.Context, err error, h http.Header) error {
	var apiErr *openai.APIError
	var reqErr *openai.RequestError
	var urlErr *url.Error
	var netErr net.Error
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &apiErr), errors.As(err, &reqErr):
		return classify(parent, call, err, h, g.cfg.Model, g.now())
	case errors.As(err, &urlErr), errors.As(err, &netErr), parent.Err() != nil, call.Err() != nil:
		return transportError(parent, call, err)
	case errors.As(err, &syntaxErr), errors.As(err, &typeErr), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return &vendor.Error{Vendor: vendorName, Op: opChat, Status: http.StatusOK, Message: "answer is not a chat completion", Err: err}
	default:
		// go-openai's own checks (a parameter the model does not take):
		// constant texts, safe to show, and no retry changes them.
		return &vendor.Error{Vendor: vendorName, Op: opChat, Message: "request refused before sending: " + err.Error(), Permanent: true, Err: err}
	}
}

// reasoningModel matches OpenAI's o-series ids ("o1", "o3-mini",
// "o4-mini-2025-04-16").
var reasoningModel = regexp.MustCompile(`^o[0-9]+(-|$)`)

// usesMaxCompletionTokens reports whether model takes max_completion_tokens
// instead of max_tokens. OpenAI rejects max_tokens for reasoning models
// (o-series, gpt-5 and later), and go-openai refuses to send it for those
// prefixes (reasoning_validator.go). Everything else gets max_tokens: it
// is what every compatible server accepts (Anthropic's compatibility
// layer supports both, vLLM both, Ollama documents max_tokens).
func usesMaxCompletionTokens(model string) bool {
	return reasoningModel.MatchString(model) || strings.HasPrefix(model, "gpt-5") || strings.HasPrefix(model, "gpt-6")
}

func (g *Generator) chatRequest(j job, msgs []openai.ChatCompletionMessage) openai.ChatCompletionRequest {
	req := openai.ChatCompletionRequest{Model: g.cfg.Model, Messages: msgs}
	if usesMaxCompletionTokens(g.cfg.Model) {
		req.MaxCompletionTokens = j.maxTokens
	} else {
		//lint:ignore SA1019 deprecated by OpenAI for its own models only; compatible servers (Ollama) know only max_tokens.
		req.MaxTokens = j.maxTokens
	}
	if g.cfg.JSONSchema {
		req.ResponseFormat = &openai.ChatCompletionResponseFormat{
			Type: openai.ChatCompletionResponseFormatTypeJSONSchema,
			JSONSchema: &openai.ChatCompletionResponseFormatJSONSchema{
				Name: string(j.in.kind), Schema: j.schema, Strict: true,
			},
		}
	} else {
		// json_object needs the word "JSON" in the messages; every
		// prompt asks for a JSON object.
		req.ResponseFormat = &openai.ChatCompletionResponseFormat{Type: openai.ChatCompletionResponseFormatTypeJSONObject}
	}
	return req
}

// schemaSent is the schema counted as prompt tokens: only json_schema
// sends it in response_format.
func (g *Generator) schemaSent(j job) json.RawMessage {
	if g.cfg.JSONSchema {
		return j.schema
	}
	return nil
}

// estimateTokens guesses a request's prompt tokens: about four bytes of
// text per token, plus the few tokens each message adds.
func estimateTokens(msgs []openai.ChatCompletionMessage, schema json.RawMessage) int {
	n := 3 + len(schema)/4
	for _, m := range msgs {
		n += 4 + (len(m.Content)+3)/4
	}
	return n
}

// repairTokens bounds what a repair adds to the prompt besides the
// previous answer: the list of at most ten problems.
const repairTokens = 300

// EstimateCostUSD is an upper bound of what Generate(req) costs, for the
// budget check before a job runs: every attempt MaxRepairs allows, each
// with its prompt (estimated from its length, growing with the answers
// sent back) and max_tokens of answer at the output price. An invalid
// request costs nothing: it is never sent.
func (g *Generator) EstimateCostUSD(req Request) float64 {
	j, err := g.prepare(req)
	if err != nil {
		return 0
	}
	prompt := estimateTokens(j.messages, g.schemaSent(j))
	total := 0.0
	for attempt := 0; attempt <= g.cfg.MaxRepairs; attempt++ {
		total += g.price.cost(prompt+attempt*(j.maxTokens+repairTokens), j.maxTokens)
	}
	return total
}

// extractJSON takes the JSON object out of an answer. Endpoints without
// an enforced response format (Anthropic's compatibility layer ignores
// response_format) sometimes wrap it in a Markdown fence or a sentence.
func extractJSON(content string) json.RawMessage {
	s := strings.TrimSpace(content)
	if strings.HasPrefix(s, "{") && json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	i, k := strings.Index(s, "{"), strings.LastIndex(s, "}")
	if i >= 0 && k > i {
		return json.RawMessage(s[i : k+1])
	}
	return json.RawMessage(s)
}

// capProblems keeps a list of problems short enough to read (and to send
// back to the model): the first nine and a count of the rest.
func capProblems(ps []string) []string {
	if len(ps) <= 10 {
		return ps
	}
	return append(ps[:9:9], fmt.Sprintf("and %d more problems", len(ps)-9))
}
