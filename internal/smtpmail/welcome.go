package smtpmail

import (
	"bytes"
	"embed"
	htmltemplate "html/template"
	"io"
	"strings"
	texttemplate "text/template"
)

//go:embed templates/welcome.txt templates/welcome.html
var templateFS embed.FS

// The text parts go through text/template (html/template would turn "&"
// into "&amp;" in a plain-text body and subject); the HTML part through
// html/template, which escapes the lead's name and the course.
var (
	welcomeText = texttemplate.Must(texttemplate.ParseFS(templateFS, "templates/welcome.txt"))
	welcomeHTML = htmltemplate.Must(htmltemplate.ParseFS(templateFS, "templates/welcome.html"))
)

type welcomeData struct {
	Course, FirstName, Subject string
}

// Welcome renders the welcome email for a lead interested in course.
// Either argument may be empty; the copy still reads well.
func Welcome(course, firstName string) (subject, text, html string) {
	d := welcomeData{Course: oneLine(course), FirstName: oneLine(firstName)}
	subject = render(welcomeText, "subject", d)
	d.Subject = subject
	text = render(welcomeText, "text", d) + "\n"
	html = render(welcomeHTML, "welcome.html", d)
	return subject, text, html
}

// renderer is what text/template and html/template have in common.
type renderer interface {
	ExecuteTemplate(w io.Writer, name string, data any) error
}

func render(t renderer, name string, d welcomeData) string {
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, name, d); err != nil {
		// The templates are embedded and take only strings: an error here
		// is a bug in them, caught by the tests.
		panic("smtpmail: render " + name + ": " + err.Error())
	}
	return strings.TrimSpace(b.String())
}
