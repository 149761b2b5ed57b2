package llm

import (
	"testing"
)

func TestPriceLookup(t *testing.T) {
	t.Parallel()
	table, err := parsePrices([]string{"gpt-4o=3/12", "llama3.1=0/0", " mistral-small = 0.1 / 0.3 "})
	if err != nil {
		t.Fatalf("parsePrices: %v", err)
	}
	for _, tc := range []struct {
		model string
		want  Price
		ok    bool
	}{
		{"gpt-4o-mini", Price{0.15, 0.60}, true},
		{"gpt-4o-mini-2024-07-18", Price{0.15, 0.60}, true},
		{"gpt-4o-2024-08-06", Price{3, 12}, true}, // the override wins for the family
		{"gpt-4o-2024-05-13", Price{5, 15}, true}, // an exact entry beats a prefix
		{"gpt-4.1-mini-2025-04-14", Price{0.40, 1.60}, true},
		{"o3-pro", Price{20, 80}, true},
		{"o3-pro-2025-06-10", Price{20, 80}, true},
		{"o4-mini", Price{1.10, 4.40}, true},
		{"claude-sonnet-4-5-20250929", Price{3, 15}, true},
		{"claude-opus-4-1-20250805", Price{15, 75}, true},
		{"claude-opus-4-5", Price{5, 25}, true},
		{"claude-haiku-4-5@20251001", Price{1, 5}, true},
		{"llama3.1:8b", Price{0, 0}, true},
		{"mistral-small", Price{0.1, 0.3}, true},
		{"gpt-4omega", Price{}, false}, // a prefix must end at a separator
		{"gpt-4", Price{}, false},
		{"mistral-large", Price{}, false},
	} {
		got, ok := table.lookup(tc.model)
		if ok != tc.ok || got != tc.want {
			t.Errorf("lookup(%q): got %v, %v; want %v, %v", tc.model, got, ok, tc.want, tc.ok)
		}
	}
}

func TestPriceCost(t *testing.T) {
	t.Parallel()
	if got, want := (Price{0.15, 0.60}).cost(1_000_000, 500_000), 0.45; got < want-1e-12 || got > want+1e-12 {
		t.Errorf("cost: got %v, want %v", got, want)
	}
}
