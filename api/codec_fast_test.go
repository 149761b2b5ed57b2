package api

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// requestTypes are the types the api package decodes request bodies into
// with decodeJSON; TestDecodeJSONCallersListed keeps the list complete.
var requestTypes = []reflect.Type{
	reflect.TypeFor[leadRequest](),
	reflect.TypeFor[contentRequest](),
	reflect.TypeFor[campaignRequest](),
	reflect.TypeFor[exportRequest](),
}

// numRequest is not a request type: it has the numbers fits takes and a
// cycle, which no request type has yet.
type numRequest struct {
	I   int         `json:"i"`
	I64 *int64      `json:"i64"`
	F   float64     `json:"f,omitempty"`
	S   string      `json:"s"`
	B   bool        `json:"b"`
	Sub *numRequest `json:"sub"`
}

var snakeTag = regexp.MustCompile(`^[a-z0-9_]+$`)

// TestRequestTagsSnake: every field of every struct a request type reaches
// has a json tag of [a-z0-9_], so decodeFast's case-insensitive key
// matching is exact matching, and decodeFast takes the type.
func TestRequestTagsSnake(t *testing.T) {
	for _, rt := range requestTypes {
		for _, b := range badTags(rt) {
			t.Error(b)
		}
		if !fastDecodable(rt) {
			t.Errorf("%s: decodeFast does not take it (see fastDecodable)", rt)
		}
	}
	// The check names what it finds.
	type inner struct {
		OK  string `json:"ok"`
		Bad string `json:"Bad,omitempty"`
	}
	type outer struct {
		In      []*inner `json:"in"`
		NoTag   string
		Skipped string `json:"-"`
	}
	want := []string{
		`outer.In.Bad (api.inner): json tag "Bad,omitempty" is not made of [a-z0-9_]`,
		`outer.NoTag (api.outer): json tag "" is not made of [a-z0-9_]`,
		`outer.Skipped (api.outer): json tag "-" is not made of [a-z0-9_]`,
	}
	if got := badTags(reflect.TypeFor[outer]()); !reflect.DeepEqual(got, want) {
		t.Errorf("badTags(outer) = %q, want %q", got, want)
	}
}

// badTags names every field of a struct t reaches whose json tag is not
// made of [a-z0-9_].
func badTags(t reflect.Type) []string {
	seen := map[reflect.Type]bool{}
	var walk func(typ reflect.Type, path string) []string
	walk = func(typ reflect.Type, path string) []string {
		for typ != rawMessageType && (typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Array || typ.Kind() == reflect.Map) {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] {
			return nil
		}
		seen[typ] = true
		var bad []string
		for i := range typ.NumField() {
			f := typ.Field(i)
			tag := f.Tag.Get("json")
			if name, _, _ := strings.Cut(tag, ","); !snakeTag.MatchString(name) {
				bad = append(bad, fmt.Sprintf("%s.%s (%s): json tag %q is not made of [a-z0-9_]", path, f.Name, typ, tag))
			}
			bad = append(bad, walk(f.Type, path+"."+f.Name)...)
		}
		return bad
	}
	return walk(t, t.Name())
}

// TestDecodeJSONCallersListed: every variable the package's own code
// passes to decodeJSON has a type in requestTypes.
func TestDecodeJSONCallersListed(t *testing.T) {
	listed := map[string]bool{}
	for _, rt := range requestTypes {
		listed[rt.Name()] = true
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		// The type of each "var x T", by name, in the order declared: the
		// last one before a call is the variable it passes.
		type decl struct {
			pos token.Pos
			typ string
		}
		vars := map[string][]decl{}
		ast.Inspect(f, func(n ast.Node) bool {
			if vs, ok := n.(*ast.ValueSpec); ok && vs.Type != nil {
				for _, id := range vs.Names {
					vars[id.Name] = append(vars[id.Name], decl{vs.Pos(), typeName(vs.Type)})
				}
			}
			return true
		})
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			if id, ok := call.Fun.(*ast.Ident); !ok || id.Name != "decodeJSON" {
				return true
			}
			calls++
			where := fset.Position(call.Pos())
			var id *ast.Ident
			if u, ok := call.Args[1].(*ast.UnaryExpr); ok && u.Op == token.AND {
				id, _ = u.X.(*ast.Ident)
			}
			if id == nil {
				t.Errorf("%s: decodeJSON's dst is not &variable; list its type in requestTypes and teach this test", where)
				return true
			}
			typ := ""
			for _, d := range vars[id.Name] {
				if d.pos < call.Pos() {
					typ = d.typ
				}
			}
			if !listed[typ] {
				t.Errorf("%s: decodeJSON(…, &%s) decodes into %q, which is not in requestTypes", where, id.Name, typ)
			}
			return true
		})
	}
	if calls < len(requestTypes) {
		t.Errorf("found %d decodeJSON calls, fewer than the %d request types", calls, len(requestTypes))
	}
}

func typeName(e ast.Expr) string {
	if id, ok := e.(*ast.Ident); ok {
		return id.Name
	}
	return fmt.Sprintf("%T", e)
}

// TestFastDecodableRefuses: the types whose strict decoding accepts what
// checkShape refuses are left to the slow path.
func TestFastDecodableRefuses(t *testing.T) {
	type sub struct {
		A string `json:"a"`
	}
	type Embedded struct {
		E string `json:"e"`
	}
	for _, c := range []struct {
		name string
		typ  reflect.Type
	}{
		{"untagged", reflect.TypeFor[struct{ Email string }]()},
		{"uppercase tag", reflect.TypeFor[struct {
			Email string `json:"Email"`
		}]()},
		{"dash tag", reflect.TypeFor[struct {
			Email string `json:"e-mail"`
		}]()},
		{"skipped field", reflect.TypeFor[struct {
			Email string `json:"-"`
		}]()},
		{"string option", reflect.TypeFor[struct {
			N int `json:"n,string"`
		}]()},
		{"interface", reflect.TypeFor[struct {
			V any `json:"v"`
		}]()},
		{"map", reflect.TypeFor[struct {
			M map[string]string `json:"m"`
		}]()},
		{"bytes", reflect.TypeFor[struct {
			B []byte `json:"b"`
		}]()},
		{"slice", reflect.TypeFor[struct {
			S []string `json:"s"`
		}]()},
		{"time", reflect.TypeFor[struct {
			T time.Time `json:"t"`
		}]()},
		{"int8", reflect.TypeFor[struct {
			N int8 `json:"n"`
		}]()},
		{"embedded", reflect.TypeFor[struct {
			Embedded
			A string `json:"a"`
		}]()},
		{"name twice", reflect.StructOf([]reflect.StructField{ // go vet refuses it as a literal
			{Name: "A", Type: reflect.TypeFor[string](), Tag: `json:"a"`},
			{Name: "B", Type: reflect.TypeFor[string](), Tag: `json:"a"`},
		})},
		{"nested bad", reflect.TypeFor[struct {
			S *struct {
				X sub `json:"x"`
				Y any `json:"y"`
			} `json:"s"`
		}]()},
	} {
		if fastDecodable(c.typ) {
			t.Errorf("%s: fastDecodable(%s) = true", c.name, c.typ)
		}
	}
	if !fastDecodable(reflect.TypeFor[numRequest]()) {
		t.Errorf("fastDecodable(numRequest) = false")
	}
}

const readmeLeadJSON = `{"external_id": "cms-123", "first_name": "Ana", "last_name": "García",
       "email": "ana@example.com", "phone": "+34600111222",
       "course": "tecnico-marketing-digital", "campaign": "meta-otono-2026", "site": "sevilla",
       "source": "web-form", "message": "Quiero información",
       "utm": {"source": "facebook", "medium": "cpc", "campaign": "otono"},
       "consent": {"privacy": true, "marketing": false, "text_version": "2026-01",
                   "accepted_at": "2026-11-27T10:00:00Z"},
       "client": {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0"},
       "captcha_token": "…"}`

// fastBodies are bodies decodeFast takes for the type named.
var fastBodies = []struct {
	typ  reflect.Type
	body string
}{
	{reflect.TypeFor[leadRequest](), validLeadJSON},
	{reflect.TypeFor[leadRequest](), readmeLeadJSON},
	{reflect.TypeFor[leadRequest](), "\r\n\t {}\n"},
	{reflect.TypeFor[leadRequest](), `{"utm":null,"consent":{"privacy":null},"client":{}}`},
	{reflect.TypeFor[leadRequest](), `{"first_name":null}`},
	{reflect.TypeFor[leadRequest](), `{"first_name":"a\"b\\c\/d\n"}`},
	{reflect.TypeFor[contentRequest](), validContentJSON},
	{reflect.TypeFor[contentRequest](), `{"kind":"k","input":[1e400,18446744073709551616,{"title":null},"Técnico"]}`},
	{reflect.TypeFor[campaignRequest](), validCampaignJSON},
	{reflect.TypeFor[exportRequest](), validExportJSON},
	{reflect.TypeFor[numRequest](), `{"i":-42,"i64":9223372036854775807,"f":1.5e300,"s":"x","b":true,"sub":{"sub":{"i":1}}}`},
}

// decodeBodies are bodies of every kind, for every type: decodeJSON must
// answer each as decodeJSONSlow does.
func decodeBodies() []string {
	many := func(n int) string {
		var sb strings.Builder
		sb.WriteString(`{"kind":"k","input":{`)
		for i := range n {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `"k%d":%d`, i, i)
		}
		sb.WriteString(`}}`)
		return sb.String()
	}
	bodies := []string{
		// Valid bodies.
		validLeadJSON, readmeLeadJSON, validContentJSON, validCampaignJSON, validExportJSON,
		`{}`, ` {} `, "{}\n", `{ "first_name" : "Ana" , "email":"ana@example.com" }`,
		`{"first_name":"Ana","email":"ana@example.com","course":"c","source":"s","consent":{"privacy":true,"text_version":"v"}}`,
		`{"utm":null,"consent":null,"client":null,"audience":null,"input":null,"marketing_consent":null}`,
		`{"marketing_consent":false,"audience":{}}`,
		`{"i":1,"i64":-9223372036854775808,"f":0.5,"s":"","b":false,"sub":null}`,
		many(10), many(63), many(64), many(70),
		// Keys in another case, or folding to a field's name.
		`{"EMAIL":"ana@example.com"}`, `{"Email":"ana@example.com","email":"x@example.com"}`,
		`{"First_Name":"Ana"}`, `{"utm":{"Source":"x"}}`, `{"client":{"user_agent":"x","User_Agent":"y"}}`,
		"{\"consent\":{\"privacy\":true,\"mar\u212aeting\":true}}", // Kelvin sign K
		"{\"\u017fite\":\"sevilla\",\"\u017fource\":\"web\"}",      // long s
		"{\"meta_campaign_id\":\"1\",\"\u212aind\":\"x\",\"I\":1}",
		`{"\u0045MAIL":"ana@example.com"}`, `{"\u017fite":"x"}`,
		`{"kind":"k","input":{"Title":"T","TITLE":"t"}}`,
		`{"first-name":"Ana"}`, `{"":1}`, `{" email":"x"}`,
		// Unknown fields, at the top and nested.
		`{"foo":1}`, `{"first_name":"Ana","nope":true}`, `{"utm":{"foo":"x"}}`,
		`{"consent":{"privacy":true,"extra":1}}`, `{"client":{"ip":"1.2.3.4","ua":"x"}}`,
		`{"audience":{"course":"c","bogus":[]}}`, `{"sub":{"sub":{"zz":1}}}`,
		// Values of the wrong type.
		`{"first_name":1}`, `{"first_name":true}`, `{"first_name":{}}`, `{"first_name":[]}`,
		`{"consent":{"privacy":"yes"}}`, `{"consent":{"privacy":1}}`, `{"utm":[]}`, `{"utm":"x"}`,
		`{"client":true}`, `{"marketing_consent":"yes"}`, `{"audience":[]}`, `{"audience":"all"}`,
		`{"i":"1"}`, `{"i":1.5}`, `{"i":1e3}`, `{"i":true}`, `{"b":1}`, `{"sub":[]}`, `{"f":"1"}`,
		`{"first_name":1,"email":2,"utm":{"source":3,"nope":4},"zzz":5}`,
		// Huge numbers.
		`{"first_name":1e400}`, `{"email":18446744073709551616}`, `{"course":-0}`,
		`{"kind":"k","input":{"variants":1e400}}`, `{"i":9223372036854775808}`, `{"i64":-9223372036854775809}`,
		`{"f":1e400}`, `{"f":-1e400}`, `{"i":100000000000000000000000000000}`,
		// Not an object.
		`null`, ` null `, `true`, `1`, `"x"`, `[]`, `[{}]`, `[{"first_name":"Ana"}]`, "\xef\xbb\xbf{}",
		// Trailing data.
		`{} {}`, `{}x`, `{"first_name":"a"} garbage`, `{}]`, `{}}`, `{},`, `{} null`, `{"first_name":"Ana"}"x"`,
		// Repeated keys.
		`{"first_name":"a","first_name":"b"}`, `{"utm":{"source":"a","source":"b"}}`,
		`{"consent":{},"consent":null}`, `{"kind":"k","input":{"a":1,"a":2}}`, `{"i":1,"i" :2}`,
		// Escapes.
		`{"first_name":"\u00e9"}`, `{"first_name":"\ud800"}`, `{"last_name":"\udc00x"}`,
		`{"message":"\ud83d\ude00"}`, `{"first_name":"a\"b"}`, `{"first_name":"a\nb"}`, `{"first_name":"a\\b"}`,
		`{"first_name":"Ana\u0000"}`, `{"first\u005fname":"Ana"}`,
		// Invalid UTF-8.
		"{\"first_name\":\"\xff\xfe\"}", "{\"\xff\":1}", "{\"first_name\":\"Ana\"}\xff",
		// Malformed.
		``, ` `, `{`, `{"`, `{"a"`, `{"a":`, `{"a":}`, `{,}`, `{"a":1,}`, `{'a':1}`, `{"first_name":"Ana",}`,
		`{"utm":{"source":"x"}`, `{"first_name":"Ana"`, `{"first_name":Ana}`, `{"i":01}`, `{"i":+1}`,
		// Deep.
		strings.Repeat(`{"a":`, 100) + `1` + strings.Repeat(`}`, 100),
		`{"utm":` + strings.Repeat(`[`, 100) + `1` + strings.Repeat(`]`, 100) + `}`,
		`{"kind":"k","input":` + strings.Repeat(`{"a":`, 100) + `1` + strings.Repeat(`}`, 100) + `}`,
		`{"sub":` + strings.Repeat(`{"sub":`, 50) + `{}` + strings.Repeat(`}`, 51),
		strings.Repeat(`{"a":`, 10001) + `1` + strings.Repeat(`}`, 10001),
	}
	for _, f := range fastBodies {
		bodies = append(bodies, f.body)
	}
	return bodies
}

// decodeTypes are the types the differential tests decode into.
var decodeTypes = append(append([]reflect.Type{}, requestTypes...),
	reflect.TypeFor[numRequest](),
	reflect.TypeFor[struct {
		Email string `json:"Email"`
		Any   any    `json:"any"`
		Time  time.Time
	}]())

// checkFastSlow decodes body into a fresh value of typ with decodeJSON and
// with decodeJSONSlow and fails on any difference.
func checkFastSlow(t *testing.T, typ reflect.Type, body []byte) {
	t.Helper()
	fast, slow := reflect.New(typ), reflect.New(typ)
	fErrs, fErr := decodeJSON(body, fast.Interface())
	sErrs, sErr := decodeJSONSlow(body, slow.Interface())
	errText := func(err error) string {
		if err == nil {
			return "<nil>"
		}
		return err.Error()
	}
	if !reflect.DeepEqual(fErrs, sErrs) {
		t.Errorf("%s %q: field errors %#v, slow path %#v", typ, body, fErrs, sErrs)
	}
	if errText(fErr) != errText(sErr) || !reflect.DeepEqual(fErr, sErr) {
		t.Errorf("%s %q: error %v, slow path %v", typ, body, fErr, sErr)
	}
	if !reflect.DeepEqual(fast.Interface(), slow.Interface()) {
		t.Errorf("%s %q: decoded %#v, slow path %#v", typ, body, fast.Elem().Interface(), slow.Elem().Interface())
	}
}

// TestDecodeFastMatchesSlow: decodeJSON answers every body exactly as
// decodeJSONSlow does, field errors, error and decoded value.
func TestDecodeFastMatchesSlow(t *testing.T) {
	for _, body := range decodeBodies() {
		for _, typ := range decodeTypes {
			checkFastSlow(t, typ, []byte(body))
		}
	}
}

// TestDecodeFastTaken: decodeFast takes the common bodies, and refuses the
// unusual ones, leaving dst zero.
func TestDecodeFastTaken(t *testing.T) {
	for _, f := range fastBodies {
		dst := reflect.New(f.typ)
		if !decodeFast([]byte(f.body), dst.Interface()) {
			t.Errorf("%s %q: decodeFast refused it", f.typ, f.body)
		}
		if shape, err := decodeJSONSlow([]byte(f.body), reflect.New(f.typ).Interface()); shape != nil || err != nil {
			t.Errorf("%s %q: the slow path answers %v %v", f.typ, f.body, shape, err)
		}
	}
	lead := reflect.TypeFor[leadRequest]()
	for _, body := range []string{
		`null`, `[]`, `{"EMAIL":"a@example.com"}`, "{\"consent\":{\"mar\u212aeting\":true}}",
		`{"first_name":"Ana","nope":1}`, `{"utm":{"nope":1}}`, `{"first_name":1}`, `{"first_name":"Ana"} {}`,
		`{"first_name":"a","first_name":"b"}`, `{"first_name":"\u00e9"}`,
		"{\"first_name\":\"\xff\"}", `{"first_name":"Ana","email":"ana@example.com","consent":{"privacy":true,"text_version":"v"},"utm":[]}`,
	} {
		dst := reflect.New(lead)
		if decodeFast([]byte(body), dst.Interface()) {
			t.Errorf("%q: decodeFast took it", body)
		}
		if !dst.Elem().IsZero() {
			t.Errorf("%q: decodeFast left %#v", body, dst.Elem().Interface())
		}
	}
	// A dst that is not zero, or not a pointer to a struct, is the slow
	// path's.
	req := leadRequest{FirstName: "Eva"}
	if decodeFast([]byte(`{"email":"ana@example.com"}`), &req) {
		t.Error("decodeFast took a dst that is not zero")
	}
	var m map[string]any
	if decodeFast([]byte(`{}`), &m) || decodeFast([]byte(`{}`), (*leadRequest)(nil)) || decodeFast([]byte(`{}`), leadRequest{}) {
		t.Error("decodeFast took a dst that is not a pointer to a struct")
	}
}

// FuzzDecodeFastSlow: decodeJSON and decodeJSONSlow agree on every body.
func FuzzDecodeFastSlow(f *testing.F) {
	for _, b := range decodeBodies() {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, typ := range decodeTypes {
			checkFastSlow(t, typ, body)
		}
	})
}

// TestDecodeFastGivesUp: when decodeFast gives up half way through a body,
// the answer is still the slow path's 400, and dst stays zero.
func TestDecodeFastGivesUp(t *testing.T) {
	var req leadRequest
	_, err := decodeJSON([]byte(`{"first_name":"Ana"} x`), &req)
	var p *Problem
	if !errors.As(err, &p) || p.Status != 400 {
		t.Fatalf("error %v is not a 400 problem", err)
	}
	if !reflect.DeepEqual(req, leadRequest{}) {
		t.Fatalf("dst after a 400: %#v", req)
	}
}

// BenchmarkDecodeLead decodes the README's example lead with decodeJSON
// (the fast path) and with decodeJSONSlow.
func BenchmarkDecodeLead(b *testing.B) {
	body := []byte(readmeLeadJSON)
	for _, c := range []struct {
		name   string
		decode func([]byte, any) ([]FieldError, error)
	}{{"fast", decodeJSON}, {"slow", decodeJSONSlow}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				var req leadRequest
				if shape, err := c.decode(body, &req); shape != nil || err != nil || req.Email == "" {
					b.Fatal(shape, err)
				}
			}
		})
	}
}

func BenchmarkMayRepeatKeys(b *testing.B) {
	body := []byte(validLeadJSON)
	b.ReportAllocs()
	for b.Loop() {
		if mayRepeatKeys(body) {
			b.Fatal("repeats")
		}
	}
}

func TestReadAllSizedFromContentLength(t *testing.T) {
	for _, tc := range []struct {
		body string
		cl   int64
	}{
		{`{"a":"b"}`, 9},       // as announced
		{`{"a":"b"}`, 4},       // more than announced
		{`{"a":"b"}`, 100},     // less than announced
		{`{"a":"b"}`, 0},       // unknown
		{`{"a":"b"}`, -1},      // unknown
		{"", 0},                // empty
		{`{"a":"b"}`, 1 << 40}, // absurd: plain io.ReadAll
		{strings.Repeat("x", 5000), 5000},
	} {
		got, err := readAll(strings.NewReader(tc.body), tc.cl)
		if err != nil || string(got) != tc.body {
			t.Errorf("readAll(%d bytes, content length %d) = %d bytes, %v; want the body", len(tc.body), tc.cl, len(got), err)
		}
	}
	// Announced right, a 5,000-byte body is one allocation (io.ReadAll
	// starts at 512 bytes and grows four times).
	body := strings.Repeat("x", 5000)
	r := strings.NewReader(body)
	if n := testing.AllocsPerRun(100, func() {
		r.Reset(body)
		if _, err := readAll(r, int64(len(body))); err != nil {
			t.Fatal(err)
		}
	}); n != 1 {
		t.Errorf("readAll of a body its Content-Length announced: %v allocations, want 1", n)
	}
}
