package main_test

// End-to-end: the real intake and worker-llm binaries, an OpenAI-compatible
// stand-in, and a CMS endpoint receiving signed callbacks.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cepcomunicacion/cepjobs/handlers"
	"github.com/cepcomunicacion/cepjobs/internal/llm"
	"github.com/cepcomunicacion/cepjobs/internal/llm/llmtest"
	"github.com/cepcomunicacion/cepjobs/internal/testenv"
)

const (
	token  = "e2e-llm-token-0123456789"
	key    = "sk-e2e-0123456789"
	secret = "e2e-callback-secret-0123456789"
)

var (
	bins  map[string]string
	dbURL string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cepjobs-e2e-llm-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if bins, err = testenv.BuildBinaries(dir, "intake", "worker-llm"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := testenv.RunWithDatabase(m, "llm", &dbURL, nil)
	os.RemoveAll(dir)
	os.Exit(code)
}

func answer() string {
	b, _ := json.Marshal(llm.CourseDescriptionOutput{
		Title:              "Técnico en Marketing Digital online",
		Summary:            "Aprende a planificar campañas y medir resultados desde casa.",
		Body:               strings.Repeat("Un curso práctico para trabajar en marketing digital. ", 8),
		BulletPoints:       []string{"100 % online", "Tutor personal", "Prácticas"},
		SEOMetaDescription: "Estudia el Técnico en Marketing Digital online: 600 horas, tutor personal y prácticas para trabajar en agencias.",
	})
	return string(b)
}

func TestContentThroughIntakeAndWorker(t *testing.T) {
	fake := llmtest.New(t, key)
	fake.Always(llmtest.Reply{Content: answer()})
	var mu sync.Mutex
	callbacks := map[string]handlers.CallbackBody{}
	cms := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if got, want := r.Header.Get(handlers.SignatureHeader), handlers.Sign(secret, body); got != want {
			t.Errorf("callback signature: got %q, want %q", got, want)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var cb handlers.CallbackBody
		_ = json.Unmarshal(body, &cb)
		mu.Lock()
		callbacks[cb.ID] = cb
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer cms.Close()

	port := testenv.FreePort(t)
	api := fmt.Sprintf("http://127.0.0.1:%d", port)
	env := []string{
		"REDIS_URL=" + testenv.RedisURL(t, testenv.RedisDBLLM), "DATABASE_URL=" + dbURL,
		fmt.Sprintf("CEPJOBS_HTTP_ADDR=127.0.0.1:%d", port),
		"CEPJOBS_API_TOKENS=cms:" + token + ":content:write|content:read",
		"OPENAI_API_KEY=" + key, "OPENAI_BASE_URL=" + fake.BaseURL(), "OPENAI_MODEL=gpt-4o-mini",
		"CEPJOBS_CALLBACK_SECRET=" + secret, "CEPJOBS_LLM_METRICS_ADDR=127.0.0.1:0", "CEPJOBS_TASK_CHECK_INTERVAL=50ms",
	}
	in := testenv.StartProc(t, "intake", bins["intake"], env)
	in.WaitHTTP(t, api+"/healthz", 30*time.Second)
	testenv.StartProc(t, "worker-llm", bins["worker-llm"], env)

	var ids []string
	for range 5 {
		body, _ := json.Marshal(map[string]any{
			"kind": "course_description", "language": "es-ES", "callback_url": cms.URL + "/api/content-callback",
			"input": map[string]any{"title": "Técnico en Marketing Digital", "modality": "online", "duration": "600 horas", "audience": "Personas que quieren trabajar en marketing"},
		})
		req, _ := http.NewRequest("POST", api+"/v1/content", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var r map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if resp.StatusCode != 202 {
			t.Fatalf("POST /v1/content: got %d %v", resp.StatusCode, r)
		}
		ids = append(ids, r["id"].(string))
	}

	testenv.Eventually(t, 60*time.Second, "5 signed callbacks", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(callbacks) == len(ids)
	})
	for _, id := range ids {
		req, _ := http.NewRequest("GET", api+"/v1/content/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var j map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&j)
		resp.Body.Close()
		if cost, _ := j["cost_usd"].(float64); j["status"] != "completed" || j["prompt_version"] == "" || cost <= 0 || j["result"] == nil {
			t.Errorf("job %s: got %v", id, j)
		}
		if cb := callbacks[id]; cb.Status != "completed" || len(cb.Result) == 0 {
			t.Errorf("callback for %s: got %+v", id, cb)
		}
	}
	if n := len(fake.Requests()); n != len(ids) {
		t.Errorf("model calls: got %d, want %d", n, len(ids))
	}
}

func TestWorkerRefusesToStartWithoutKey(t *testing.T) {
	p := testenv.StartProc(t, "worker-llm", bins["worker-llm"], []string{"DATABASE_URL=" + dbURL})
	err, done := p.Wait(20 * time.Second)
	if !done || err == nil {
		t.Fatalf("worker-llm without a key: exited %v with %v, want a non-zero exit", done, err)
	}
	if out := p.Logs.String(); !strings.Contains(out, "OPENAI_API_KEY is not set") {
		t.Errorf("message: got %q", out)
	}
}
