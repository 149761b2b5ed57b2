package hcaptcha_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cepcomunicacion/cepjobs/internal/hcaptcha"
)

// fakeSiteverify checks each request the way hCaptcha documents it: POST,
// form-encoded, secret + response (+ remoteip, sitekey).
func fakeSiteverify(t *testing.T, secret string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			t.Errorf("method: got %s, want POST", r.Method)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
			t.Errorf("content type: got %q", ct)
		}
		if err := r.ParseForm(); err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		switch {
		case r.PostForm.Get("secret") != secret:
			body = map[string]any{"success": false, "error-codes": []string{"invalid-input-secret"}}
		case r.PostForm.Get("response") == "good" && r.PostForm.Get("remoteip") == "203.0.113.7":
			body = map[string]any{"success": true, "hostname": "example.com"}
		case r.PostForm.Get("response") == "boom":
			http.Error(w, "oops", http.StatusBadGateway)
			return
		default:
			body = map[string]any{"success": false, "error-codes": []string{"invalid-input-response"}}
		}
		_ = json.NewEncoder(w).Encode(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestVerify(t *testing.T) {
	srv := fakeSiteverify(t, "0x-secret")
	v := hcaptcha.New(hcaptcha.Config{Secret: "0x-secret", VerifyURL: srv.URL}, srv.Client())
	ctx := context.Background()
	if err := v.Verify(ctx, "good", "203.0.113.7"); err != nil {
		t.Errorf("good token: %v", err)
	}
	for token, want := range map[string]error{"bad": hcaptcha.ErrRejected, "": hcaptcha.ErrRejected, "boom": hcaptcha.ErrUnavailable} {
		if err := v.Verify(ctx, token, "203.0.113.7"); !errors.Is(err, want) {
			t.Errorf("token %q: got %v, want %v", token, err, want)
		}
	}
	wrong := hcaptcha.New(hcaptcha.Config{Secret: "other", VerifyURL: srv.URL}, srv.Client())
	if err := wrong.Verify(ctx, "good", ""); !errors.Is(err, hcaptcha.ErrUnavailable) {
		t.Errorf("wrong secret: got %v, want ErrUnavailable (our fault, not the user's)", err)
	}
	srv.Close()
	if err := v.Verify(ctx, "good", ""); !errors.Is(err, hcaptcha.ErrUnavailable) {
		t.Errorf("server down: got %v, want ErrUnavailable", err)
	}
}
