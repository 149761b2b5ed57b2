// Package report renders the weekly leads report: the roll-ups of a week and
// of the week before go in; an HTML email whose charts are drawn with tables,
// its plain-text alternative, and a CSV of the week's detail rows come out.
// It reads nothing and sends nothing; package handlers does both.
//
// The HTML is written for mail clients, not browsers: Gmail and Outlook drop
// SVG, <style> blocks and CSS flex or grid, so every chart is nested tables
// whose bgcolor cells have widths proportional to the values, every style is
// inline, and the body is at most 600px wide.
package report

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"slices"
	"strings"
	"text/template"
	"time"
)

// Row is one group of the roll-ups, as store.Stats answers it: the fields
// not grouped by are empty.
type Row struct {
	Day      string // YYYY-MM-DD (UTC)
	Course   string
	Site     string
	Campaign string
	Source   string

	Leads          int64
	MarketingOptIn int64
	// Channel name → count.
	Delivered, Failed, Skipped map[string]int64
	// Spend is known per campaign (and day), never per course, campus or
	// source.
	Spend *float64
}

// Input is everything one weekly report shows.
type Input struct {
	// Monday starts the week, 00:00 UTC; the week is Monday to Sunday in
	// UTC days.
	Monday time.Time
	// Detail and PrevDetail are the rows of the week and of the week
	// before, grouped by day, course, site, campaign and source.
	Detail, PrevDetail []Row
	// Campaigns and PrevCampaigns are grouped by campaign only, with Spend
	// where Meta spend is known.
	Campaigns, PrevCampaigns []Row
	// CampaignDays are grouped by day and campaign; the CSV lists those
	// with spend.
	CampaignDays []Row
	// Download is the CSV's link; nil when there is none.
	Download *Download
	// Location is where times (the link's expiry) are shown; nil is UTC.
	Location *time.Location
}

// Download is a time-limited link to the week's CSV.
type Download struct {
	URL     string
	Expires time.Time
}

// Email is a rendered report.
type Email struct {
	Subject string
	HTML    string
	Text    string
}

//go:embed templates
var templatesFS embed.FS

var (
	htmlTmpl = htmltemplate.Must(htmltemplate.New("weekly.html").ParseFS(templatesFS, "templates/weekly.html"))
	textTmpl = template.Must(template.New("weekly.txt").Funcs(template.FuncMap{"upper": strings.ToUpper}).ParseFS(templatesFS, "templates/weekly.txt"))
)

// Render renders the report of in.
func Render(in Input) (Email, error) {
	if err := in.validate(); err != nil {
		return Email{}, fmt.Errorf("render report: %w", err)
	}
	v := build(in)
	var h, t bytes.Buffer
	if err := htmlTmpl.Execute(&h, v); err != nil {
		return Email{}, fmt.Errorf("render report html: %w", err)
	}
	if err := textTmpl.Execute(&t, v); err != nil {
		return Email{}, fmt.Errorf("render report text: %w", err)
	}
	return Email{Subject: v.Subject, HTML: h.String(), Text: t.String()}, nil
}

func (in Input) validate() error {
	m := in.Monday
	if m.Weekday() != time.Monday || m.Location() != time.UTC || !m.Equal(m.Truncate(24*time.Hour)) {
		return fmt.Errorf("week must start on a Monday at 00:00 UTC, got %s", m.Format(time.RFC3339))
	}
	var errs []error
	for _, r := range slices.Concat(in.Detail, in.PrevDetail, in.CampaignDays) {
		if _, err := time.Parse(time.DateOnly, r.Day); err != nil {
			errs = append(errs, fmt.Errorf("row without a valid day %q", r.Day))
			break
		}
	}
	return errors.Join(errs...)
}

// Monday is the Monday (00:00 UTC) of the ISO week t falls in, in UTC.
func Monday(t time.Time) time.Time {
	t = t.UTC()
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return d.AddDate(0, 0, -((int(d.Weekday()) + 6) % 7))
}

// channelOrder puts the channels a lead goes through first in the order
// sales care about; others follow by name.
var channelOrder = []string{"welcome_email", "whatsapp", "mailchimp", "meta"}

var channelNames = map[string]string{
	"welcome_email": "Email de bienvenida",
	"whatsapp":      "WhatsApp a comerciales",
	"mailchimp":     "Mailchimp (lista)",
	"meta":          "Meta (Conversions API)",
}

func channelName(ch string) string {
	if n, ok := channelNames[ch]; ok {
		return n
	}
	return ch
}

func sortChannels(chs []string) {
	rank := func(c string) int {
		if i := slices.Index(channelOrder, c); i >= 0 {
			return i
		}
		return len(channelOrder)
	}
	slices.SortFunc(chs, func(a, b string) int {
		if d := rank(a) - rank(b); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
}

// channels lists every channel the rows mention, in display order.
func channels(rows ...[]Row) []string {
	seen := map[string]bool{}
	var out []string
	for _, rs := range rows {
		for _, r := range rs {
			for _, m := range []map[string]int64{r.Delivered, r.Failed, r.Skipped} {
				for ch := range m {
					if !seen[ch] {
						seen[ch] = true
						out = append(out, ch)
					}
				}
			}
		}
	}
	sortChannels(out)
	return out
}
