package smtpmail_test

import (
	"strings"
	"testing"

	"github.com/cepcomunicacion/cepjobs/internal/smtpmail"
)

func TestWelcome(t *testing.T) {
	t.Parallel()
	subject, text, html := smtpmail.Welcome("Marketing & Ventas", "Ana <b>")
	if want := "Gracias por tu interés en Marketing & Ventas"; subject != want {
		t.Errorf("subject: got %q, want %q", subject, want)
	}
	for _, want := range []string{"Hola, Ana <b>:", "Gracias por tu interés en Marketing & Ventas.", "El equipo de CEP Formación"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	for _, want := range []string{"Hola, Ana &lt;b&gt;:", "<strong>Marketing &amp; Ventas</strong>", `<html lang="es">`, "<title>Gracias por tu interés en Marketing &amp; Ventas</title>"} {
		if !strings.Contains(html, want) {
			t.Errorf("html lacks %q:\n%s", want, html)
		}
	}
	if strings.Contains(html, "<b>") {
		t.Errorf("html carries the name unescaped:\n%s", html)
	}
}

func TestWelcomeWithoutCourseOrName(t *testing.T) {
	t.Parallel()
	subject, text, html := smtpmail.Welcome("", "")
	if want := "Gracias por tu interés en CEP Formación"; subject != want {
		t.Errorf("subject: got %q, want %q", subject, want)
	}
	if !strings.HasPrefix(text, "Hola:\n") || !strings.Contains(text, "interés en nuestra formación.") {
		t.Errorf("text reads badly without a name or course:\n%s", text)
	}
	if !strings.Contains(html, "Hola:</p>") {
		t.Errorf("html reads badly without a name:\n%s", html)
	}
}

func TestWelcomeSubjectIsOneLine(t *testing.T) {
	t.Parallel()
	subject, _, _ := smtpmail.Welcome("Curso\r\nBcc: x@example.com", "Ana")
	if strings.ContainsAny(subject, "\r\n") {
		t.Errorf("subject %q has a line break", subject)
	}
}
