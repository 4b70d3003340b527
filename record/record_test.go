package record

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

var t0 = time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)

func base(tag string, seq uint64, typ string) Fields {
	return Fields{Gateway: "gw-01", Device: "press-01", Tag: tag, Seq: seq, Type: typ, Quality: "good", ReadTime: t0}
}

// goldenCases pairs every file in testdata/golden with the Fields that must
// encode to it byte for byte. The files were written by hand, not by the
// encoder.
func goldenCases() map[string]Fields {
	c := map[string]Fields{}
	f := base("temperature", 1, TypeFloat)
	f.Float = 21.5
	f.ReadTime = t0.Add(123456789 * time.Nanosecond)
	c["float"] = f
	f = base("energy_wh", 9007199254740993, TypeInt)
	f.Int = math.MaxInt64
	c["int64-max"] = f
	f = base("offset", 2, TypeInt)
	f.Int = math.MinInt64
	f.Quality = "uncertain"
	c["int64-min"] = f
	f = base("parts", math.MaxUint64, TypeUint)
	f.Uint = math.MaxUint64
	c["uint64-max"] = f
	f = base("flow", 3, TypeFloat)
	f.Float = math.NaN()
	f.Quality = "bad"
	c["nan"] = f
	f = base("flow", 4, TypeFloat)
	f.Float = math.Inf(1)
	f.Quality = "uncertain"
	c["inf"] = f
	f = base("flow", 5, TypeFloat)
	f.Float = math.Inf(-1)
	f.Quality = "uncertain"
	c["neg-inf"] = f
	f = base("leak", 6, TypeFloat)
	f.Float = 1e-7
	c["float-small"] = f
	f = base("total", 7, TypeFloat)
	f.Float = 1e21
	c["float-large"] = f
	f = base("door_open", 8, TypeBool)
	f.Bool = true
	f.SourceTime = t0.Add(-2 * time.Millisecond)
	c["bool-source-time"] = f
	f = base("recipe", 9, TypeString)
	f.Device = `Linie 3 "Süd"`
	f.String = "line1\nline2\ttab \\ \x01 ok"
	c["string-escapes"] = f
	return c
}

func TestGoldenRecords(t *testing.T) {
	schema := compileSchema(t)
	files, err := filepath.Glob("testdata/golden/*.json")
	if err != nil {
		t.Fatal(err)
	}
	cases := goldenCases()
	if len(files) != len(cases) {
		t.Fatalf("%d golden files, %d cases: every file needs a case", len(files), len(cases))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			want = bytes.TrimSpace(want)
			fields, ok := cases[name]
			if !ok {
				t.Fatalf("no case for %s", file)
			}
			got := AppendJSON(nil, &fields)
			if !bytes.Equal(got, want) {
				t.Errorf("encoder output differs from %s\n got: %s\nwant: %s", file, got, want)
			}
			if !json.Valid(got) {
				t.Errorf("not valid JSON: %s", got)
			}
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(want))
			if err != nil {
				t.Fatal(err)
			}
			if err := schema.Validate(inst); err != nil {
				t.Errorf("%s does not match record.schema.json: %v", file, err)
			}
			back, err := Decode(want)
			if err != nil {
				t.Fatal(err)
			}
			if !fieldsEqual(back, fields) {
				t.Errorf("decode round trip:\n got %+v\nwant %+v", back, fields)
			}
		})
	}
}

func TestSchemaRejectsWrongRecords(t *testing.T) {
	schema := compileSchema(t)
	bad := map[string]string{
		"missing seq":      `{"schema":1,"gateway":"g","device":"d","tag":"t","type":"int","value":1,"quality":"good","read_time":"2026-11-26T08:00:00Z"}`,
		"int as string":    `{"schema":1,"gateway":"g","device":"d","tag":"t","seq":1,"type":"int","value":"1","quality":"good","read_time":"2026-11-26T08:00:00Z"}`,
		"unknown quality":  `{"schema":1,"gateway":"g","device":"d","tag":"t","seq":1,"type":"int","value":1,"quality":"ok","read_time":"2026-11-26T08:00:00Z"}`,
		"extra field":      `{"schema":1,"gateway":"g","device":"d","tag":"t","seq":1,"type":"int","value":1,"quality":"good","read_time":"2026-11-26T08:00:00Z","x":1}`,
		"float bad string": `{"schema":1,"gateway":"g","device":"d","tag":"t","seq":1,"type":"float","value":"nan","quality":"good","read_time":"2026-11-26T08:00:00Z"}`,
	}
	for name, doc := range bad {
		t.Run(name, func(t *testing.T) {
			inst, err := jsonschema.UnmarshalJSON(strings.NewReader(doc))
			if err != nil {
				t.Fatal(err)
			}
			if schema.Validate(inst) == nil {
				t.Errorf("schema accepted %s", doc)
			}
		})
	}
}

func TestStringEncodingIsValidJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "\x00\x1f\x7f", "bad utf8 \xff\xfe", "emoji 🏭", `<>&`, "\u2028"} {
		f := base("t", 1, TypeString)
		f.String = s
		out := AppendJSON(nil, &f)
		if !json.Valid(out) {
			t.Errorf("invalid JSON for %q: %s", s, out)
			continue
		}
		back, err := Decode(out)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		// encoding/json also replaces each invalid byte with U+FFFD.
		enc, _ := json.Marshal(s)
		var want string
		if err := json.Unmarshal(enc, &want); err != nil {
			t.Fatal(err)
		}
		if back.String != want {
			t.Errorf("round trip of %q gave %q", s, back.String)
		}
	}
}

func TestFloatsMatchEncodingJSON(t *testing.T) {
	for _, v := range []float64{0, -0.5, 1, 123456.789, 1e-6, 9.99e-7, 1e20, 1e21, -3.4e38, math.SmallestNonzeroFloat64, math.MaxFloat64} {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendFloat(nil, v); !bytes.Equal(got, want) {
			t.Errorf("appendFloat(%g) = %s, encoding/json gives %s", v, got, want)
		}
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	value := []byte(`{"x":1}`)
	for _, key := range []string{"", "press-01", strings.Repeat("k", 300)} {
		ts := time.Unix(0, 1764144000123456789)
		b := AppendEnvelope(nil, key, ts, value)
		env, err := DecodeEnvelope(b)
		if err != nil {
			t.Fatalf("key %q: %v", key, err)
		}
		if env.Key != key || !env.Time.Equal(ts) || !bytes.Equal(env.Value, value) {
			t.Errorf("key %q: got %+v", key, env)
		}
	}
}

func TestDecodeEnvelopeRejectsGarbage(t *testing.T) {
	good := AppendEnvelope(nil, "dev", t0, []byte("{}"))
	cases := map[string][]byte{
		"empty":            nil,
		"wrong version":    append([]byte{9}, good[1:]...),
		"key too long":     {1, 50, 'a'},
		"no timestamp":     {1, 1, 'a'},
		"truncated varint": {1, 0x80},
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := DecodeEnvelope(b); err == nil {
				t.Errorf("accepted %v", b)
			}
		})
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add(AppendEnvelope(nil, "dev", t0, []byte("{}")))
	f.Add([]byte{1, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := DecodeEnvelope(b)
		if err != nil {
			return
		}
		again := AppendEnvelope(nil, env.Key, env.Time, env.Value)
		if _, err := DecodeEnvelope(again); err != nil {
			t.Fatalf("re-encoded envelope does not decode: %v", err)
		}
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	f := base("temperature", 123456, TypeFloat)
	f.Float = 21.534
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJSON(buf[:0], &f)
	}
	b.SetBytes(int64(len(buf)))
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	s, err := c.Compile("record.schema.json")
	if err != nil {
		t.Fatalf("compile record.schema.json: %v", err)
	}
	return s
}

func fieldsEqual(a, b Fields) bool {
	fa, fb := a.Float, b.Float
	a.Float, b.Float = 0, 0
	sameFloat := fa == fb || (math.IsNaN(fa) && math.IsNaN(fb))
	return sameFloat && a.ReadTime.Equal(b.ReadTime) && a.SourceTime.Equal(b.SourceTime) &&
		a.Gateway == b.Gateway && a.Device == b.Device && a.Tag == b.Tag && a.Seq == b.Seq &&
		a.Type == b.Type && a.Int == b.Int && a.Uint == b.Uint && a.Bool == b.Bool &&
		a.String == b.String && a.Quality == b.Quality
}

func TestDeadLetterRoundTrip(t *testing.T) {
	env := AppendEnvelope(nil, "press-01", t0, []byte(`{"x":1}`))
	at := t0.Add(time.Hour)
	b := AppendDeadLetter(nil, "MESSAGE_TOO_LARGE", at, env)
	dl, err := DecodeDeadLetter(b)
	if err != nil {
		t.Fatal(err)
	}
	if dl.Reason != "MESSAGE_TOO_LARGE" || !dl.At.Equal(at) || !bytes.Equal(dl.Envelope, env) {
		t.Fatalf("round trip: %+v", dl)
	}
	if _, err := DecodeDeadLetter(env); err == nil {
		t.Fatal("an envelope decoded as a dead letter")
	}
	if _, err := DecodeEnvelope(b); err == nil {
		t.Fatal("a dead letter decoded as an envelope")
	}
	for _, bad := range [][]byte{nil, {deadLetterVersion}, {deadLetterVersion, 9, 'a'}, {deadLetterVersion, 0}} {
		if _, err := DecodeDeadLetter(bad); err == nil {
			t.Errorf("accepted %v", bad)
		}
	}
}
