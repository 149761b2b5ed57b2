package llm_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cepcomunicacion/cepjobs/internal/llm"
)

func TestValidateInput(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 201)
	for _, tc := range []struct {
		name     string
		kind     string
		language string
		input    string
		want     []llm.FieldError
	}{
		{name: "course ok", kind: "course_description", language: "es-ES", input: courseInput},
		{name: "ad ok, defaults", kind: "meta_ad_copy", input: `{"course_title":"C","offer":"O","audience":"A"}`},
		{name: "email ok, null optional", kind: "email_copy", language: "ca", input: `{"purpose":"P","audience":"A","tone":null}`},
		{name: "region as digits", kind: "email_copy", language: "es-419", input: `{"purpose":"P","audience":"A"}`},
		{
			name: "unknown kind and bad language", kind: "tweet", language: "spanish", input: `{}`,
			want: []llm.FieldError{
				{"kind", "must be one of course_description, meta_ad_copy, email_copy"},
				{"language", "must be a language tag such as es-ES, ca-ES or en"},
			},
		},
		{
			name: "every course field wrong at once", kind: "course_description", language: "es-ES",
			input: `{"title":"` + long + `","modality":"a distancia","duration":12,"audience":"  ","highlights":["ok",""],"tone":"x","price":"100€"}`,
			want: []llm.FieldError{
				{"input.title", "is 201 characters, limit 200"},
				{"input.modality", "must be one of presencial, online, semipresencial"},
				{"input.duration", "must be a string"},
				{"input.audience", "is required"},
				{"input.highlights[1]", "is required"},
				{"input.price", "is not an allowed field"},
			},
		},
		{
			name: "ad variants and call to action", kind: "meta_ad_copy", language: "en",
			input: `{"course_title":"C","offer":"O","audience":"A","variants":6,"call_to_action":"BUY_NOW"}`,
			want: []llm.FieldError{
				{"input.variants", "must be between 1 and 5"},
				{"input.call_to_action", "must be one of " + strings.Join(llm.CallToActions, ", ")},
			},
		},
		{
			name: "ad variants not a whole number", kind: "meta_ad_copy",
			input: `{"course_title":"C","offer":"O","audience":"A","variants":2.5}`,
			want:  []llm.FieldError{{"input.variants", "must be a whole number"}},
		},
		{
			name: "email lists", kind: "email_copy",
			input: `{"purpose":"P","audience":"A","key_points":"uno, dos"}`,
			want:  []llm.FieldError{{"input.key_points", "must be an array of strings"}},
		},
		{
			name: "too many key points", kind: "email_copy",
			input: `{"purpose":"P","audience":"A","key_points":["1","2","3","4","5","6","7","8","9","10","11"]}`,
			want:  []llm.FieldError{{"input.key_points", "has 11 items, limit 10"}},
		},
		{
			name: "control characters", kind: "email_copy",
			input: `{"purpose":"P\u0000","audience":"A"}`,
			want:  []llm.FieldError{{"input.purpose", "contains control characters"}},
		},
		{name: "not an object", kind: "email_copy", input: `["purpose"]`, want: []llm.FieldError{{"input", "must be a JSON object"}}},
		{name: "missing input", kind: "email_copy", want: []llm.FieldError{{"input", "is required"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var in json.RawMessage
			if tc.input != "" {
				in = json.RawMessage(tc.input)
			}
			got := llm.ValidateInput(tc.kind, tc.language, in)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ValidateInput (-want +got):\n%s", diff)
			}
			for _, e := range got {
				if strings.Contains(e.Message, "a distancia") || strings.Contains(e.Message, "BUY_NOW") {
					t.Errorf("message %q repeats the value sent", e.Message)
				}
			}
		})
	}
}

func TestValidateOutput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		kind llm.Kind
		n    int
		raw  string
		want []string // problems; nil means valid
		norm string   // normalized output when valid
	}{
		{
			name: "ad ok, trimmed", kind: llm.MetaAdCopy, n: 1,
			raw:  `{"variants":[{"primary_text":" Fórmate ","headline":"Auxiliar","description":"Plazas limitadas"}]}`,
			norm: `{"variants":[{"primary_text":"Fórmate","headline":"Auxiliar","description":"Plazas limitadas"}]}`,
		},
		{
			name: "ad: wrong count and long fields", kind: llm.MetaAdCopy, n: 3,
			raw:  `{"variants":[{"primary_text":"x","headline":"` + strings.Repeat("é", 52) + `","description":"ok"}]}`,
			want: []string{"variants has 1 items, want exactly 3"},
		},
		{
			name: "ad: limits per variant", kind: llm.MetaAdCopy, n: 2,
			raw: `{"variants":[{"primary_text":"` + strings.Repeat("a", 126) + `","headline":"ok","description":"ok"},` +
				`{"primary_text":"ok","headline":"` + strings.Repeat("é", 52) + `","description":"` + strings.Repeat("b", 31) + `","cta":"x"}]}`,
			want: []string{
				"variants[0].primary_text is 126 characters, limit 125",
				"variants[1].headline is 52 characters, limit 40",
				"variants[1].description is 31 characters, limit 30",
				"variants[1].cta is not an allowed field",
			},
		},
		{
			name: "course: missing, types, bounds", kind: llm.CourseDescription,
			raw: `{"title":"T","summary":7,"body":"corto","bullet_points":["a","b"],"seo_meta_description":"demasiado corta"}`,
			want: []string{
				"summary must be a string",
				"body is 5 characters, minimum 300",
				"bullet_points has 2 items, want at least 3",
				"seo_meta_description is 15 characters, minimum 70",
			},
		},
		{
			name: "course: HTML in body", kind: llm.CourseDescription,
			raw:  strings.Replace(courseAnswer, "Este ciclo", "<b>Este ciclo</b>", 1),
			want: []string{"body contains HTML tags; write plain text"},
		},
		{
			name: "email: empty and missing", kind: llm.EmailCopy,
			raw:  `{"subject":"","preheader":"p","body_text":"t"}`,
			want: []string{"subject is empty", "body_html is missing"},
		},
		{
			name: "email: unsafe HTML", kind: llm.EmailCopy,
			raw: `{"subject":"s","preheader":"p","body_html":"<p onclick=\"x()\">Hola</p><script>alert(1)</script>","body_text":"<p>t</p>"}`,
			want: []string{
				"body_html contains scripts, styles, forms, event handlers or document tags; use simple tags only",
				"body_text contains HTML tags; write plain text",
			},
		},
		{name: "not JSON", kind: llm.EmailCopy, raw: `{"subject":`, want: []string{"answer is not valid JSON"}},
		{name: "not an object", kind: llm.EmailCopy, raw: `[]`, want: []string{"answer must be a JSON object"}},
		{
			name: "odd key names are bounded", kind: llm.EmailCopy,
			raw:  `{"subject":"s","preheader":"p","body_html":"<p>h</p>","body_text":"t","` + strings.Repeat("ñ", 60) + `\n":1}`,
			want: []string{`"` + strings.Repeat("ñ", 40) + `…" is not an allowed field`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			norm, problems := llm.ValidateOutput(tc.kind, tc.n, json.RawMessage(tc.raw))
			if diff := cmp.Diff(tc.want, problems); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			if tc.want == nil && string(norm) != tc.norm {
				t.Errorf("normalized: got %s, want %s", norm, tc.norm)
			}
		})
	}
}
