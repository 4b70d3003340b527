package record

import (
	"bytes"
	"slices"
	"testing"
	"time"
)

// TestEncoderWritesWhatTheFunctionsWrite encodes sequences of records
// through one Encoder, whose remembered device, read time, gateway and
// epoch change between records in every way, and compares each record
// with AppendEnvelope around AppendJSON.
func TestEncoderWritesWhatTheFunctionsWrite(t *testing.T) {
	golden := goldenCases()
	names := make([]string, 0, len(golden))
	for name := range golden {
		names = append(names, name)
	}
	slices.Sort(names)
	var all []Fields
	for _, name := range names {
		all = append(all, golden[name])
	}
	vary := func(f Fields, i int) Fields {
		switch i % 7 {
		case 1:
			f.Device = "press-02"
		case 2:
			f.ReadTime = f.ReadTime.Add(time.Nanosecond)
		case 3:
			f.ReadTime = f.ReadTime.In(time.FixedZone("CET", 3600)) // the same instant elsewhere
		case 4:
			f.Gateway = `gw "2"`
		case 5:
			f.Epoch = "ffffffffffffffff"
		case 6:
			f.ReadTime = time.Unix(-1, 999_999_999) // before 1970
			f.Device = "é\xff"
		}
		return f
	}
	cases := []struct {
		name    string
		records []Fields
	}{
		{"golden, one after the other", all},
		{"the same record again", []Fields{all[0], all[0], all[0]}},
		{"golden, varied", func() []Fields {
			var out []Fields
			for i, f := range all {
				out = append(out, vary(f, i), f, vary(f, i+3))
			}
			return out
		}()},
		{"a batch of one device and read time", func() []Fields {
			var out []Fields
			for i := range 50 {
				f := base("r"+string(rune('a'+i%26)), uint64(i), TypeUint)
				f.Uint = uint64(i * 1000)
				out = append(out, f)
			}
			return out
		}()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var e Encoder
			var got []byte
			for i := range c.records {
				f := &c.records[i]
				want := AppendEnvelope(nil, f.Device, f.ReadTime, f.Epoch, AppendJSON(nil, f))
				got = e.Append(got[:0], f)
				if !bytes.Equal(got, want) {
					t.Fatalf("record %d (%+v):\n got %q\nwant %q", i, *f, got, want)
				}
			}
		})
	}
}

// TestEncoderAppendsToDst checks that Append keeps what dst holds.
func TestEncoderAppendsToDst(t *testing.T) {
	f := base("temperature", 1, TypeFloat)
	var e Encoder
	got := e.Append([]byte("prefix"), &f)
	want := AppendEnvelope([]byte("prefix"), f.Device, f.ReadTime, f.Epoch, AppendJSON(nil, &f))
	if !bytes.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// BenchmarkEncoder times a driver's batch of 100 registers of one device
// read at once, as the ingest stage encodes it: through an Encoder, and
// through AppendEnvelope and AppendJSON. ns/op is per record.
func BenchmarkEncoder(b *testing.B) {
	batch := make([]Fields, 100)
	for i := range batch {
		f := base("r"+string(rune('a'+i%26))+string(rune('a'+i/26)), 1000, TypeUint) // polled together: one count
		f.Gateway, f.Device, f.Uint = "gw-bench", "dev-0001", uint64(i*331)
		batch[i] = f
	}
	b.Run("encoder", func(b *testing.B) {
		var e Encoder
		buf := make([]byte, 0, 512)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			buf = e.Append(buf[:0], &batch[i%len(batch)])
			i++
		}
		b.SetBytes(int64(len(buf)))
	})
	b.Run("functions", func(b *testing.B) {
		buf := make([]byte, 0, 512)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			f := &batch[i%len(batch)]
			buf = AppendEnvelope(buf[:0], f.Device, f.ReadTime, f.Epoch, nil)
			buf = AppendJSON(buf, f)
			i++
		}
		b.SetBytes(int64(len(buf)))
	})
}
