package llm

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"strings"
	"text/template"
)

// Prompts are versioned files, prompts/<kind>/v<N>.tmpl, each defining a
// "system" and a "user" template. A changed prompt is a new file, never an
// edit: results record the version that wrote them ("course_description/v1"),
// and the highest version of each kind is the one in use.
//
//go:embed prompts
var promptFiles embed.FS

// prompt is one parsed prompt file.
type prompt struct {
	version string // "course_description/v1"
	tmpl    *template.Template
}

// promptData is what templates see.
type promptData struct {
	Language     string // BCP 47 tag, "es-ES"
	LanguageName string // the language's own name, "español"
	Input        any    // the kind's Input struct
	InputJSON    string // the same input as JSON, to quote as data
	Schema       string // the answer's JSON Schema
	Rules        []string
	Variants     int // meta_ad_copy: variants to write
}

var promptName = regexp.MustCompile(`^v([1-9][0-9]*)\.tmpl$`)

// loadPrompts parses every prompt file and returns the highest version of
// each kind. A kind without a prompt, or a file that does not parse or
// lacks a part, is an error.
func loadPrompts(fsys fs.FS) (map[Kind]*prompt, error) {
	best := map[Kind]int{}
	out := map[Kind]*prompt{}
	for _, kind := range Kinds() {
		dir := path.Join("prompts", string(kind))
		entries, err := fs.ReadDir(fsys, dir)
		if err != nil {
			return nil, fmt.Errorf("read prompts of %s: %w", kind, err)
		}
		for _, e := range entries {
			m := promptName.FindStringSubmatch(e.Name())
			if m == nil || e.IsDir() {
				continue
			}
			v, err := strconv.Atoi(m[1])
			if err != nil {
				continue
			}
			p, err := parsePrompt(fsys, kind, e.Name(), v)
			if err != nil {
				return nil, err
			}
			if v > best[kind] {
				best[kind], out[kind] = v, p
			}
		}
		if out[kind] == nil {
			return nil, fmt.Errorf("read prompts of %s: no %s/v<N>.tmpl", kind, dir)
		}
	}
	return out, nil
}

func parsePrompt(fsys fs.FS, kind Kind, name string, v int) (*prompt, error) {
	version := fmt.Sprintf("%s/v%d", kind, v)
	src, err := fs.ReadFile(fsys, path.Join("prompts", string(kind), name))
	if err != nil {
		return nil, fmt.Errorf("read prompt %s: %w", version, err)
	}
	t, err := template.New(version).Option("missingkey=error").Funcs(template.FuncMap{
		"json": func(v any) (string, error) {
			b, err := encode(v)
			return string(b), err
		},
		"join": strings.Join,
	}).Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("parse prompt %s: %w", version, err)
	}
	for _, part := range []string{"system", "user"} {
		if t.Lookup(part) == nil {
			return nil, fmt.Errorf("parse prompt %s: no %q template", version, part)
		}
	}
	return &prompt{version: version, tmpl: t}, nil
}

// render writes the system and user messages.
func (p *prompt) render(d promptData) (system, user string, err error) {
	var b bytes.Buffer
	if err := p.tmpl.ExecuteTemplate(&b, "system", d); err != nil {
		return "", "", fmt.Errorf("render prompt %s: %w", p.version, err)
	}
	system = strings.TrimSpace(b.String())
	b.Reset()
	if err := p.tmpl.ExecuteTemplate(&b, "user", d); err != nil {
		return "", "", fmt.Errorf("render prompt %s: %w", p.version, err)
	}
	return system, strings.TrimSpace(b.String()), nil
}

// languageNames are the languages' own names, which models follow more
// reliably than a bare tag. Other tags are passed as they are.
var languageNames = map[string]string{
	"es": "español", "ca": "català", "eu": "euskara", "gl": "galego",
	"en": "English", "fr": "français", "pt": "português", "it": "italiano", "de": "Deutsch",
}

func languageName(tag string) string {
	base, region, _ := strings.Cut(tag, "-")
	name, ok := languageNames[strings.ToLower(base)]
	if !ok {
		return tag
	}
	if region != "" {
		return name + " (" + tag + ")"
	}
	return name
}
