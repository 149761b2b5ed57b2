package chaos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// lead is one accepted lead.
type lead struct {
	id, email string
	accepted  time.Time
}

// load posts leads at a steady rate, as the CMS would: each lead with its own
// Idempotency-Key, retried after a 503 (honouring Retry-After), a 5xx or a
// connection error, until accepted.
type load struct {
	api    string
	client *http.Client
	prefix string

	mu       sync.Mutex
	leads    []lead
	codes    map[int]int // every answer, by status
	connErrs int
	gaveUp   int
	// noRetryAfter counts 503 answers without Retry-After.
	noRetryAfter int
	retried      int // leads that needed more than one request
	maxWait      time.Duration
	done         chan struct{}
}

// stream starts posting n leads at rate per second in the background.
func (c *cluster) stream(ctx context.Context, n int, rate float64) *load {
	l := &load{
		api:    c.api,
		client: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}},
		prefix: strconv.FormatInt(time.Now().UnixNano(), 36),
		codes:  map[int]int{},
		done:   make(chan struct{}),
	}
	go l.run(ctx, n, rate)
	return l
}

func (l *load) run(ctx context.Context, n int, rate float64) {
	defer close(l.done)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 512) // bounds the goroutines while the intake is down
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			l.post(ctx, i)
		})
	}
	wg.Wait()
}

func (l *load) post(ctx context.Context, i int) {
	email := fmt.Sprintf("chaos.%s.%d@example.com", l.prefix, i)
	body, _ := json.Marshal(map[string]any{
		"first_name": "Ana", "last_name": "García", "email": email, "phone": "+34600111222",
		"course": "tecnico-marketing-digital", "campaign": "otono", "site": "sevilla", "source": "web-form",
		"consent": map[string]any{"privacy": true, "marketing": true, "text_version": "2026-01"},
		"client":  map[string]any{"ip": "203.0.113.7", "user_agent": "Mozilla/5.0"},
	})
	first := time.Now()
	for attempt := 0; ; attempt++ {
		if time.Since(first) > 5*time.Minute || ctx.Err() != nil {
			l.mu.Lock()
			l.gaveUp++
			l.mu.Unlock()
			return
		}
		req, _ := http.NewRequestWithContext(ctx, "POST", l.api+"/v1/leads", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "chaos-"+l.prefix+"-"+strconv.Itoa(i))
		resp, err := l.client.Do(req)
		if err != nil {
			l.mu.Lock()
			l.connErrs++
			l.mu.Unlock()
			time.Sleep(500 * time.Millisecond)
			continue
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		l.mu.Lock()
		l.codes[resp.StatusCode]++
		l.mu.Unlock()
		switch resp.StatusCode {
		case http.StatusAccepted, http.StatusOK:
			var r struct{ ID string }
			_ = json.Unmarshal(raw, &r)
			l.mu.Lock()
			l.leads = append(l.leads, lead{id: r.ID, email: email, accepted: time.Now()})
			if attempt > 0 {
				l.retried++
			}
			l.maxWait = max(l.maxWait, time.Since(first))
			l.mu.Unlock()
			return
		default:
			wait := time.Second
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
				wait = time.Duration(s) * time.Second
			} else if resp.StatusCode == http.StatusServiceUnavailable {
				l.mu.Lock()
				l.noRetryAfter++
				l.mu.Unlock()
			}
			time.Sleep(wait)
		}
	}
}

// wait waits for every lead to be accepted (or given up on).
func (l *load) wait() { <-l.done }

func (l *load) accepted() []lead {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]lead(nil), l.leads...)
}

func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.leads)
}

// code returns how many answers had status s.
func (l *load) code(s int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.codes[s]
}

func (l *load) codesCopy() map[int]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[int]int, len(l.codes))
	for k, v := range l.codes {
		out[k] = v
	}
	return out
}

func (l *load) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var codes []string
	keys := make([]int, 0, len(l.codes))
	for k := range l.codes {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	for _, k := range keys {
		codes = append(codes, fmt.Sprintf("%d×%d", l.codes[k], k))
	}
	return fmt.Sprintf("%d leads accepted (%d needed a retry, longest %s to acceptance), answers %s, %d connection errors, %d given up",
		len(l.leads), l.retried, l.maxWait.Round(time.Millisecond), strings.Join(codes, " "), l.connErrs, l.gaveUp)
}

func ids(ls []lead) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.id
	}
	return out
}
