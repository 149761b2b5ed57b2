package api

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
)

var rawMessageType = reflect.TypeOf(json.RawMessage(nil))

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = 64 << 10

// readBody reads a JSON request body: 415 for another media type, 413 over
// the limit, 400 for an empty body.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return nil, problem(http.StatusUnsupportedMediaType, "send the body as application/json")
	}
	b, err := readAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes), r.ContentLength)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, problem(http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", MaxBodyBytes))
		}
		return nil, problem(http.StatusBadRequest, "could not read the body")
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, problem(http.StatusBadRequest, "the body is empty; send a JSON object")
	}
	return b, nil
}

// readAll is io.ReadAll with the buffer sized from Content-Length when the
// client sent one within the limit (one allocation instead of a doubling
// series); the limit itself is the reader's.
func readAll(r io.Reader, contentLength int64) ([]byte, error) {
	if contentLength <= 0 || contentLength > MaxBodyBytes {
		return io.ReadAll(r)
	}
	b := make([]byte, 0, contentLength+1) // +1: the read that sees EOF
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // more than announced: grow as io.ReadAll does
		}
	}
}

// decodeJSON decodes body into dst, a pointer to a struct. Malformed JSON is
// an error (400). Unknown fields and values of the wrong JSON type come back
// as field errors, every one of them, with dst filled in as far as it could
// be, so the caller can validate the rest and report everything at once.
//
// The common body, a plain object that fits dst, is decoded once
// (decodeFast); any other goes through decodeJSONSlow, whose answer is the
// one for every body.
func decodeJSON(body []byte, dst any) ([]FieldError, error) {
	if decodeFast(body, dst) {
		return nil, nil // what decodeJSONSlow answers for such a body
	}
	return decodeJSONSlow(body, dst)
}

// decodeFast decodes body into dst in one strict pass when that gives
// exactly what decodeJSONSlow would, no field errors, and reports whether
// it did; else it leaves dst as it found it (zero). It takes only:
//   - a zero *struct whose type fastDecodable accepts, so dst can be put
//     back as it was and every key that strict decoding accepts is a key
//     checkShape knows, and every value it accepts fits;
//   - a body that starts with '{' (strict decoding into a struct takes
//     null too), valid UTF-8 with no \u escape;
//   - a body the JSON v2 decoder (github.com/go-json-experiment/json, the
//     proposed encoding/json/v2) takes whole with unknown members refused:
//     it matches names exactly, as checkShape does (encoding/json ignores
//     case and folds Unicode: "EMAIL", "\u017fite" with a long s), refuses
//     a name twice in an object, and refuses anything after the value.
//
// v2 rather than encoding/json with DisallowUnknownFields: a quarter of the
// time for the README's lead (~5 against ~20 µs, 8 against 39 allocations),
// the largest single cost of a POST /v1/leads in the intake's profile.
// FuzzDecodeFastSlow holds the two paths to the same answers.
func decodeFast(body []byte, dst any) bool {
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return false
	}
	e := v.Elem()
	if e.Kind() != reflect.Struct || !fastDecodable(e.Type()) || !e.IsZero() {
		return false
	}
	i := 0
	for i < len(body) && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r') {
		i++
	}
	if i == len(body) || body[i] != '{' {
		return false
	}
	if !utf8.Valid(body) || bytes.Contains(body, []byte(`\u`)) {
		return false
	}
	if err := jsonv2.Unmarshal(body, dst, jsonv2.RejectUnknownMembers(true)); err != nil {
		e.SetZero()
		return false
	}
	return true
}

// fastTypes caches fastDecodable: reflect.Type to bool.
var fastTypes sync.Map

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	plainTagName        = regexp.MustCompile(`^[a-z0-9_]+$`)
)

// fastDecodable reports whether decodeFast may decode into a struct of
// type t: whether strict decoding into t accepts only what checkShape and
// fits accept. It holds for a struct, and the structs it reaches, made of
// exported, non-embedded fields, each with a json tag of [a-z0-9_] (no
// option but omitempty or omitzero, no name twice), of these types: string,
// bool, int, int64, float64 (the numbers fits takes), json.RawMessage,
// such a struct, or a pointer to one of them; none with an UnmarshalJSON
// or UnmarshalText of its own. Anything else (an untagged field, which
// encoding/json matches by its Go name; a ",string" option; an interface,
// map or slice; time.Time; an int8, which fits refuses) is left to the
// slow path.
func fastDecodable(t reflect.Type) bool {
	if ok, found := fastTypes.Load(t); found {
		return ok.(bool)
	}
	ok := fastType(t, map[reflect.Type]bool{})
	fastTypes.Store(t, ok)
	return ok
}

func fastType(t reflect.Type, seen map[reflect.Type]bool) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == rawMessageType {
		return true
	}
	if t.Implements(jsonUnmarshalerType) || reflect.PointerTo(t).Implements(jsonUnmarshalerType) ||
		t.Implements(textUnmarshalerType) || reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return false
	}
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Float64:
		return true
	case reflect.Struct:
	default:
		return false
	}
	if seen[t] {
		return true // being checked further up
	}
	seen[t] = true
	names := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() || f.Anonymous {
			return false
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !plainTagName.MatchString(name) || names[name] {
			return false
		}
		names[name] = true
		for opts != "" {
			var opt string
			opt, opts, _ = strings.Cut(opts, ",")
			if opt != "omitempty" && opt != "omitzero" {
				return false
			}
		}
		if !fastType(f.Type, seen) {
			return false
		}
	}
	return true
}

// decodeJSONSlow is decodeJSON for any body: it decodes body generically
// to check its shape against dst, then into dst.
func decodeJSONSlow(body []byte, dst any) ([]FieldError, error) {
	var raw any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, problem(http.StatusBadRequest, "malformed JSON: "+jsonSyntaxDetail(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, problem(http.StatusBadRequest, "malformed JSON: unexpected data after the object")
	}
	if _, ok := raw.(map[string]any); !ok {
		return nil, problem(http.StatusBadRequest, "the body must be a JSON object")
	}
	errs := scanJSON(body)
	var shape []FieldError
	checkShape(raw, reflect.TypeOf(dst).Elem(), "", &shape)
	errs = mergeFieldErrors(errs, shape)
	if err := json.Unmarshal(body, dst); err != nil {
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) {
			return nil, problem(http.StatusBadRequest, "malformed JSON: "+jsonSyntaxDetail(err))
		}
		// Already reported by checkShape; encoding/json fills in the rest.
	}
	return errs, nil
}

// scanJSON reports what decoding would hide: a string (key or value) that
// is not valid UTF-8 or holds an unpaired surrogate escape, which
// encoding/json silently turns into U+FFFD (and PostgreSQL refuses where
// the raw JSON is kept), and a key repeated in one object, whose earlier
// values encoding/json silently drops. body is known to be valid JSON.
func scanJSON(body []byte) []FieldError {
	if utf8.Valid(body) && !bytes.Contains(body, []byte(`\u`)) && !mayRepeatKeys(body) {
		return nil // the common case, without a token walk
	}
	type frame struct {
		object bool
		n      int // values seen (array) or keys and values seen (object)
		key    string
		keys   map[string]bool
	}
	var (
		errs  []FieldError
		stack []frame
	)
	// path names the next value of the innermost container, built only
	// when reported: building it for every value is quadratic in depth.
	path := func() string {
		var sb strings.Builder
		for i := range stack {
			f := &stack[i]
			switch {
			case f.object:
				if sb.Len() > 0 {
					sb.WriteByte('.')
				}
				sb.WriteString(fieldName(f.key))
			default:
				// The innermost array's index is the value's; an outer
				// array's n has moved past the value it contains.
				n := f.n
				if i < len(stack)-1 {
					n--
				}
				fmt.Fprintf(&sb, "[%d]", n)
			}
		}
		return sb.String()
	}
	report := func(field, msg string) bool {
		for _, e := range errs {
			if e.Field == field {
				return true
			}
		}
		errs = append(errs, FieldError{Field: field, Message: msg})
		return len(errs) < maxFieldErrors
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return errs // io.EOF: the end
		}
		var top *frame
		if len(stack) > 0 {
			top = &stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			continue
		}
		isKey := top != nil && top.object && top.n%2 == 0
		if str, ok := tok.(string); ok {
			raw := body[start:dec.InputOffset()]
			if i := bytes.IndexByte(raw, '"'); i >= 0 {
				raw = raw[i:]
			}
			if isKey {
				top.key = str
				if top.keys == nil {
					top.keys = map[string]bool{}
				}
				if top.keys[str] && !report(path(), "appears more than once; send each field once") {
					return errs
				}
				top.keys[str] = true
			}
			if (!utf8.Valid(raw) || badSurrogate(raw)) && !report(path(), "must be valid UTF-8") {
				return errs
			}
		}
		if top != nil {
			top.n++
		}
		if d, ok := tok.(json.Delim); ok {
			stack = append(stack, frame{object: d == '{'})
		}
	}
}

// mayRepeatKeys is a cheap, allocation-light test that rules out repeated
// keys in valid JSON: it compares the raw bytes of the keys of each object,
// and gives up (true) on a key with an escape or an object of many keys. It
// gives up on any string with an escape, key or value, so on a body that
// turns out to be valid JSON, what it takes for keys are the keys.
func mayRepeatKeys(body []byte) bool {
	var (
		keys   [][]byte // the keys of the open objects, innermost last
		starts []int    // where each open container's keys begin; -1: array
	)
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '{':
			starts = append(starts, len(keys))
		case '[':
			starts = append(starts, -1)
		case '}', ']':
			if n := len(starts); n > 0 {
				if starts[n-1] >= 0 {
					keys = keys[:starts[n-1]]
				}
				starts = starts[:n-1]
			}
		case '"':
			j := i + 1
			for j < len(body) && body[j] != '"' {
				if body[j] == '\\' {
					return true
				}
				j++
			}
			k := j + 1
			for k < len(body) && (body[k] == ' ' || body[k] == '\t' || body[k] == '\n' || body[k] == '\r') {
				k++
			}
			if k < len(body) && body[k] == ':' && len(starts) > 0 && starts[len(starts)-1] >= 0 {
				key := body[i+1 : j]
				open := keys[starts[len(starts)-1]:]
				if len(open) >= 64 {
					return true
				}
				for _, o := range open {
					if bytes.Equal(o, key) {
						return true
					}
				}
				keys = append(keys, key)
			}
			i = j
		}
	}
	return false
}

// badSurrogate reports a \u escape of a surrogate half that is not part of
// a high-low pair, in the raw text of one JSON string.
func badSurrogate(raw []byte) bool {
	hex4 := func(i int) int {
		if i+6 > len(raw) || raw[i] != '\\' || raw[i+1] != 'u' {
			return -1
		}
		v, err := strconv.ParseUint(string(raw[i+2:i+6]), 16, 16)
		if err != nil {
			return -1
		}
		return int(v)
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		r := hex4(i)
		switch {
		case r < 0:
			i++ // another escape: skip the escaped character
		case r >= 0xD800 && r < 0xDC00:
			if lo := hex4(i + 6); lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 11
		case r >= 0xDC00 && r <= 0xDFFF:
			return true
		default:
			i += 5
		}
	}
	return false
}

var plainName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// fieldName is how a key the client sent is named in a field error: as it
// is when plain, else quoted (an empty key, control characters) and cut to
// 40 characters, so that an answer never carries a long or invisible name.
func fieldName(k string) string {
	if plainName.MatchString(k) {
		return k
	}
	if r := []rune(k); len(r) > 40 {
		k = string(r[:40]) + "…"
	}
	return strconv.Quote(k)
}

// checkShape reports every key of raw that t has no json field for, and
// every value whose JSON type does not fit its field.
func checkShape(raw any, t reflect.Type, prefix string, errs *[]FieldError) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	obj, ok := raw.(map[string]any)
	if !ok || t.Kind() != reflect.Struct {
		return
	}
	known := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		known[name] = f.Type
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ft, ok := known[k]
		if !ok {
			*errs = append(*errs, FieldError{Field: prefix + fieldName(k), Message: "unknown field"})
			continue
		}
		if !fits(obj[k], ft) {
			*errs = append(*errs, FieldError{Field: prefix + k, Message: "must be " + jsonKind(ft)})
			continue
		}
		checkShape(obj[k], ft, prefix+k+".", errs)
	}
}

// fits reports whether a decoded JSON value can go into a field of type t;
// null fits anything.
func fits(v any, t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == rawMessageType {
		return true // checked by whoever decodes it
	}
	switch v.(type) {
	case nil:
		return true
	case string:
		return t.Kind() == reflect.String
	case bool:
		return t.Kind() == reflect.Bool
	case json.Number:
		switch t.Kind() {
		case reflect.Int, reflect.Int64, reflect.Float64:
			return true
		}
		return false
	case map[string]any:
		return t.Kind() == reflect.Struct || t.Kind() == reflect.Map
	case []any:
		return t.Kind() == reflect.Slice
	}
	return false
}

func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice:
		return "an array"
	case reflect.Int, reflect.Int64, reflect.Float64:
		return "a number"
	}
	return "of type " + t.String()
}

func jsonSyntaxDetail(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s at byte %d", strings.TrimPrefix(se.Error(), "json: "), se.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return "unexpected end of input"
	}
	return "invalid JSON"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
