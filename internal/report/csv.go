package report

import (
	"cmp"
	"encoding/csv"
	"io"
	"slices"
	"strconv"
	"strings"
)

// CSVContentType is the CSV's media type.
const CSVContentType = "text/csv; charset=utf-8"

// WriteCSV writes the week's detail rows to w and returns how many rows it
// wrote (the header not counted). Rows are the roll-ups by day, course,
// site, campaign and source, then one row per campaign and day with spend,
// whose course, site and source are "*" (as in cepjobs.stats_daily) and
// whose lead columns are empty, so summing a column never counts a lead
// twice.
//
// The file starts with a UTF-8 byte order mark, without which Excel reads
// it in the local code page; numbers use a decimal point, for programs.
func WriteCSV(w io.Writer, in Input) (int64, error) {
	if _, err := io.WriteString(w, "\uFEFF"); err != nil {
		return 0, err
	}
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	chs := channels(in.Detail)
	header := []string{"day", "course", "site", "campaign", "source", "leads", "marketing_optin"}
	for _, ch := range chs {
		header = append(header, ch+"_delivered", ch+"_failed", ch+"_skipped")
	}
	header = append(header, "spend_eur", "cost_per_lead_eur")
	if err := cw.Write(header); err != nil {
		return 0, err
	}

	detail := slices.Clone(in.Detail)
	slices.SortStableFunc(detail, func(a, b Row) int {
		return cmp.Or(strings.Compare(a.Day, b.Day), strings.Compare(a.Course, b.Course), strings.Compare(a.Site, b.Site),
			strings.Compare(a.Campaign, b.Campaign), strings.Compare(a.Source, b.Source))
	})
	var n int64
	rec := make([]string, len(header))
	for _, r := range detail {
		rec = rec[:0]
		rec = append(rec, r.Day, cell(r.Course), cell(r.Site), cell(r.Campaign), cell(r.Source),
			strconv.FormatInt(r.Leads, 10), strconv.FormatInt(r.MarketingOptIn, 10))
		for _, ch := range chs {
			rec = append(rec, strconv.FormatInt(r.Delivered[ch], 10), strconv.FormatInt(r.Failed[ch], 10), strconv.FormatInt(r.Skipped[ch], 10))
		}
		rec = append(rec, "", "")
		if err := cw.Write(rec); err != nil {
			return n, err
		}
		n++
	}

	spend := slices.Clone(in.CampaignDays)
	slices.SortStableFunc(spend, func(a, b Row) int {
		return cmp.Or(strings.Compare(a.Day, b.Day), strings.Compare(a.Campaign, b.Campaign))
	})
	for _, r := range spend {
		if r.Spend == nil {
			continue
		}
		rec = rec[:0]
		rec = append(rec, r.Day, "*", "*", cell(r.Campaign), "*", "", "")
		for range chs {
			rec = append(rec, "", "", "")
		}
		cpl := ""
		if r.Leads > 0 {
			cpl = strconv.FormatFloat(*r.Spend/float64(r.Leads), 'f', 2, 64)
		}
		rec = append(rec, strconv.FormatFloat(*r.Spend, 'f', 2, 64), cpl)
		if err := cw.Write(rec); err != nil {
			return n, err
		}
		n++
	}
	cw.Flush()
	return n, cw.Error()
}

// cell defuses CSV injection (OWASP): a value a spreadsheet would take for
// a formula gets a leading single quote. Course, campaign and source names
// come from forms and the CMS.
func cell(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}
