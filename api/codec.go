package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"sort"
	"strings"
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
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
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

// decodeJSON decodes body into dst, a pointer to a struct. Malformed JSON is
// an error (400). Unknown fields and values of the wrong JSON type come back
// as field errors, every one of them, with dst filled in as far as it could
// be, so the caller can validate the rest and report everything at once.
func decodeJSON(body []byte, dst any) ([]FieldError, error) {
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
	var errs []FieldError
	checkShape(raw, reflect.TypeOf(dst).Elem(), "", &errs)
	if err := json.Unmarshal(body, dst); err != nil {
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) {
			return nil, problem(http.StatusBadRequest, "malformed JSON: "+jsonSyntaxDetail(err))
		}
		// Already reported by checkShape; encoding/json fills in the rest.
	}
	return errs, nil
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
			*errs = append(*errs, FieldError{Field: prefix + k, Message: "unknown field"})
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
