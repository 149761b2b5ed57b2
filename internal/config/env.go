package config

import (
	"encoding"
	"fmt"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// This file is a small environment loader. caarlos0/env would parse the same
// tags, but its errors name Go fields ("parse error on field Tokens") where
// users need the variable they set, and printing with redaction needs the
// same walk anyway.
//
// Tags: env:"NAME" names the variable; default:"…" is used when it is unset
// or empty; secret:"true" masks the value when printed, secret:"url" masks
// only a URL's password. Struct fields without an env tag are walked into.

// Var is one variable as `cepjobs config` shows it.
type Var struct {
	Name    string
	Value   string // redacted
	Default string // redacted
	FromEnv bool
}

type field struct {
	name, def, secret string
	v                 reflect.Value
}

func fields(v reflect.Value) []field {
	var out []field
	t := v.Type()
	for i := range t.NumField() {
		sf, fv := t.Field(i), v.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, ok := sf.Tag.Lookup("env")
		if !ok {
			if fv.Kind() == reflect.Struct {
				out = append(out, fields(fv)...)
			}
			continue
		}
		out = append(out, field{name: name, def: sf.Tag.Get("default"), secret: sf.Tag.Get("secret"), v: fv})
	}
	return out
}

// load fills the struct pointed to by dst from env, collecting one error per
// bad variable.
func load(dst any, env map[string]string) []error {
	var errs []error
	for _, f := range fields(reflect.ValueOf(dst).Elem()) {
		raw, set := env[f.name]
		if !set || raw == "" {
			raw = f.def
		}
		if raw == "" {
			continue
		}
		if err := setValue(f.v, raw); err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", f.name, err))
		}
	}
	return errs
}

func setValue(v reflect.Value, raw string) error {
	if tu, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return tu.UnmarshalText([]byte(raw))
	}
	switch v.Interface().(type) {
	case time.Duration:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("want a duration such as 30s, 5m or 720h, got %q", raw)
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", raw)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("want a whole number, got %q", raw)
		}
		v.SetInt(n)
	case reflect.Float64:
		n, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return fmt.Errorf("want a number, got %q", raw)
		}
		v.SetFloat(n)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported type %s", v.Type())
		}
		var parts []string
		for _, p := range strings.Split(raw, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		v.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}

// names lists every variable the struct reads.
func names(dst any) map[string]bool {
	out := map[string]bool{}
	for _, f := range fields(reflect.ValueOf(dst).Elem()) {
		out[f.name] = true
	}
	return out
}

// describe lists the variables of a loaded struct, redacted, sorted by name.
func describe(src any, env map[string]string) []Var {
	var out []Var
	for _, f := range fields(reflect.ValueOf(src).Elem()) {
		raw, set := env[f.name]
		out = append(out, Var{
			Name:    f.name,
			Value:   redact(f, format(f.v)),
			Default: redact(f, f.def),
			FromEnv: set && raw != "",
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

type redacter interface{ Redacted() string }

func format(v reflect.Value) string {
	if r, ok := v.Interface().(redacter); ok {
		return r.Redacted()
	}
	switch x := v.Interface().(type) {
	case time.Duration:
		return x.String()
	case []string:
		return strings.Join(x, ",")
	}
	return fmt.Sprint(v.Interface())
}

func redact(f field, s string) string {
	if s == "" {
		return ""
	}
	switch f.secret {
	case "true":
		return "xxxxx (set)"
	case "url":
		return RedactURL(s)
	}
	return s
}

// RedactURL masks the password of a URL, for logs and printing. An
// unparsable URL is not shown at all.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable, not shown)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	for _, k := range []string{"password", "sentinel_password"} {
		if q.Has(k) {
			q.Set(k, "xxxxx")
			u.RawQuery = q.Encode()
		}
	}
	return u.String()
}

// closest suggests the known name nearest to an unknown one.
func closest(name string, known map[string]bool) string {
	best, bestD := "", 1<<30
	for k := range known {
		if d := levenshtein(name, k); d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	if bestD > len(name)/3+1 {
		return ""
	}
	return best
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
