package llm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file is a small description of JSON objects (field, fieldType) and
// the three things done with it: validating a document against it, writing
// it as a strict JSON Schema, and listing its limits as prompt rules. One
// description per input and output keeps the schema the endpoint enforces,
// the checks made in Go and the rules the model reads from drifting apart.
//
// A JSON Schema library would validate too, but strict Structured Outputs
// accept only a subset of JSON Schema (no minLength/maxLength), so the
// limits that matter most (characters) would live outside the schema
// anyway, and the library's messages are not the short, field-named
// sentences the model and the API's 422 need.

type fieldType int

const (
	tString  fieldType = iota
	tStrings           // array of strings
	tInt
	tObjects // array of objects described by fields
)

// field describes one property of an object.
type field struct {
	name string
	typ  fieldType
	// required applies to inputs; outputs are always complete because
	// strict schemas must list every property as required.
	required bool
	// min and max bound a string's length in characters (runes), or each
	// item's for tStrings, or the value for tInt. Zero max means no limit.
	min, max int
	// minItems and maxItems bound arrays; itemsFromN makes both the
	// request's n (the number of ad variants asked for).
	minItems, maxItems int
	itemsFromN         bool
	enum               []string
	def                int // tInt default when absent
	desc               string
	fields             []field // tObjects
}

// issue is one problem found in a document: a JSON path ("variants[1].headline")
// and a sentence that reads after it ("is 52 characters, limit 40").
type issue struct {
	path, msg string
}

// String is the issue as a sentence about an answer.
func (i issue) String() string {
	if i.path == "" {
		return "answer " + i.msg
	}
	return i.path + " " + i.msg
}

// checker validates documents against a description. input selects the
// leniency of request input (optional fields, null as absent) over the
// strictness of answers (every field present).
type checker struct {
	input  bool
	n      int
	issues []issue
}

func (c *checker) add(path, format string, args ...any) {
	c.issues = append(c.issues, issue{path, fmt.Sprintf(format, args...)})
}

func join(prefix, name string) string {
	switch {
	case prefix == "":
		return name
	case name == "":
		return prefix
	}
	return prefix + "." + name
}

// object validates raw as an object of fields and returns its cleaned
// value (strings trimmed, defaults applied) in a map.
func (c *checker) object(path string, raw json.RawMessage, fields []field) map[string]any {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		c.add(path, "must be a JSON object")
		return nil
	}
	out := make(map[string]any, len(fields))
	known := make(map[string]bool, len(fields))
	for _, f := range fields {
		known[f.name] = true
		p := join(path, f.name)
		v, ok := obj[f.name]
		if !ok || (c.input && isNull(v)) {
			switch {
			case !c.input:
				c.add(p, "is missing")
			case f.required:
				c.add(p, "is required")
			case f.typ == tInt:
				out[f.name] = f.def
			}
			continue
		}
		if val, ok := c.value(p, v, f); ok {
			out[f.name] = val
		}
	}
	var unknown []string
	for k := range obj {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		c.add(join(path, safeName(k)), "is not an allowed field")
	}
	return out
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// plainName is a field name that can be shown as it is.
var plainName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,40}$`)

// safeName bounds a key taken from a document before it is shown: it ends
// up in errors and logs.
func safeName(k string) string {
	if plainName.MatchString(k) {
		return k
	}
	if r := []rune(k); len(r) > 40 {
		k = string(r[:40]) + "…"
	}
	return strconv.Quote(k)
}

func (c *checker) value(path string, raw json.RawMessage, f field) (any, bool) {
	switch f.typ {
	case tString:
		return c.str(path, raw, f)
	case tInt:
		var n int
		if err := json.Unmarshal(raw, &n); err != nil {
			c.add(path, "must be a whole number")
			return nil, false
		}
		if n < f.min || (f.max > 0 && n > f.max) {
			c.add(path, "must be between %d and %d", f.min, f.max)
			return nil, false
		}
		return n, true
	case tStrings:
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil || isNull(raw) {
			c.add(path, "must be an array of strings")
			return nil, false
		}
		if !c.count(path, len(items), f) {
			return nil, false
		}
		out := make([]string, 0, len(items))
		ok := true
		for i, it := range items {
			s, good := c.str(fmt.Sprintf("%s[%d]", path, i), it, field{typ: tString, required: true, min: f.min, max: f.max})
			ok = ok && good
			out = append(out, s)
		}
		return out, ok
	case tObjects:
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil || isNull(raw) {
			c.add(path, "must be an array of objects")
			return nil, false
		}
		if !c.count(path, len(items), f) {
			return nil, false
		}
		out := make([]map[string]any, 0, len(items))
		before := len(c.issues)
		for i, it := range items {
			out = append(out, c.object(fmt.Sprintf("%s[%d]", path, i), it, f.fields))
		}
		return out, len(c.issues) == before
	}
	return nil, false
}

// count checks an array's length against the field's bounds.
func (c *checker) count(path string, n int, f field) bool {
	lo, hi := f.minItems, f.maxItems
	if f.itemsFromN {
		lo, hi = c.n, c.n
	}
	switch {
	case lo == hi && n != lo:
		c.add(path, "has %d items, want exactly %d", n, lo)
	case n < lo:
		c.add(path, "has %d items, want at least %d", n, lo)
	case hi > 0 && n > hi:
		c.add(path, "has %d items, limit %d", n, hi)
	default:
		return true
	}
	return false
}

func (c *checker) str(path string, raw json.RawMessage, f field) (string, bool) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		c.add(path, "must be a string")
		return "", false
	}
	s = strings.TrimSpace(s)
	n := utf8.RuneCountInString(s)
	switch {
	case n == 0 && (f.required || !c.input):
		if c.input {
			c.add(path, "is required")
		} else {
			c.add(path, "is empty")
		}
		return "", false
	case n == 0:
		return "", true
	case strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' && r != '\r' }):
		c.add(path, "contains control characters")
		return "", false
	case f.max > 0 && n > f.max:
		c.add(path, "is %d characters, limit %d", n, f.max)
		return "", false
	case n < f.min:
		c.add(path, "is %d characters, minimum %d", n, f.min)
		return "", false
	case len(f.enum) > 0 && !contains(f.enum, s):
		// The value is not repeated: it is free text from the request.
		c.add(path, "must be one of %s", strings.Join(f.enum, ", "))
		return "", false
	}
	return s, true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// encode is json.Marshal without HTML escaping: these documents are read
// by a model and stored, never embedded in a page, and "<p>" reads better
// than "\u003cp\u003e".
func encode(v any) ([]byte, error) {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// ordered is a JSON object that keeps its keys in order: models write
// Structured Outputs in the order the schema lists properties, so the
// schema lists them in reading order (title before body).
type ordered []struct {
	k string
	v any
}

func (o ordered) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, kv := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := encode(kv.k)
		v, err := encode(kv.v)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func (o *ordered) set(k string, v any) {
	*o = append(*o, struct {
		k string
		v any
	}{k, v})
}

// schema writes fields as a strict JSON Schema object: every property
// required, additionalProperties false at every level (Structured Outputs
// reject a strict schema without both). Length limits go into the
// descriptions, where the model reads them, since strict mode does not
// accept minLength/maxLength; minItems/maxItems are accepted.
func schema(fields []field, n int) ordered {
	var props ordered
	req := make([]string, 0, len(fields))
	for _, f := range fields {
		props.set(f.name, fieldSchema(f, n))
		req = append(req, f.name)
	}
	var o ordered
	o.set("type", "object")
	o.set("properties", props)
	o.set("required", req)
	o.set("additionalProperties", false)
	return o
}

func fieldSchema(f field, n int) ordered {
	var o ordered
	switch f.typ {
	case tString:
		o.set("type", "string")
		if len(f.enum) > 0 {
			o.set("enum", f.enum)
		}
	case tInt:
		o.set("type", "integer")
	case tStrings, tObjects:
		o.set("type", "array")
		if f.typ == tStrings {
			o.set("items", ordered{{"type", "string"}})
		} else {
			o.set("items", schema(f.fields, n))
		}
		lo, hi := f.minItems, f.maxItems
		if f.itemsFromN {
			lo, hi = n, n
		}
		if lo > 0 {
			o.set("minItems", lo)
		}
		if hi > 0 {
			o.set("maxItems", hi)
		}
	}
	if d := describe(f, n); d != "" {
		o.set("description", d)
	}
	return o
}

// describe is a field's purpose and limits in one Spanish sentence, the
// language of the prompts.
func describe(f field, n int) string {
	l := limits(f, n)
	switch {
	case f.desc == "":
		return l
	case l == "":
		return f.desc
	}
	return f.desc + " (" + l + ")"
}

func limits(f field, n int) string {
	var parts []string
	switch f.typ {
	case tStrings, tObjects:
		lo, hi := f.minItems, f.maxItems
		if f.itemsFromN {
			lo, hi = n, n
		}
		switch {
		case lo == hi && lo > 0:
			parts = append(parts, fmt.Sprintf("exactamente %d elementos", lo))
		case lo > 0 && hi > 0:
			parts = append(parts, fmt.Sprintf("entre %d y %d elementos", lo, hi))
		case hi > 0:
			parts = append(parts, fmt.Sprintf("como máximo %d elementos", hi))
		}
		if f.typ == tStrings {
			if l := charLimits(f); l != "" {
				parts = append(parts, "cada uno "+l)
			}
		}
	case tString:
		if l := charLimits(f); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

func charLimits(f field) string {
	switch {
	case f.min > 1 && f.max > 0:
		return fmt.Sprintf("entre %d y %d caracteres", f.min, f.max)
	case f.max > 0:
		return fmt.Sprintf("como máximo %d caracteres", f.max)
	case f.min > 1:
		return fmt.Sprintf("al menos %d caracteres", f.min)
	}
	return ""
}

// rules lists the limits of fields, one line per field with any, for the
// prompt ("variants[].headline: como máximo 40 caracteres").
func rules(prefix string, fields []field, n int) []string {
	var out []string
	for _, f := range fields {
		p := join(prefix, f.name)
		if l := limits(f, n); l != "" {
			out = append(out, p+": "+l)
		}
		if f.typ == tObjects {
			out = append(out, rules(p+"[]", f.fields, n)...)
		}
	}
	return out
}
