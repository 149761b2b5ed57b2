package llm

import (
	"encoding/json"
	"strings"
	"testing"
	"testing/fstest"
)

func TestLoadPromptsPicksHighestVersion(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{}
	part := `{{define "system"}}s{{end}}{{define "user"}}u{{end}}`
	for _, k := range Kinds() {
		fsys["prompts/"+string(k)+"/v1.tmpl"] = &fstest.MapFile{Data: []byte(part)}
	}
	fsys["prompts/email_copy/v2.tmpl"] = &fstest.MapFile{Data: []byte(part)}
	fsys["prompts/email_copy/v10.tmpl"] = &fstest.MapFile{Data: []byte(part)}
	fsys["prompts/email_copy/notes.md"] = &fstest.MapFile{Data: []byte("ignored")}
	got, err := loadPrompts(fsys)
	if err != nil {
		t.Fatalf("loadPrompts: %v", err)
	}
	if v := got[EmailCopy].version; v != "email_copy/v10" {
		t.Errorf("email_copy: got %s, want email_copy/v10 (numeric order)", v)
	}
	if v := got[CourseDescription].version; v != "course_description/v1" {
		t.Errorf("course_description: got %s, want course_description/v1", v)
	}

	delete(fsys, "prompts/meta_ad_copy/v1.tmpl")
	if _, err := loadPrompts(fsys); err == nil || !strings.Contains(err.Error(), "meta_ad_copy") {
		t.Errorf("missing prompt: got %v, want an error naming meta_ad_copy", err)
	}
	fsys["prompts/meta_ad_copy/v1.tmpl"] = &fstest.MapFile{Data: []byte(`{{define "system"}}s{{end}}`)}
	if _, err := loadPrompts(fsys); err == nil || !strings.Contains(err.Error(), `no "user" template`) {
		t.Errorf("prompt without user part: got %v, want an error", err)
	}
}

// TestEmbeddedPromptsRender renders every kind's prompt with the least and
// the most input, checking nothing is left unfilled.
func TestEmbeddedPromptsRender(t *testing.T) {
	t.Parallel()
	prompts, err := loadPrompts(promptFiles)
	if err != nil {
		t.Fatalf("loadPrompts: %v", err)
	}
	inputs := map[Kind][]string{
		CourseDescription: {
			`{"title":"T","modality":"online","duration":"6 meses","audience":"A"}`,
			`{"title":"T & <b>","modality":"presencial","duration":"6 meses","audience":"A","campus":"Madrid","highlights":["h"],"tone":"formal"}`,
		},
		MetaAdCopy: {
			`{"course_title":"C","offer":"O","audience":"A"}`,
			`{"course_title":"C","offer":"O","audience":"A","variants":5,"call_to_action":"APPLY_NOW"}`,
		},
		EmailCopy: {
			`{"purpose":"P","audience":"A"}`,
			`{"purpose":"P","audience":"A","course_title":"C","key_points":["k"],"tone":"t"}`,
		},
	}
	for kind, list := range inputs {
		for _, raw := range list {
			in, errs := parseInput(string(kind), "ca-ES", json.RawMessage(raw))
			if errs != nil {
				t.Fatalf("%s: parseInput: %v", kind, errs)
			}
			sys, user, err := prompts[kind].render(promptData{
				Language: in.language, LanguageName: languageName(in.language), Input: in.typed,
				InputJSON: string(in.clean), Schema: string(outputSchema(kind, in.n)),
				Rules: rules("", specs[kind].output, in.n), Variants: in.n,
			})
			if err != nil {
				t.Fatalf("%s: render: %v", kind, err)
			}
			for _, part := range []string{sys, user} {
				if part == "" || strings.Contains(part, "<no value>") {
					t.Errorf("%s: part empty or unfilled: %q", kind, part)
				}
			}
			if !strings.Contains(sys, "català") || !strings.Contains(sys, "JSON") {
				t.Errorf("%s: system part does not name the language or ask for JSON", kind)
			}
			if !strings.Contains(user, string(in.clean)) {
				t.Errorf("%s: user part does not carry the input as JSON", kind)
			}
		}
	}
}
