package record

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

var t0 = time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)

const testEpoch = "0f1e2d3c4b5a6978"

func base(tag string, seq uint64, typ string) Fields {
	return Fields{Gateway: "gw-01", Epoch: testEpoch, Device: "press-01", Tag: tag, Seq: seq, Type: typ, Quality: "good", ReadTime: t0}
}

// widen32 is a float32 reading as the drivers hand it over: the float64
// nearest to its shortest decimal (drivers.Float32).
func widen32(f float32) float64 {
	w, err := strconv.ParseFloat(strconv.FormatFloat(float64(f), 'g', -1, 32), 64)
	if err != nil {
		panic(err)
	}
	return w
}

// float32Cases are the golden files of float32 readings and the float32
// each must read back as.
var float32Cases = map[string]float32{
	"float32":          3.14159,
	"float32-negative": -273.15,
	"float32-max":      math.MaxFloat32,
	"float32-denormal": math.SmallestNonzeroFloat32,
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
	for name, seq := range map[string]uint64{"float32": 10, "float32-negative": 11, "float32-max": 12, "float32-denormal": 13} {
		f = base(map[string]string{"float32": "pi", "float32-negative": "zero_k", "float32-max": "max", "float32-denormal": "tiny"}[name], seq, TypeFloat)
		f.Float = widen32(float32Cases[name])
		c[name] = f
	}
	for i, b := range []struct{ tag, typ string }{{"temperature", TypeFloat}, {"parts", TypeUint}, {"door_open", TypeBool}, {"recipe", TypeString}} {
		f = base(b.tag, uint64(14+i), b.typ)
		f.Quality = QualityBad
		f.NoValue = true
		f.ReadTime = t0.Add(time.Second)
		c["bad-"+b.typ] = f
	}
	f = base("temperature", 18, TypeFloat)
	f.Quality = QualityBad
	f.NoValue = true
	f.Status = "BadSensorFailure"
	f.SourceTime = t0.Add(-time.Millisecond)
	c["status-bad"] = f
	f = base("temperature", 19, TypeFloat)
	f.Float = 99
	f.Quality = QualityUncertain
	f.Status = "UncertainLastUsableValue"
	c["status-uncertain"] = f
	return c
}

// goldenV1Cases are the schema 1 files of earlier builds, which Decode
// still reads: no epoch, and a bad sample with a value.
func goldenV1Cases() map[string]Fields {
	c := goldenCases()
	for name, f := range c {
		f.Epoch = ""
		c[name] = f
	}
	nan := c["nan"]
	nan.Quality = QualityBad
	c["nan"] = nan
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

func TestGoldenV1RecordsDecode(t *testing.T) {
	files, err := filepath.Glob("testdata/golden-v1/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no schema 1 golden files: %v", err)
	}
	cases := goldenV1Cases()
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(bytes.TrimSpace(data))
			if err != nil {
				t.Fatal(err)
			}
			if want := cases[name]; !fieldsEqual(got, want) {
				t.Errorf("decode of %s:\n got %+v\nwant %+v", file, got, want)
			}
		})
	}
}

func TestFloat32GoldenReadsBack(t *testing.T) {
	for name, want := range float32Cases {
		data, err := os.ReadFile(filepath.Join("testdata/golden", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		f, err := Decode(bytes.TrimSpace(data))
		if err != nil {
			t.Fatal(err)
		}
		if got := float32(f.Float); math.Float32bits(got) != math.Float32bits(want) {
			t.Errorf("%s: value %v reads back as float32 %v, want %v", name, f.Float, got, want)
		}
		if s := strconv.FormatFloat(float64(want), 'g', -1, 32); !strings.Contains(string(data), `"value":`+s+`,`) {
			t.Errorf("%s: value is not the shortest float32 decimal %s: %s", name, s, data)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good := string(AppendJSON(nil, ptr(base("t", 1, TypeInt))))
	bad := map[string]string{
		"bad with value":         strings.Replace(good, `"quality":"good"`, `"quality":"bad"`, 1),
		"good without value":     strings.Replace(good, `"value":0,`, ``, 1),
		"value null":             strings.Replace(good, `"value":0`, `"value":null`, 1),
		"schema 2 without epoch": strings.Replace(good, `"epoch":"`+testEpoch+`",`, ``, 1),
		"schema 1 with epoch":    strings.Replace(good, `"schema":2`, `"schema":1`, 1),
		"schema 3":               strings.Replace(good, `"schema":2`, `"schema":3`, 1),
		"empty status":           strings.Replace(good, `"quality":"good"`, `"quality":"good","status":""`, 1),
		"status not a string":    strings.Replace(good, `"quality":"good"`, `"quality":"good","status":1`, 1),
	}
	for name, doc := range bad {
		t.Run(name, func(t *testing.T) {
			if doc == good {
				t.Fatal("replacement did not apply")
			}
			if f, err := Decode([]byte(doc)); err == nil {
				t.Errorf("Decode accepted %s as %+v", doc, f)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestSchemaRejectsWrongRecords(t *testing.T) {
	schema := compileSchema(t)
	const e = `"epoch":"0f1e2d3c4b5a6978",`
	bad := map[string]string{
		"missing seq":        `{"schema":2,"gateway":"g",` + e + `"device":"d","tag":"t","type":"int","value":1,"quality":"good","read_time":"2026-11-26T08:00:00Z"}`,
		"int as string":      `{"schema":2,"gateway":"g",` + e + `"device":"d","tag":"t","seq":1,"type":"int","value":"1","quality":"good","read_time":"2026-11-26T08:00:00Z"}`,
		"unknown quality":    `{"schema":2,"gateway":"g",` + e + `"device":"d","tag":"t","seq":1,"type":"int","value":1,"quality":"ok","read_time":"2026-11-26T08:00:00Z"}`,
		"extra field":        `{"schema":2,"gateway":"g",` + e + `"device":"d","tag":"t","seq":1,"type":"int","value":1,"quality":"good","read_time":"2026-11-26T08:00:00Z","x":1}`,
		"float bad string":   `{"schema":2,"gateway":"g",` + e + `"device":"d","tag":"t","seq":1,"type":"float","value":"nan","quality":"good","read_time":"2026-11-26T08:00:00Z"}`,
		"schema 1":           `{"schema":1,"gateway":"g","device":"d","tag":"t","seq":1,"type":"int","value":1,"quality":"good","read_time":"2026-11-26T08:00:00Z"}`,
		"missing epoch":      `{"schema":2,"gateway":"g","device":"d","tag":"t","seq":1,"type":"int","value":1,"quality":"good","read_time":"2026-11-26T08:00:00Z"}`,
		"epoch upper case":   `{"schema":2,"gateway":"g","epoch":"0F1E2D3C4B5A6978","device":"d","tag":"t","seq":1,"type":"int","value":1,"quality":"good","read_time":"2026-11-26T08:00:00Z"}`,
		"bad with value":     `{"schema":2,"gateway":"g",` + e + `"device":"d","tag":"t","seq":1,"type":"int","value":0,"quality":"bad","read_time":"2026-11-26T08:00:00Z"}`,
		"bad with null":      `{"schema":2,"gateway":"g",` + e + `"device":"d","tag":"t","seq":1,"type":"int","value":null,"quality":"bad","read_time":"2026-11-26T08:00:00Z"}`,
		"good without value": `{"schema":2,"gateway":"g",` + e + `"device":"d","tag":"t","seq":1,"type":"int","quality":"good","read_time":"2026-11-26T08:00:00Z"}`,
		"empty status":       `{"schema":2,"gateway":"g",` + e + `"device":"d","tag":"t","seq":1,"type":"int","value":1,"quality":"good","status":"","read_time":"2026-11-26T08:00:00Z"}`,
		"status not string":  `{"schema":2,"gateway":"g",` + e + `"device":"d","tag":"t","seq":1,"type":"int","value":1,"quality":"good","status":7,"read_time":"2026-11-26T08:00:00Z"}`,
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
		for _, epoch := range []string{"", testEpoch} {
			ts := time.Unix(0, 1764144000123456789)
			b := AppendEnvelope(nil, key, ts, epoch, value)
			env, err := DecodeEnvelope(b)
			if err != nil {
				t.Fatalf("key %q: %v", key, err)
			}
			if env.Key != key || !env.Time.Equal(ts) || string(env.Epoch) != epoch || env.Schema != SchemaVersion || !bytes.Equal(env.Value, value) {
				t.Errorf("key %q epoch %q: got %+v", key, epoch, env)
			}
		}
	}
}

// TestDecodeEnvelopeV1 reads an envelope of an earlier build, as buffered
// before an upgrade: no epoch, a schema 1 value.
func TestDecodeEnvelopeV1(t *testing.T) {
	v1 := []byte(`{"schema":1}`)
	b := append([]byte{1, 3, 'd', 'e', 'v'}, binary.AppendVarint(nil, t0.UnixNano())...)
	b = append(b, v1...)
	env, err := DecodeEnvelope(b)
	if err != nil {
		t.Fatal(err)
	}
	if env.Key != "dev" || !env.Time.Equal(t0) || env.Schema != 1 || env.Epoch != nil || !bytes.Equal(env.Value, v1) {
		t.Fatalf("got %+v", env)
	}
}

func TestDecodeEnvelopeRejectsGarbage(t *testing.T) {
	good := AppendEnvelope(nil, "dev", t0, testEpoch, []byte("{}"))
	cases := map[string][]byte{
		"empty":            nil,
		"wrong version":    append([]byte{9}, good[1:]...),
		"key too long":     {2, 50, 'a'},
		"no timestamp":     {2, 1, 'a'},
		"truncated varint": {2, 0x80},
		"no epoch length":  {2, 1, 'a', 2},
		"epoch too long":   {2, 1, 'a', 2, 17, '0'},
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
	f.Add(AppendEnvelope(nil, "dev", t0, testEpoch, []byte("{}")))
	f.Add([]byte{1, 0xff, 0xff, 0xff})
	f.Add([]byte{1, 1, 'a', 2, '{', '}'})
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := DecodeEnvelope(b)
		if err != nil {
			return
		}
		again := AppendEnvelope(nil, env.Key, env.Time, string(env.Epoch), env.Value)
		back, err := DecodeEnvelope(again)
		if err != nil {
			t.Fatalf("re-encoded envelope does not decode: %v", err)
		}
		if back.Key != env.Key || !back.Time.Equal(env.Time) || !bytes.Equal(back.Epoch, env.Epoch) || !bytes.Equal(back.Value, env.Value) {
			t.Fatalf("round trip changed the envelope: %+v, then %+v", env, back)
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

// BenchmarkAppendJSONCases times the other shapes of a record: a float32
// reading, a bad sample without value, an integer, and the envelope
// around a record as the ingest stage writes it.
func BenchmarkAppendJSONCases(b *testing.B) {
	cases := map[string]Fields{}
	f := base("pi", 123456, TypeFloat)
	f.Float = widen32(3.14159)
	cases["float32"] = f
	f = base("temperature", 123456, TypeFloat)
	f.Quality, f.NoValue = QualityBad, true
	cases["bad"] = f
	f = base("energy_wh", 123456, TypeInt)
	f.Int = math.MaxInt64
	cases["int64"] = f
	for _, name := range []string{"float32", "bad", "int64"} {
		f := cases[name]
		b.Run(name, func(b *testing.B) {
			buf := make([]byte, 0, 512)
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendJSON(buf[:0], &f)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
	b.Run("envelope", func(b *testing.B) {
		f := cases["float32"]
		buf := make([]byte, 0, 512)
		b.ReportAllocs()
		for b.Loop() {
			buf = AppendEnvelope(buf[:0], f.Device, f.ReadTime, f.Epoch, nil)
			buf = AppendJSON(buf, &f)
		}
		b.SetBytes(int64(len(buf)))
	})
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
		a.Gateway == b.Gateway && a.Epoch == b.Epoch && a.NoValue == b.NoValue && a.Device == b.Device && a.Tag == b.Tag && a.Seq == b.Seq &&
		a.Type == b.Type && a.Int == b.Int && a.Uint == b.Uint && a.Bool == b.Bool &&
		a.String == b.String && a.Quality == b.Quality
}

func TestDeadLetterRoundTrip(t *testing.T) {
	env := AppendEnvelope(nil, "press-01", t0, testEpoch, []byte(`{"x":1}`))
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
