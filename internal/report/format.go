package report

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Numbers and dates are written for Spain (es-ES): "." groups thousands,
// "," separates decimals, and a no-break space keeps "%" and "€" on the
// number's line. Four-digit numbers are grouped too ("1.234"), as the
// marketing team writes them, although CLDR leaves them ungrouped.

const nbsp = "\u00a0"

// Int formats n: 1234567 → "1.234.567".
func Int(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	s = group(s)
	if neg {
		return "-" + s
	}
	return s
}

// Decimal formats v with decimals digits after the comma: 1234.5, 1 →
// "1.234,5".
func Decimal(v float64, decimals int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	// Half away from zero, as people round money (FormatFloat alone
	// rounds 0,125 to 0,12).
	pow := math.Pow10(decimals)
	s := strconv.FormatFloat(math.Round(math.Abs(v)*pow)/pow, 'f', decimals, 64)
	whole, frac, _ := strings.Cut(s, ".")
	out := group(whole)
	if frac != "" {
		out += "," + frac
	}
	if v < 0 && strings.Trim(s, "0.") != "" {
		out = "-" + out
	}
	return out
}

// Euro formats an amount in euros: 1234.5 → "1.234,50 €".
func Euro(v float64) string { return Decimal(v, 2) + nbsp + "€" }

// Percent formats a ratio as a percentage with one decimal: 0.4567 →
// "45,7 %".
func Percent(ratio float64) string { return Decimal(ratio*100, 1) + nbsp + "%" }

func group(digits string) string {
	if len(digits) <= 3 {
		return digits
	}
	var b strings.Builder
	lead := len(digits) % 3
	if lead > 0 {
		b.WriteString(digits[:lead])
	}
	for i := lead; i < len(digits); i += 3 {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(digits[i : i+3])
	}
	return b.String()
}

var (
	weekdays = [...]string{"dom", "lun", "mar", "mié", "jue", "vie", "sáb"}
	months   = [...]string{"enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
		"septiembre", "octubre", "noviembre", "diciembre"}
)

// dayLabel is "lun 23/11".
func dayLabel(d time.Time) string {
	return weekdays[d.Weekday()] + " " + d.Format("02/01")
}

// longDate is "23 de noviembre de 2026".
func longDate(d time.Time) string {
	return strconv.Itoa(d.Day()) + " de " + months[d.Month()-1] + " de " + strconv.Itoa(d.Year())
}

// weekRange is "del 23 al 29 de noviembre de 2026", naming the month and
// year of the Monday only where they differ from the Sunday's.
func weekRange(monday time.Time) string {
	sunday := monday.AddDate(0, 0, 6)
	switch {
	case monday.Year() != sunday.Year():
		return "del " + longDate(monday) + " al " + longDate(sunday)
	case monday.Month() != sunday.Month():
		return "del " + strconv.Itoa(monday.Day()) + " de " + months[monday.Month()-1] + " al " + longDate(sunday)
	default:
		return "del " + strconv.Itoa(monday.Day()) + " al " + longDate(sunday)
	}
}

// dateTime is "7 de diciembre de 2026, 07:00 (CET)" in loc.
func dateTime(t time.Time, loc *time.Location) string {
	t = t.In(loc)
	return longDate(t) + ", " + t.Format("15:04") + " (" + t.Format("MST") + ")"
}
