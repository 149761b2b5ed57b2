package report

import (
	"cmp"
	htmltemplate "html/template"
	"math"
	"slices"
	"strings"
	"time"
)

// Colours. The series palette is Okabe–Ito without its yellow, which is
// unreadable on white: it stays distinguishable for the colour-blind.
var palette = [...]string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00"}

const (
	colorOther     = "#8C959F"
	colorPrev      = "#C8CDD2"
	colorDelivered = "#009E73"
	colorFailed    = "#D55E00"
	colorSkipped   = "#BFC5CC"
	colorUp        = "#1A7F37"
	colorDown      = "#CF222E"
	colorFlat      = "#6E7781"
	colorCost      = "#0072B2"
)

// maxSeries is how many courses or sources get their own colour; the rest
// are summed as "Otros".
const maxSeries = len(palette)

// maxCosts bounds the cost-per-lead chart to the campaigns that spent the
// most, and so the email's size: Gmail clips a message past 102 KB.
const maxCosts = 12

const (
	barHeight  = 16
	prevHeight = 6
)

// view is what the templates render.
type view struct {
	Subject   string
	Period    string // "del 23 al 29 de noviembre de 2026"
	Preheader string
	KPIs      []kpi
	ByCourse  stacked
	BySource  stacked
	Channels  []channelRow
	Costs     []costRow
	CostsMore string // how many campaigns with spend are left out
	Download  *downloadView
	// Around the body for Outlook on Windows, which ignores max-width:
	// conditional comments, which html/template would otherwise strip.
	MSOOpen, MSOClose htmltemplate.HTML
}

type kpi struct {
	Label, Value      string
	Delta, DeltaColor string
	Note              string
}

// stacked is a chart of one stacked horizontal bar per day, a thin grey bar
// under it for the same weekday of the week before.
type stacked struct {
	Title    string
	Subtitle string
	Legend   []legendItem
	Days     []dayRow
}

type legendItem struct {
	Color, Label      string
	Value             string // the week's total
	Delta, DeltaColor string
	Prev              string // the week before's total, for the text
}

type dayRow struct {
	Label     string
	Total     string
	PrevTotal string
	Bar, Prev bar
	Text      string // a bar of block characters for the plain text
}

// bar is one row of cells: Segments then an empty Rest, widths in percent
// of the chart's scale, adding up to 100.
type bar struct {
	Segments []segment
	Rest     int
	Height   int
}

type segment struct {
	Color string
	Width int // percent
	Title string
}

type channelRow struct {
	Label   string
	Bar     bar
	Summary string // "120 entregados · 3 fallidos · 40 omitidos"
	Rate    string // "tasa de entrega 97,6 % (semana anterior 95,0 %)"
}

type costRow struct {
	Campaign  string
	Detail    string // "inversión 1.234,00 € · 100 leads"
	Value     string
	PrevValue string
	Bar, Prev bar
}

type downloadView struct {
	URL     string
	Expires string
}

type totals struct {
	leads, optin               int64
	delivered, failed, skipped map[string]int64
}

func sum(rows []Row) totals {
	t := totals{delivered: map[string]int64{}, failed: map[string]int64{}, skipped: map[string]int64{}}
	for _, r := range rows {
		t.leads += r.Leads
		t.optin += r.MarketingOptIn
		for ch, n := range r.Delivered {
			t.delivered[ch] += n
		}
		for ch, n := range r.Failed {
			t.failed[ch] += n
		}
		for ch, n := range r.Skipped {
			t.skipped[ch] += n
		}
	}
	return t
}

// spendTotals adds up the campaigns with known spend: their spend and their
// leads (cost per lead is only meaningful over the same campaigns).
func spendTotals(rows []Row) (spend float64, leads int64, ok bool) {
	for _, r := range rows {
		if r.Spend != nil {
			spend += *r.Spend
			leads += r.Leads
			ok = true
		}
	}
	return spend, leads, ok
}

func build(in Input) view {
	loc := in.Location
	if loc == nil {
		loc = time.UTC
	}
	cur, prev := sum(in.Detail), sum(in.PrevDetail)
	v := view{
		Period:   weekRange(in.Monday),
		MSOOpen:  `<!--[if mso]><table role="presentation" width="600" align="center" cellpadding="0" cellspacing="0" border="0"><tr><td><![endif]-->`,
		MSOClose: `<!--[if mso]></td></tr></table><![endif]-->`,
	}
	v.Subject = "Informe semanal de leads: semana " + v.Period

	// Headline figures.
	leadsDelta, leadsColor := change(float64(cur.leads), float64(prev.leads), false)
	v.KPIs = append(v.KPIs, kpi{Label: "Leads", Value: Int(cur.leads), Delta: leadsDelta, DeltaColor: leadsColor,
		Note: "semana anterior: " + Int(prev.leads)})
	k := kpi{Label: "Opt-in marketing", Value: "—", Note: "sin leads"}
	if cur.leads > 0 {
		rate := ratio(cur.optin, cur.leads)
		k.Value, k.Note = Percent(rate), Int(cur.optin)+" de "+Int(cur.leads)
		if prev.leads > 0 {
			k.Delta, k.DeltaColor = points(rate, ratio(prev.optin, prev.leads))
		}
	}
	v.KPIs = append(v.KPIs, k)
	spend, spendLeads, hasSpend := spendTotals(in.Campaigns)
	prevSpend, prevSpendLeads, prevHasSpend := spendTotals(in.PrevCampaigns)
	k = kpi{Label: "Inversión", Value: "—", Note: "sin datos de Meta"}
	if hasSpend {
		k.Value, k.Note = Euro(spend), "campañas con gasto conocido"
		if prevHasSpend {
			k.Delta, k.DeltaColor = change(spend, prevSpend, false)
			k.DeltaColor = colorFlat // spending more is neither good nor bad
			k.Note = "semana anterior: " + Euro(prevSpend)
		}
	}
	v.KPIs = append(v.KPIs, k)
	k = kpi{Label: "Coste por lead", Value: "—", Note: "sin datos de Meta"}
	if hasSpend && spendLeads > 0 {
		cpl := spend / float64(spendLeads)
		k.Value, k.Note = Euro(cpl), Int(spendLeads)+" leads de campañas"
		if prevHasSpend && prevSpendLeads > 0 {
			prevCPL := prevSpend / float64(prevSpendLeads)
			k.Delta, k.DeltaColor = change(cpl, prevCPL, true)
			k.Note = "semana anterior: " + Euro(prevCPL)
		}
	}
	v.KPIs = append(v.KPIs, k)
	v.Preheader = Int(cur.leads) + " leads"
	if leadsDelta != "" {
		v.Preheader += " (" + leadsDelta + ")"
	}
	if hasSpend && spendLeads > 0 {
		v.Preheader += " · coste por lead " + Euro(spend/float64(spendLeads))
	}
	v.Preheader += " · semana " + v.Period

	v.ByCourse = dayChart(in, "Leads por día y curso", func(r Row) string { return r.Course })
	v.BySource = dayChart(in, "Leads por día y origen", func(r Row) string { return r.Source })
	v.Channels = channelRows(in, cur, prev)
	v.Costs = costRows(in)
	if n := len(v.Costs) - maxCosts; n > 0 {
		v.Costs = v.Costs[:maxCosts]
		v.CostsMore = "Y " + Int(int64(n)) + " campañas más con gasto, de menos inversión: están en el CSV."
		if n == 1 {
			v.CostsMore = "Y una campaña más con gasto, de menos inversión: está en el CSV."
		}
	}
	if in.Download != nil {
		v.Download = &downloadView{URL: in.Download.URL, Expires: dateTime(in.Download.Expires, loc)}
	}
	return v
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// change describes cur against prev as "▲ 12,3 %", coloured good or bad.
func change(cur, prev float64, lowerIsBetter bool) (string, string) {
	switch {
	case prev == 0 && cur == 0:
		return "= igual", colorFlat
	case prev == 0:
		return "nuevo", colorFlat
	}
	pct := (cur - prev) / prev
	if math.Abs(pct) < 0.0005 {
		return "= 0,0" + nbsp + "%", colorFlat
	}
	good := pct > 0 != lowerIsBetter
	color := colorDown
	if good {
		color = colorUp
	}
	if pct > 0 {
		return "▲" + nbsp + Percent(pct), color
	}
	return "▼" + nbsp + Percent(-pct), color
}

// points describes a change of rate in percentage points.
func points(cur, prev float64) (string, string) {
	d := (cur - prev) * 100
	switch {
	case math.Abs(d) < 0.05:
		return "= 0,0" + nbsp + "p.p.", colorFlat
	case d > 0:
		return "▲" + nbsp + Decimal(d, 1) + nbsp + "p.p.", colorUp
	default:
		return "▼" + nbsp + Decimal(-d, 1) + nbsp + "p.p.", colorDown
	}
}

// widths turns values into cell widths in percent of scale, cumulatively
// rounded so a stacked bar's cells add up to its rounded total.
func widths(values []float64, scale float64) []int {
	out := make([]int, len(values))
	if scale <= 0 {
		return out
	}
	var cum float64
	edge := 0
	for i, v := range values {
		cum += v
		next := int(math.Round(math.Min(cum/scale, 1) * 100))
		out[i] = next - edge
		edge = next
	}
	return out
}

// newBar lays values out as one bar (zero-width cells left out).
func newBar(values []float64, colors, titles []string, scale float64, height int) bar {
	b := bar{Height: height, Rest: 100}
	for i, w := range widths(values, scale) {
		if w > 0 {
			b.Segments = append(b.Segments, segment{Color: colors[i], Width: w, Title: titles[i]})
			b.Rest -= w
		}
	}
	return b
}

// textBar is a bar of block characters, 24 to the scale.
func textBar(v, scale float64) string {
	if scale <= 0 || v <= 0 {
		return ""
	}
	n := int(math.Round(v / scale * 24))
	if n == 0 {
		return "▏"
	}
	return strings.Repeat("█", n)
}

// series picks the groups that get their own colour: the week's largest,
// the rest summed as "Otros".
type series struct {
	keys   []string // coloured groups, largest first
	labels []string
	colors []string
	other  bool
	index  map[string]int // key → position; others → len(keys)
}

func pickSeries(rows, prevRows []Row, key func(Row) string) series {
	totals, prev := map[string]int64{}, map[string]int64{}
	for _, r := range rows {
		totals[key(r)] += r.Leads
	}
	for _, r := range prevRows {
		prev[key(r)] += r.Leads
	}
	// Groups with leads in either week: one that dropped to none is news.
	var keys []string
	for _, m := range []map[string]int64{totals, prev} {
		for k, n := range m {
			if n > 0 && !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.SortFunc(keys, func(a, b string) int {
		if totals[a] != totals[b] {
			return cmp.Compare(totals[b], totals[a])
		}
		if prev[a] != prev[b] {
			return cmp.Compare(prev[b], prev[a])
		}
		return strings.Compare(a, b)
	})
	s := series{index: map[string]int{}}
	if len(keys) > maxSeries {
		s.other = true
		keys = keys[:maxSeries-1]
	}
	s.keys = keys
	for i, k := range keys {
		s.index[k] = i
		label := k
		if label == "" {
			label = "(sin valor)"
		}
		s.labels = append(s.labels, label)
		s.colors = append(s.colors, palette[i])
	}
	if s.other {
		s.labels = append(s.labels, "Otros")
		s.colors = append(s.colors, colorOther)
	}
	return s
}

func (s series) slot(k string) int {
	if i, ok := s.index[k]; ok {
		return i
	}
	return len(s.keys) // "Otros"
}

func (s series) size() int { return len(s.labels) }

func dayChart(in Input, title string, key func(Row) string) stacked {
	s := pickSeries(in.Detail, in.PrevDetail, key)
	per := make([][]float64, 7) // day → series → leads
	for i := range per {
		per[i] = make([]float64, s.size())
	}
	var dayTotal, prevTotal [7]float64
	groupTotal := make([]float64, s.size())
	prevGroup := make([]float64, s.size())
	for _, r := range in.Detail {
		d := dayIndex(in.Monday, r.Day)
		if d < 0 {
			continue
		}
		i := s.slot(key(r))
		if i >= s.size() { // only possible for a group with no leads
			continue
		}
		per[d][i] += float64(r.Leads)
		dayTotal[d] += float64(r.Leads)
		groupTotal[i] += float64(r.Leads)
	}
	prevMonday := in.Monday.AddDate(0, 0, -7)
	for _, r := range in.PrevDetail {
		d := dayIndex(prevMonday, r.Day)
		if d < 0 {
			continue
		}
		prevTotal[d] += float64(r.Leads)
		if i := s.slot(key(r)); i < s.size() {
			prevGroup[i] += float64(r.Leads)
		}
	}
	scale := slices.Max(append(dayTotal[:], prevTotal[:]...))
	c := stacked{Title: title, Subtitle: "Cada barra es un día; la gris de debajo, el mismo día de la semana anterior."}
	for i := range s.size() {
		delta, color := change(groupTotal[i], prevGroup[i], false)
		c.Legend = append(c.Legend, legendItem{Color: s.colors[i], Label: s.labels[i], Value: Int(int64(groupTotal[i])),
			Delta: delta, DeltaColor: color, Prev: Int(int64(prevGroup[i]))})
	}
	for d := range 7 {
		titles := make([]string, s.size())
		for i := range titles {
			titles[i] = s.labels[i] + ": " + Int(int64(per[d][i]))
		}
		day := in.Monday.AddDate(0, 0, d)
		c.Days = append(c.Days, dayRow{
			Label:     dayLabel(day),
			Total:     Int(int64(dayTotal[d])),
			PrevTotal: Int(int64(prevTotal[d])),
			Bar:       newBar(per[d], s.colors, titles, scale, barHeight),
			Prev: newBar([]float64{prevTotal[d]}, []string{colorPrev},
				[]string{"semana anterior: " + Int(int64(prevTotal[d]))}, scale, prevHeight),
			Text: textBar(dayTotal[d], scale),
		})
	}
	return c
}

// dayIndex is day's position in the week starting monday, or -1.
func dayIndex(monday time.Time, day string) int {
	t, err := time.Parse(time.DateOnly, day)
	if err != nil {
		return -1
	}
	d := int(t.Sub(monday).Hours() / 24)
	if d < 0 || d > 6 {
		return -1
	}
	return d
}

func channelRows(in Input, cur, prev totals) []channelRow {
	var out []channelRow
	for _, ch := range channels(in.Detail) {
		d, f, s := cur.delivered[ch], cur.failed[ch], cur.skipped[ch]
		total := float64(d + f + s)
		if total == 0 {
			continue
		}
		row := channelRow{
			Label: channelName(ch),
			Bar: newBar([]float64{float64(d), float64(f), float64(s)},
				[]string{colorDelivered, colorFailed, colorSkipped},
				[]string{"entregados: " + Int(d), "fallidos: " + Int(f), "omitidos: " + Int(s)}, total, barHeight),
			Summary: Int(d) + " entregados · " + Int(f) + " fallidos · " + Int(s) + " omitidos",
		}
		if d+f > 0 {
			row.Rate = "tasa de entrega " + Percent(ratio(d, d+f))
			if pd, pf := prev.delivered[ch], prev.failed[ch]; pd+pf > 0 {
				row.Rate += " (semana anterior " + Percent(ratio(pd, pd+pf)) + ")"
			}
		}
		out = append(out, row)
	}
	return out
}

func costRows(in Input) []costRow {
	prevCPL := map[string]float64{}
	for _, r := range in.PrevCampaigns {
		if r.Spend != nil && r.Leads > 0 {
			prevCPL[r.Campaign] = *r.Spend / float64(r.Leads)
		}
	}
	var rows []Row
	scale := 0.0
	for _, r := range in.Campaigns {
		if r.Spend == nil {
			continue
		}
		rows = append(rows, r)
		if r.Leads > 0 {
			scale = math.Max(scale, *r.Spend/float64(r.Leads))
		}
		if p, ok := prevCPL[r.Campaign]; ok {
			scale = math.Max(scale, p)
		}
	}
	// Largest spend first: that is where a cost per lead matters most.
	slices.SortStableFunc(rows, func(a, b Row) int {
		switch {
		case *a.Spend > *b.Spend:
			return -1
		case *a.Spend < *b.Spend:
			return 1
		}
		return strings.Compare(a.Campaign, b.Campaign)
	})
	var out []costRow
	for _, r := range rows {
		c := costRow{Campaign: r.Campaign, Detail: "inversión " + Euro(*r.Spend) + " · " + Int(r.Leads) + " leads", Value: "sin leads"}
		cpl := 0.0
		if r.Leads > 0 {
			cpl = *r.Spend / float64(r.Leads)
			c.Value = Euro(cpl)
		}
		c.Bar = newBar([]float64{cpl}, []string{colorCost}, []string{"coste por lead: " + c.Value}, scale, barHeight)
		p, ok := prevCPL[r.Campaign]
		c.PrevValue = "semana anterior: —"
		if ok {
			c.PrevValue = "semana anterior: " + Euro(p)
		}
		c.Prev = newBar([]float64{p}, []string{colorPrev}, []string{c.PrevValue}, scale, prevHeight)
		out = append(out, c)
	}
	return out
}
