package report_test

import (
	"bytes"
	"encoding/csv"
	"flag"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cepcomunicacion/cepjobs/internal/report"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var monday = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

func day(d int) string { return monday.AddDate(0, 0, d).Format(time.DateOnly) }

func money(v float64) *float64 { return &v }

// small is a week whose bars are easy to work out by hand: the longest day
// is Monday (800 leads), so every width is leads / 800.
func small() report.Input {
	return report.Input{
		Monday: monday,
		Detail: []report.Row{
			{Day: day(0), Course: "a", Source: "web", Leads: 600, MarketingOptIn: 300, Delivered: map[string]int64{"welcome_email": 590}, Failed: map[string]int64{"welcome_email": 10}},
			{Day: day(0), Course: "b", Source: "meta", Leads: 200, MarketingOptIn: 100, Delivered: map[string]int64{"welcome_email": 200}},
			{Day: day(1), Course: "a", Source: "web", Leads: 400, MarketingOptIn: 200, Skipped: map[string]int64{"welcome_email": 400}},
			{Day: day(2), Course: "b", Source: "meta", Leads: 34, MarketingOptIn: 17},
		},
		PrevDetail: []report.Row{
			{Day: monday.AddDate(0, 0, -7).Format(time.DateOnly), Course: "a", Source: "web", Leads: 500, MarketingOptIn: 100},
		},
		Campaigns: []report.Row{
			{Campaign: "x", Leads: 50, Spend: money(1234.5)},
			{Campaign: "y", Leads: 20, Spend: money(240)},
			{Campaign: "", Leads: 1164},
		},
		PrevCampaigns: []report.Row{{Campaign: "x", Leads: 50, Spend: money(1000)}},
		Download:      &report.Download{URL: "https://s3.example.com/cep-exports/reports/weekly/2026-11-23.csv?X-Amz-Signature=abc&X-Amz-Expires=604800", Expires: monday.AddDate(0, 0, 14).Add(6 * time.Hour)},
	}
}

// barCell matches one coloured cell of a bar: its width, colour and title.
var barCell = regexp.MustCompile(`<td width="(\d+)%" height="(\d+)" bgcolor="(#[0-9A-Fa-f]{6})" title="([^"]*)"`)

type cell struct {
	Width, Height int
	Color, Title  string
}

func cells(t *testing.T, doc string) []cell {
	t.Helper()
	var out []cell
	for _, m := range barCell.FindAllStringSubmatch(doc, -1) {
		w, _ := strconv.Atoi(m[1])
		h, _ := strconv.Atoi(m[2])
		out = append(out, cell{Width: w, Height: h, Color: m[3], Title: html.UnescapeString(m[4])})
	}
	return out
}

func widthOf(cs []cell, title string) int {
	for _, c := range cs {
		if c.Title == title {
			return c.Width
		}
	}
	return -1
}

func TestRenderDrawsBarsWithTables(t *testing.T) {
	t.Parallel()
	e, err := report.Render(small())
	if err != nil {
		t.Fatal(err)
	}
	for _, banned := range []string{"<svg", "display:flex", "display: flex", "display:grid", "<style", "<script", "<img"} {
		if strings.Contains(strings.ToLower(e.HTML), banned) {
			t.Errorf("html contains %q, which Gmail or Outlook do not render", banned)
		}
	}
	if !strings.Contains(e.HTML, "max-width:600px") {
		t.Error("html: no max-width:600px body")
	}
	cs := cells(t, e.HTML)
	// Monday: a=600 and b=200 of a scale of 800; Tuesday a=400; Wednesday
	// b=34 (4.25%); last week's Monday 500 (62.5%, rounded up).
	for title, want := range map[string]int{
		"a: 600": 75, "b: 200": 25, "a: 400": 50, "b: 34": 4, "semana anterior: 500": 63,
		// By source the same days, other names.
		"web: 600": 75, "meta: 200": 25, "web: 400": 50, "meta: 34": 4,
		// Cost per lead: x 1.234,50 € / 50 = 24,69 € is the scale; y 12 €;
		// x last week 20 €.
		"coste por lead: 24,69\u00a0€": 100, "coste por lead: 12,00\u00a0€": 49, "semana anterior: 20,00\u00a0€": 81,
		// welcome_email: 790 delivered, 10 failed, 400 skipped of 1.200.
		"entregados: 790": 66, "fallidos: 10": 1, "omitidos: 400": 33,
	} {
		if got := widthOf(cs, title); got != want {
			t.Errorf("bar %q: got width %d%%, want %d%%", title, got, want)
		}
	}
	// Every bar's cells fill its row: coloured cells plus the empty rest.
	rows := regexp.MustCompile(`(?s)<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="width:100%;border-collapse:collapse;"><tr>(.*?)</tr></table>`).FindAllStringSubmatch(e.HTML, -1)
	if len(rows) < 28 {
		t.Fatalf("got %d bars, want at least 28 (7 days × 2 weeks × 2 charts)", len(rows))
	}
	for _, r := range rows {
		total := 0
		for _, m := range regexp.MustCompile(`<td width="(\d+)%"`).FindAllStringSubmatch(r[1], -1) {
			n, _ := strconv.Atoi(m[1])
			total += n
		}
		if total != 100 {
			t.Errorf("bar cells add up to %d%%, want 100%%: %s", total, r[1])
		}
	}
	for _, want := range []string{
		"Semana del 23 al 29 de noviembre de 2026",
		">1.234<",             // leads
		"50,0\u00a0%",         // opt-in 617 of 1.234
		"1.474,50\u00a0€",     // spend of x and y
		"▲\u00a0146,8\u00a0%", // leads against 500
		"lun 23/11", "mié 25/11", "dom 29/11",
		"tasa de entrega 98,8\u00a0%",
		"7 de diciembre de 2026, 06:00 (UTC)",
		`href="https://s3.example.com/cep-exports/reports/weekly/2026-11-23.csv?X-Amz-Signature=abc&amp;X-Amz-Expires=604800"`,
	} {
		if !strings.Contains(e.HTML, want) {
			t.Errorf("html: no %q", want)
		}
	}
	if want := "Informe semanal de leads: semana del 23 al 29 de noviembre de 2026"; e.Subject != want {
		t.Errorf("subject: got %q, want %q", e.Subject, want)
	}
}

func TestRenderPlainText(t *testing.T) {
	t.Parallel()
	e, err := report.Render(small())
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(e.Text, "<>") {
		t.Errorf("text has markup:\n%s", e.Text)
	}
	for _, want := range []string{
		"INFORME SEMANAL DE LEADS", "Semana del 23 al 29 de noviembre de 2026",
		"- Leads: 1.234 (▲\u00a0146,8\u00a0%); semana anterior: 500",
		"- Coste por lead: 21,06\u00a0€ (▲\u00a05,3\u00a0%); semana anterior: 20,00\u00a0€",
		"- x: 24,69\u00a0€ (semana anterior: 20,00\u00a0€); inversión 1.234,50\u00a0€ · 50 leads",
		"- a: 1.000 (semana anterior 500, ▲\u00a0100,0\u00a0%)",
		"lun 23/11     800    (500)  ████████████████████████",
		"https://s3.example.com/cep-exports/reports/weekly/2026-11-23.csv?X-Amz-Signature=abc&X-Amz-Expires=604800",
	} {
		if !strings.Contains(e.Text, want) {
			t.Errorf("text: no %q in\n%s", want, e.Text)
		}
	}
}

func TestSpanishNumbers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ got, want string }{
		{report.Int(0), "0"},
		{report.Int(999), "999"},
		{report.Int(1234), "1.234"},
		{report.Int(-1234567), "-1.234.567"},
		{report.Decimal(1234.5, 1), "1.234,5"},
		{report.Decimal(-0.04, 1), "0,0"},
		{report.Decimal(-1234.56, 1), "-1.234,6"},
		{report.Euro(1234.5), "1.234,50\u00a0€"},
		{report.Euro(0.125), "0,13\u00a0€"},
		{report.Percent(0.4567), "45,7\u00a0%"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestWeekAcrossMonthsAndYears(t *testing.T) {
	t.Parallel()
	for monday, want := range map[string]string{
		"2026-11-30": "semana del 30 de noviembre al 6 de diciembre de 2026",
		"2026-12-28": "semana del 28 de diciembre de 2026 al 3 de enero de 2027",
	} {
		m, _ := time.Parse(time.DateOnly, monday)
		e, err := report.Render(report.Input{Monday: m})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(e.Subject, want) {
			t.Errorf("%s: got subject %q, want it to end %q", monday, e.Subject, want)
		}
	}
}

func TestRenderRefusesAWeekNotStartingMonday(t *testing.T) {
	t.Parallel()
	for _, m := range []time.Time{monday.AddDate(0, 0, 1), monday.Add(time.Hour), monday.In(time.FixedZone("x", 3600))} {
		if _, err := report.Render(report.Input{Monday: m}); err == nil {
			t.Errorf("%s: got nil error", m)
		}
	}
}

func TestMonday(t *testing.T) {
	t.Parallel()
	madrid := time.FixedZone("CET", 3600)
	for _, tc := range []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 11, 30, 7, 0, 0, 0, madrid), "2026-11-30"},
		{time.Date(2026, 11, 30, 0, 30, 0, 0, madrid), "2026-11-23"}, // still Sunday in UTC
		{time.Date(2026, 12, 6, 23, 59, 0, 0, time.UTC), "2026-11-30"},
		{time.Date(2027, 1, 1, 12, 0, 0, 0, time.UTC), "2026-12-28"},
	} {
		if got := report.Monday(tc.in).Format(time.DateOnly); got != tc.want {
			t.Errorf("Monday(%s): got %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestCSV(t *testing.T) {
	t.Parallel()
	in := small()
	in.Detail = append(in.Detail, report.Row{Day: day(3), Course: "=HYPERLINK(\"x\")", Source: "web", Leads: 1})
	in.CampaignDays = []report.Row{
		{Day: day(0), Campaign: "x", Leads: 30, Spend: money(1000)},
		{Day: day(1), Campaign: "x", Leads: 0, Spend: money(234.5)},
		{Day: day(1), Campaign: "", Leads: 400},
	}
	var buf bytes.Buffer
	n, err := report.WriteCSV(&buf, in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(buf.Bytes(), []byte("\uFEFF")) {
		t.Error("no byte order mark")
	}
	recs, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(buf.Bytes(), []byte("\uFEFF")))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"day", "course", "site", "campaign", "source", "leads", "marketing_optin", "welcome_email_delivered", "welcome_email_failed", "welcome_email_skipped", "spend_eur", "cost_per_lead_eur"},
		{"2026-11-23", "a", "", "", "web", "600", "300", "590", "10", "0", "", ""},
		{"2026-11-23", "b", "", "", "meta", "200", "100", "200", "0", "0", "", ""},
		{"2026-11-23", "*", "*", "x", "*", "", "", "", "", "", "1000.00", "33.33"},
		{"2026-11-24", "a", "", "", "web", "400", "200", "0", "0", "400", "", ""},
		{"2026-11-24", "*", "*", "x", "*", "", "", "", "", "", "234.50", ""},
		{"2026-11-25", "b", "", "", "meta", "34", "17", "0", "0", "0", "", ""},
		{"2026-11-26", `'=HYPERLINK("x")`, "", "", "web", "1", "0", "0", "0", "0", "", ""},
	}
	// The spend rows come after the detail rows; compare them sorted by day
	// as a reader would.
	got := append([][]string{recs[0]}, sortByDay(recs[1:])...)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("csv (-want +got):\n%s", diff)
	}
	if n != int64(len(want)-1) {
		t.Errorf("rows: got %d, want %d", n, len(want)-1)
	}
}

func sortByDay(recs [][]string) [][]string {
	out := make([][]string, 0, len(recs))
	for d := range 7 {
		for _, spend := range []bool{false, true} {
			for _, r := range recs {
				if r[0] == day(d) && (r[1] == "*") == spend {
					out = append(out, r)
				}
			}
		}
	}
	return out
}

// sample is a realistic week: seven courses (one ends up in "Otros"),
// three sources, two campaigns with Meta spend and one without.
func sample() report.Input {
	courses := []string{"marketing-digital", "diseno-grafico", "fotografia", "community-manager", "seo-sem", "ux-ui", "edicion-video"}
	sources := []string{"web-form", "meta-leadgen", "landing"}
	sites := []string{"madrid", "barcelona"}
	in := report.Input{Monday: monday, Location: time.FixedZone("CET", 3600)}
	week := func(start time.Time, boost int) []report.Row {
		var rows []report.Row
		for d := range 7 {
			for ci, c := range courses {
				for si, s := range sources {
					site := sites[(ci+si+d)%2]
					n := int64((17*(d+1)+13*(ci+1)+7*(si+1)+boost)%23 + 2*(len(courses)-ci))
					if d >= 5 {
						n /= 3 // weekends are quieter
					}
					campaign := ""
					if s == "meta-leadgen" {
						campaign = []string{"black-friday-2026", "otono-2026"}[ci%2]
					} else if s == "landing" {
						campaign = "google-ads-brand"
					}
					rows = append(rows, report.Row{
						Day: start.AddDate(0, 0, d).Format(time.DateOnly), Course: c, Site: site, Campaign: campaign, Source: s,
						Leads: n, MarketingOptIn: n * int64(40+ci*5) / 100,
						Delivered: map[string]int64{"welcome_email": n, "whatsapp": n - n/20, "mailchimp": n * int64(40+ci*5) / 100, "meta": n / 2},
						Failed:    map[string]int64{"whatsapp": n / 20},
						Skipped:   map[string]int64{"mailchimp": n - n*int64(40+ci*5)/100, "meta": n - n/2},
					})
				}
			}
		}
		return rows
	}
	in.Detail = week(monday, 0)
	in.PrevDetail = week(monday.AddDate(0, 0, -7), 5)
	byCampaign := func(rows []report.Row, spend map[string]float64) []report.Row {
		leads := map[string]int64{}
		for _, r := range rows {
			leads[r.Campaign] += r.Leads
		}
		var out []report.Row
		for _, c := range []string{"", "black-friday-2026", "google-ads-brand", "otono-2026"} {
			r := report.Row{Campaign: c, Leads: leads[c]}
			if v, ok := spend[c]; ok {
				r.Spend = money(v)
			}
			out = append(out, r)
		}
		return out
	}
	in.Campaigns = byCampaign(in.Detail, map[string]float64{"black-friday-2026": 1834.6, "otono-2026": 712.25})
	in.PrevCampaigns = byCampaign(in.PrevDetail, map[string]float64{"black-friday-2026": 1502.1, "otono-2026": 801.9})
	for d := range 7 {
		in.CampaignDays = append(in.CampaignDays,
			report.Row{Day: day(d), Campaign: "black-friday-2026", Leads: 30, Spend: money(262.08)},
			report.Row{Day: day(d), Campaign: "otono-2026", Leads: 20, Spend: money(101.75)})
	}
	in.Download = &report.Download{
		URL:     "https://minio.cepcomunicacion.com/cep-exports/reports/weekly/2026-11-23.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=604800",
		Expires: time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC),
	}
	return in
}

// TestGolden renders a realistic week into testdata/weekly.html (open it
// in a browser) and testdata/weekly.txt; go test -update rewrites them.
func TestGolden(t *testing.T) {
	t.Parallel()
	e, err := report.Render(sample())
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]string{"weekly.html": e.HTML, "weekly.txt": "Subject: " + e.Subject + "\n\n" + e.Text} {
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update to write it)", err)
		}
		if diff := cmp.Diff(string(want), got); diff != "" {
			t.Errorf("%s differs (-want +got; go test -update if intended):\n%s", name, diff)
		}
	}
}

// TestLargeWeekStaysUnderGmailClipping: Gmail hides whatever follows the
// first 102 KB of a message behind "[Message clipped]".
func TestLargeWeekStaysUnderGmailClipping(t *testing.T) {
	t.Parallel()
	in := sample()
	for i := range 60 {
		c := fmt.Sprintf("campaña-de-prueba-con-nombre-largo-%02d", i)
		in.Campaigns = append(in.Campaigns, report.Row{Campaign: c, Leads: int64(10 + i), Spend: money(float64(100 + i))})
		for d := range 7 {
			in.Detail = append(in.Detail, report.Row{Day: day(d), Course: fmt.Sprintf("curso-%02d", i), Source: fmt.Sprintf("origen-%02d", i), Campaign: c, Leads: 1})
		}
	}
	e, err := report.Render(in)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(e.HTML); n > 100_000 {
		t.Errorf("html: got %d bytes, want at most 100000", n)
	}
	if !strings.Contains(e.HTML, "Y 50 campañas más con gasto") || !strings.Contains(e.Text, "Y 50 campañas más con gasto") {
		t.Error("no note of the campaigns left out of the chart")
	}
}
