package sparkplug

import (
	"math"
	"reflect"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Payload
	}{
		{"birth", Payload{Timestamp: 1764144000000, Seq: 0, HasSeq: true, Metrics: []Metric{
			{Name: MetricBdSeq, Type: Int64, Value: Value{Long: 3}},
			{Name: MetricRebirth, Type: Boolean, Value: Value{Bool: false}},
		}}},
		{"death without seq", Payload{Timestamp: 5, Metrics: []Metric{{Name: MetricBdSeq, Type: Int64, Value: Value{Long: 255}}}}},
		{"every scalar", Payload{Timestamp: 7, Seq: 255, HasSeq: true, Metrics: []Metric{
			{Name: "d", Alias: 1, HasAlias: true, Timestamp: 9, Type: Double, Value: Value{Double: -21.5}},
			{Alias: 2, HasAlias: true, Type: Double, Value: Value{Double: math.Inf(1)}},
			{Alias: 3, HasAlias: true, Type: Int64, IsHistorical: true, Value: Value{Long: uint64(1<<63 + 5)}},
			{Alias: 4, HasAlias: true, Type: UInt64, Value: Value{Long: math.MaxUint64}},
			{Alias: 5, HasAlias: true, Type: Boolean, Value: Value{Bool: true}},
			{Alias: 6, HasAlias: true, Type: String, Value: Value{Str: "héllo"}},
			{Alias: 7, HasAlias: true, Type: Float, Value: Value{Float: 1.25}},
			{Alias: 8, HasAlias: true, Type: Int32, Value: Value{Int: uint32(0xFFFFFFFF)}},
			{Alias: 9, HasAlias: true, Type: Double, IsNull: true},
			{Alias: 10, HasAlias: true, Type: Double, Value: Value{Double: 1}, Properties: []Property{
				{Key: "Quality", Type: Int32, Value: Value{Int: 0}},
				{Key: "seq", Type: UInt64, Value: Value{Long: 42}},
				{Key: "note", Type: String, IsNull: true},
			}},
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(tc.p.Append(nil))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.p) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, tc.p)
			}
		})
	}
}

func TestDecodeRefuses(t *testing.T) {
	for _, b := range [][]byte{
		{0x12, 0x05, 0x0a},       // metric longer than the payload
		{0x08},                   // timestamp without its varint
		{0x13},                   // a group
		{0x12, 0x02, 0x4a, 0x05}, // property set longer than its metric
	} {
		if _, err := Decode(b); err == nil {
			t.Errorf("Decode(% x) accepted", b)
		}
	}
}

func TestTopic(t *testing.T) {
	if got := Topic("plant", DData, "gw-1", "press-01"); got != "spBv1.0/plant/DDATA/gw-1/press-01" {
		t.Errorf("device topic %q", got)
	}
	if got := Topic("plant", NBirth, "gw-1", ""); got != "spBv1.0/plant/NBIRTH/gw-1" {
		t.Errorf("node topic %q", got)
	}
}

// FuzzDecode: no input panics the decoder, and what it accepts encodes
// and decodes to the same payload.
func FuzzDecode(f *testing.F) {
	p := Payload{Timestamp: 1, Seq: 3, HasSeq: true, Metrics: []Metric{
		{Name: "t", Alias: 1, HasAlias: true, Type: Double, Value: Value{Double: 2},
			Properties: []Property{{Key: "seq", Type: UInt64, Value: Value{Long: 9}}}},
	}}
	f.Add(p.Append(nil))
	f.Add([]byte{0x12, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Decode(p.Append(nil))
		if err != nil {
			t.Fatalf("re-encoded payload refused: %v", err)
		}
		if len(again.Metrics) != len(p.Metrics) || again.Seq != p.Seq {
			t.Fatalf("round trip changed the payload: %+v -> %+v", p, again)
		}
	})
}
