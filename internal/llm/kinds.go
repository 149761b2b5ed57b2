package llm

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// Kind is what is generated. Kinds are stable strings stored with jobs and
// results: add a new kind rather than renaming one.
type Kind string

// The kinds of content the generator writes.
const (
	CourseDescription Kind = "course_description"
	MetaAdCopy        Kind = "meta_ad_copy"
	EmailCopy         Kind = "email_copy"
)

// Kinds lists every kind, in a stable order.
func Kinds() []Kind { return []Kind{CourseDescription, MetaAdCopy, EmailCopy} }

// DefaultLanguage is the language used when a request names none: the
// audience is Spanish first.
const DefaultLanguage = "es-ES"

// FieldError is one bad field of a request, for the API's 422 answer. Field
// is a JSON path ("input.title", "input.highlights[2]"); Message never
// repeats the value sent.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e FieldError) Error() string { return e.Field + " " + e.Message }

// Inputs, one per kind. Their JSON is what clients send as "input".

// CourseDescriptionInput is what a course description is written from.
type CourseDescriptionInput struct {
	Title      string   `json:"title"`
	Modality   string   `json:"modality"` // presencial, online or semipresencial
	Duration   string   `json:"duration"` // free text: "600 horas", "9 meses"
	Audience   string   `json:"audience"`
	Campus     string   `json:"campus,omitempty"`
	Highlights []string `json:"highlights,omitempty"`
	Tone       string   `json:"tone,omitempty"`
}

// MetaAdCopyInput is what Meta (Facebook, Instagram) ad copy is written from.
type MetaAdCopyInput struct {
	CourseTitle string `json:"course_title"`
	// Offer is the offer or benefit the ad leads with.
	Offer    string `json:"offer"`
	Audience string `json:"audience"`
	// Variants is how many variants to write, 1 to 5 (default 3): Meta
	// rotates up to five texts per field.
	Variants int `json:"variants"`
	// CallToAction is the ad's button, one of Meta's call_to_action types
	// (see CallToActions); the copy is written to lead to it.
	CallToAction string `json:"call_to_action,omitempty"`
}

// EmailCopyInput is what a marketing email is written from.
type EmailCopyInput struct {
	Purpose     string   `json:"purpose"`
	CourseTitle string   `json:"course_title,omitempty"`
	Audience    string   `json:"audience"`
	KeyPoints   []string `json:"key_points,omitempty"`
	Tone        string   `json:"tone,omitempty"`
}

// Outputs, one per kind: what Result.Output holds, normalized (strings
// trimmed, fields in this order).

// CourseDescriptionOutput is a course page's copy.
type CourseDescriptionOutput struct {
	Title              string   `json:"title"`
	Summary            string   `json:"summary"`
	Body               string   `json:"body"`
	BulletPoints       []string `json:"bullet_points"`
	SEOMetaDescription string   `json:"seo_meta_description"`
}

// MetaAdCopyOutput is a set of ad text variants.
type MetaAdCopyOutput struct {
	Variants []MetaAdVariant `json:"variants"`
}

// MetaAdVariant is one combination of the three text fields of a Meta ad.
type MetaAdVariant struct {
	PrimaryText string `json:"primary_text"`
	Headline    string `json:"headline"`
	Description string `json:"description"`
}

// EmailCopyOutput is a marketing email.
type EmailCopyOutput struct {
	Subject   string `json:"subject"`
	Preheader string `json:"preheader"`
	BodyHTML  string `json:"body_html"`
	BodyText  string `json:"body_text"`
}

// CallToActions are the call_to_action types a meta_ad_copy request may
// name: the ones of Meta's list (AdAssetFeedSpec CALL_TO_ACTION_TYPES in
// the Marketing API) that fit a training centre's lead ads.
var CallToActions = []string{
	"LEARN_MORE", "SIGN_UP", "APPLY_NOW", "CONTACT_US", "SUBSCRIBE", "GET_QUOTE",
	"GET_OFFER", "GET_STARTED", "INQUIRE_NOW", "BOOK_NOW", "DOWNLOAD",
	"MESSAGE_PAGE", "WHATSAPP_MESSAGE", "CALL_NOW", "SEE_MORE",
}

// Meta's recommended text lengths. The Meta Ads Guide (Facebook Feed,
// image and video ads, "Text recommendations";
// https://www.facebook.com/business/ads-guide) recommends 125 characters
// of primary text, 40 of headline and 30 of description; longer text is
// accepted but cut behind "See more" or truncated, and some placements
// show less (the guide's newer feed pages say 27 for headline and
// description, Reels show about 10 of a headline). We hold answers to the
// 125/40/30 recommendation: what is cut off is copy nobody reads.
const (
	metaPrimaryTextMax = 125
	metaHeadlineMax    = 40
	metaDescriptionMax = 30
)

// kindSpec is everything the package knows about a kind.
type kindSpec struct {
	input  []field
	output []field
	// check adds kind-specific problems to a valid-shaped answer.
	check func(out map[string]any) []issue
	// decode turns the cleaned input into its typed struct.
	decode func(json.RawMessage) (any, error)
}

// toneField is the optional tone both text kinds take ("formal", "cercano").
var toneField = field{name: "tone", typ: tString, max: 100}

var specs = map[Kind]kindSpec{
	CourseDescription: {
		input: []field{
			{name: "title", typ: tString, required: true, max: 200},
			{name: "modality", typ: tString, required: true, enum: []string{"presencial", "online", "semipresencial"}},
			{name: "duration", typ: tString, required: true, max: 100},
			{name: "audience", typ: tString, required: true, max: 500},
			{name: "campus", typ: tString, max: 100},
			{name: "highlights", typ: tStrings, maxItems: 10, max: 200},
			toneField,
		},
		output: []field{
			// 70: what search results show of a page title.
			{name: "title", typ: tString, max: 70, desc: "Título del curso para la página"},
			{name: "summary", typ: tString, max: 300, desc: "Resumen de una o dos frases"},
			{name: "body", typ: tString, min: 300, max: 6000, desc: "Descripción completa en texto plano, párrafos separados por una línea en blanco, sin HTML ni Markdown"},
			{name: "bullet_points", typ: tStrings, minItems: 3, maxItems: 8, max: 150, desc: "Puntos clave del curso"},
			// 70 to 160: shorter wastes the snippet, longer is cut by
			// search engines.
			{name: "seo_meta_description", typ: tString, min: 70, max: 160, desc: "Meta description para buscadores"},
		},
		check:  checkCourseDescription,
		decode: decodeAs[CourseDescriptionInput],
	},
	MetaAdCopy: {
		input: []field{
			{name: "course_title", typ: tString, required: true, max: 200},
			{name: "offer", typ: tString, required: true, max: 500},
			{name: "audience", typ: tString, required: true, max: 500},
			{name: "variants", typ: tInt, min: 1, max: 5, def: 3},
			{name: "call_to_action", typ: tString, enum: CallToActions},
		},
		output: []field{
			{name: "variants", typ: tObjects, itemsFromN: true, desc: "Variantes del anuncio", fields: []field{
				{name: "primary_text", typ: tString, max: metaPrimaryTextMax, desc: "Texto principal, sobre la imagen"},
				{name: "headline", typ: tString, max: metaHeadlineMax, desc: "Titular, bajo la imagen"},
				{name: "description", typ: tString, max: metaDescriptionMax, desc: "Descripción, bajo el titular"},
			}},
		},
		decode: decodeAs[MetaAdCopyInput],
	},
	EmailCopy: {
		input: []field{
			{name: "purpose", typ: tString, required: true, max: 500},
			{name: "course_title", typ: tString, max: 200},
			{name: "audience", typ: tString, required: true, max: 500},
			{name: "key_points", typ: tStrings, maxItems: 10, max: 300},
			toneField,
		},
		output: []field{
			// 78: the line length RFC 5322 recommends; longer subjects
			// are folded and cut by most clients anyway.
			{name: "subject", typ: tString, max: 78, desc: "Asunto"},
			// 100: about what inbox previews show after the subject.
			{name: "preheader", typ: tString, max: 100, desc: "Preencabezado, el texto de vista previa"},
			{name: "body_html", typ: tString, max: 20000, desc: "Cuerpo en HTML sencillo (p, strong, em, ul, li, a, br), sin <html>, <head>, estilos ni scripts"},
			{name: "body_text", typ: tString, max: 10000, desc: "El mismo cuerpo en texto plano"},
		},
		check:  checkEmailCopy,
		decode: decodeAs[EmailCopyInput],
	},
}

func decodeAs[T any](raw json.RawMessage) (any, error) {
	var v T
	err := json.Unmarshal(raw, &v)
	return v, err
}

var htmlTag = regexp.MustCompile(`<[a-zA-Z/!][^>]*>`)

func checkCourseDescription(out map[string]any) []issue {
	if body, _ := out["body"].(string); htmlTag.MatchString(body) {
		return []issue{{"body", "contains HTML tags; write plain text"}}
	}
	return nil
}

// unsafeHTML is what an email body must not contain: mail clients strip
// or flag it, and it has no place in generated copy.
var unsafeHTML = regexp.MustCompile(`(?i)<\s*(script|iframe|object|embed|form|style|html|head|body)\b|javascript:|\son[a-z]+\s*=`)

func checkEmailCopy(out map[string]any) []issue {
	var is []issue
	h, _ := out["body_html"].(string)
	if unsafeHTML.MatchString(h) {
		is = append(is, issue{"body_html", "contains scripts, styles, forms, event handlers or document tags; use simple tags only"})
	}
	if h != "" && !htmlTag.MatchString(h) {
		is = append(is, issue{"body_html", "has no HTML tags; wrap paragraphs in <p>"})
	}
	if t, _ := out["body_text"].(string); htmlTag.MatchString(t) {
		is = append(is, issue{"body_text", "contains HTML tags; write plain text"})
	}
	return is
}

// languageTag is a BCP 47 tag's common shapes: language, optional script,
// optional region ("es", "es-ES", "ca-ES", "es-419", "zh-Hant-TW").
var languageTag = regexp.MustCompile(`^[a-zA-Z]{2,3}(-[a-zA-Z]{4})?(-([a-zA-Z]{2}|[0-9]{3}))?$`)

// maxFieldErrors bounds the problems reported for one request.
const maxFieldErrors = 25

// ValidateInput checks a request's kind, language and input and reports
// every bad field at once. An empty language means DefaultLanguage.
func ValidateInput(kind string, language string, input json.RawMessage) []FieldError {
	_, errs := parseInput(kind, language, input)
	return errs
}

// parsedInput is a request's input once checked.
type parsedInput struct {
	kind     Kind
	language string
	typed    any             // the kind's Input struct
	clean    json.RawMessage // normalized JSON of the input
	n        int             // ad variants asked for; 0 for other kinds
}

func parseInput(kind string, language string, input json.RawMessage) (parsedInput, []FieldError) {
	var errs []FieldError
	spec, ok := specs[Kind(kind)]
	if !ok {
		names := make([]string, 0, len(specs))
		for _, k := range Kinds() {
			names = append(names, string(k))
		}
		errs = append(errs, FieldError{"kind", "must be one of " + strings.Join(names, ", ")})
	}
	language = strings.TrimSpace(language)
	if language == "" {
		language = DefaultLanguage
	}
	if !languageTag.MatchString(language) {
		errs = append(errs, FieldError{"language", "must be a language tag such as es-ES, ca-ES or en"})
	}
	if !ok {
		return parsedInput{}, errs
	}
	if len(input) == 0 {
		return parsedInput{}, append(errs, FieldError{"input", "is required"})
	}
	c := checker{input: true}
	clean := c.object("", input, spec.input)
	for _, is := range c.issues {
		errs = append(errs, FieldError{join("input", is.path), is.msg})
	}
	if len(errs) > maxFieldErrors {
		// An object of a thousand unknown keys gets a readable answer.
		errs = append(errs[:maxFieldErrors-1:maxFieldErrors-1], FieldError{"input", fmt.Sprintf("has %d more problems", len(errs)-maxFieldErrors+1)})
	}
	if len(errs) > 0 {
		return parsedInput{}, errs
	}
	raw, err := json.Marshal(clean)
	if err != nil {
		return parsedInput{}, []FieldError{{"input", "cannot be encoded"}}
	}
	typed, err := spec.decode(raw)
	if err != nil {
		return parsedInput{}, []FieldError{{"input", "cannot be decoded"}}
	}
	p := parsedInput{kind: Kind(kind), language: language, typed: typed}
	p.clean, _ = encode(typed)
	if in, ok := typed.(MetaAdCopyInput); ok {
		p.n = in.Variants
	}
	return p, nil
}

// ValidateOutput checks an answer for kind against its schema and limits
// (characters counted as Unicode code points), whether or not the endpoint
// enforced the schema. n is the number of ad variants asked for
// (meta_ad_copy only). It returns the answer normalized (strings trimmed,
// fields in schema order), or the problems found, each a readable
// sentence such as "variants[1].headline is 52 characters, limit 40".
func ValidateOutput(kind Kind, n int, raw json.RawMessage) (json.RawMessage, []string) {
	spec, ok := specs[kind]
	if !ok {
		return nil, []string{fmt.Sprintf("unknown kind %q", kind)}
	}
	if !json.Valid(raw) {
		return nil, []string{"answer is not valid JSON"}
	}
	c := checker{n: n}
	out := c.object("", raw, spec.output)
	if len(c.issues) == 0 && spec.check != nil {
		c.issues = spec.check(out)
	}
	if len(c.issues) > 0 {
		problems := make([]string, len(c.issues))
		for i, is := range c.issues {
			problems[i] = is.String()
		}
		return nil, problems
	}
	norm, err := normalizeOutput(kind, out)
	if err != nil {
		return nil, []string{"answer cannot be encoded"}
	}
	return norm, nil
}

// normalizeOutput re-encodes a cleaned answer through its struct, so
// fields come out in a fixed order.
func normalizeOutput(kind Kind, out map[string]any) (json.RawMessage, error) {
	raw, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	var v any
	switch kind {
	case CourseDescription:
		v = &CourseDescriptionOutput{}
	case MetaAdCopy:
		v = &MetaAdCopyOutput{}
	case EmailCopy:
		v = &EmailCopyOutput{}
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return nil, err
	}
	return encode(v)
}

// outputSchema is kind's strict JSON Schema for n variants.
func outputSchema(kind Kind, n int) json.RawMessage {
	raw, _ := encode(schema(specs[kind].output, n)) // only strings, ints and bools
	return raw
}
