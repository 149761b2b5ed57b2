package llm

import (
	"fmt"
	"strconv"
	"strings"
)

// Price is what a model costs, in US dollars per million tokens.
type Price struct {
	InputPerM  float64
	OutputPerM float64
}

// cost is what usage costs at p.
func (p Price) cost(promptTokens, completionTokens int) float64 {
	return (float64(promptTokens)*p.InputPerM + float64(completionTokens)*p.OutputPerM) / 1e6
}

// builtinPrices are list prices, standard tier, without cached-input or
// batch discounts, so costs err high: the safe side for a budget. Prices
// change; CEPJOBS_LLM_PRICES corrects a row without a release.
//
// Sources, as read in 2026:
//   - OpenAI, https://platform.openai.com/docs/pricing (now at
//     developers.openai.com/api/docs/pricing): gpt-4o-mini 0.15/0.60,
//     gpt-4o 2.50/10, gpt-4.1 2/8, gpt-4.1-mini 0.40/1.60, gpt-4.1-nano
//     0.10/0.40, o4-mini and o3-mini 1.10/4.40, o3 2/8, gpt-5 1.25/10,
//     gpt-5-mini 0.25/2, gpt-5-nano 0.05/0.40, gpt-5-pro 15/120; from
//     older copies: o1 15/60, o1-pro 150/600, o3-pro 20/80,
//     gpt-4o-2024-05-13 5/15. The page itself was not at hand; these are
//     from dated copies of it (2025 to June 2026) that agree.
//   - Anthropic, https://docs.anthropic.com/en/docs/about-claude/pricing,
//     "Model pricing" table: Opus 3, 4 and 4.1 15/75, Sonnet 3.5, 3.7, 4
//     and 4.5 3/15, Haiku 4.5 1/5, Haiku 3.5 0.80/4, Haiku 3 0.25/1.25;
//     Opus 4.5 5/25 from a March 2026 copy. Newer Claude models match a
//     family prefix (claude-opus-4-6 takes claude-opus-4's 15/75, which
//     overstates it): add them to CEPJOBS_LLM_PRICES.
//
// Names are matched exactly, then by the longest entry that is a prefix
// followed by '-', ':' or '@', so dated snapshots ("gpt-4o-mini-2024-07-18",
// "claude-sonnet-4-5-20250929") take their family's price. Expensive
// variants that share a cheap family's prefix (o3-pro, gpt-5-pro) are
// listed so they do not fall back to it. A model missing here is priced
// with CEPJOBS_LLM_PRICES.
var builtinPrices = map[string]Price{
	"gpt-4o-mini":       {0.15, 0.60},
	"gpt-4o":            {2.50, 10.00},
	"gpt-4o-2024-05-13": {5.00, 15.00},
	"gpt-4.1":           {2.00, 8.00},
	"gpt-4.1-mini":      {0.40, 1.60},
	"gpt-4.1-nano":      {0.10, 0.40},
	"gpt-5":             {1.25, 10.00},
	"gpt-5-mini":        {0.25, 2.00},
	"gpt-5-nano":        {0.05, 0.40},
	"gpt-5-pro":         {15.00, 120.00},
	"o1":                {15.00, 60.00},
	"o1-pro":            {150.00, 600.00},
	"o3":                {2.00, 8.00},
	"o3-pro":            {20.00, 80.00},
	"o3-mini":           {1.10, 4.40},
	"o4-mini":           {1.10, 4.40},
	"claude-opus-4":     {15.00, 75.00},
	"claude-opus-4-1":   {15.00, 75.00},
	"claude-opus-4-5":   {5.00, 25.00},
	"claude-sonnet-4":   {3.00, 15.00},
	"claude-sonnet-4-5": {3.00, 15.00},
	"claude-3-7-sonnet": {3.00, 15.00},
	"claude-haiku-4-5":  {1.00, 5.00},
	"claude-3-5-haiku":  {0.80, 4.00},
	"claude-3-haiku":    {0.25, 1.25},
	"claude-3-5-sonnet": {3.00, 15.00},
	"claude-3-opus":     {15.00, 75.00},
}

// prices is the table in force: the built-in one with the overrides of
// CEPJOBS_LLM_PRICES on top.
type prices map[string]Price

// parsePrices reads CEPJOBS_LLM_PRICES entries ("model=input/output", USD
// per million tokens) over the built-in table.
func parsePrices(entries []string) (prices, error) {
	t := make(prices, len(builtinPrices)+len(entries))
	for k, v := range builtinPrices {
		t[k] = v
	}
	for i, e := range entries {
		model, pair, ok := strings.Cut(strings.TrimSpace(e), "=")
		in, out, ok2 := strings.Cut(pair, "/")
		model = strings.TrimSpace(model)
		pi, err1 := strconv.ParseFloat(strings.TrimSpace(in), 64)
		po, err2 := strconv.ParseFloat(strings.TrimSpace(out), 64)
		if !ok || !ok2 || model == "" || err1 != nil || err2 != nil || pi < 0 || po < 0 || pi > 10000 || po > 10000 {
			return nil, fmt.Errorf("CEPJOBS_LLM_PRICES: entry %d: want model=input/output in USD per million tokens, such as gpt-4o-mini=0.15/0.60", i+1)
		}
		t[model] = Price{pi, po}
	}
	return t, nil
}

// lookup finds model's price: the exact name, else the longest listed
// name that is a prefix of it followed by a separator.
func (t prices) lookup(model string) (Price, bool) {
	if p, ok := t[model]; ok {
		return p, true
	}
	best, found := "", false
	for name := range t {
		if len(name) <= len(best) || len(model) <= len(name) || !strings.HasPrefix(model, name) {
			continue
		}
		switch model[len(name)] {
		case '-', ':', '@':
			best, found = name, true
		}
	}
	return t[best], found
}
