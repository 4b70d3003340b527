package drivers

import (
	"math"
	"strconv"
	"testing"
)

func TestValueFloat64AndEqual(t *testing.T) {
	cases := []struct {
		v    Value
		want float64
	}{
		{Float(-2.5), -2.5},
		{Int(-7), -7},
		{Uint(math.MaxUint32), math.MaxUint32},
		{Bool(true), 1},
		{Bool(false), 0},
		{String("12"), 0},
	}
	for _, tc := range cases {
		if got := tc.v.Float64(); got != tc.want {
			t.Errorf("%v.Float64() = %v, want %v", tc.v, got, tc.want)
		}
		if !tc.v.Equal(tc.v) {
			t.Errorf("%v not equal to itself", tc.v)
		}
	}
	if !Float(math.NaN()).Equal(Float(math.NaN())) {
		t.Error("NaN must equal NaN for round-trip checks")
	}
	if Int(1).Equal(Uint(1)) || Float(1).Equal(Float(2)) {
		t.Error("different kinds or values compared equal")
	}
	for _, q := range []Quality{QualityGood, QualityUncertain, QualityBad} {
		if q.String() == "" {
			t.Errorf("quality %d has no name", q)
		}
	}
}

func TestFloat32ShortestDecimal(t *testing.T) {
	cases := []struct {
		f    float32
		text string
	}{
		{3.14159, "3.14159"},
		{-273.15, "-273.15"},
		{0.1, "0.1"},
		{123.456, "123.456"},
		{16777217, "1.6777216e+07"},
		{math.MaxFloat32, "3.4028235e+38"},
		{math.SmallestNonzeroFloat32, "1e-45"},
		{float32(math.Inf(-1)), "-Inf"},
		{0, "0"},
	}
	for _, c := range cases {
		v := Float32(c.f)
		if got := strconv.FormatFloat(v.F, 'g', -1, 64); got != c.text {
			t.Errorf("Float32(%v).F = %s, want %s", c.f, got, c.text)
		}
		if float32(v.F) != c.f || v.Kind != KindFloat {
			t.Errorf("Float32(%v) = %+v does not read back as the float32", c.f, v)
		}
	}
	if v := Float32(float32(math.NaN())); !math.IsNaN(v.F) {
		t.Errorf("Float32(NaN) = %v", v.F)
	}
	if v := Float32(float32(math.Copysign(0, -1))); !math.Signbit(v.F) {
		t.Error("Float32(-0) lost the sign")
	}
	if n := testing.AllocsPerRun(100, func() { _ = Float32(3.14159) }); n != 0 {
		t.Errorf("Float32 allocates %v times", n)
	}
}

// checkFloat32 checks the contract of Float32 for the float32 of bits u.
func checkFloat32(t *testing.T, u uint32) {
	f := math.Float32frombits(u)
	if f != f || math.IsInf(float64(f), 0) {
		return
	}
	v := Float32(f)
	if math.Float32bits(float32(v.F)) != u {
		t.Fatalf("bits %08x: Float32(%v).F = %v reads back as %v", u, f, v.F, float32(v.F))
	}
	if got, want := strconv.FormatFloat(v.F, 'g', -1, 64), strconv.FormatFloat(float64(f), 'g', -1, 32); got != want {
		t.Fatalf("bits %08x: shortest float64 text %s, shortest float32 text %s", u, got, want)
	}
}

func TestFloat32Exhaustive(t *testing.T) {
	// Every 4099th bit pattern (a prime stride covers all exponents and
	// mantissa shapes), plus the edges of each binade.
	for u := uint64(0); u <= math.MaxUint32; u += 4099 {
		checkFloat32(t, uint32(u))
	}
	for e := uint32(0); e < 255; e++ {
		for _, m := range []uint32{0, 1, 2, 0x7fffff, 0x7ffffe, 0x400000} {
			checkFloat32(t, e<<23|m)
			checkFloat32(t, 1<<31|e<<23|m)
		}
	}
}

func FuzzFloat32(f *testing.F) {
	f.Add(math.Float32bits(3.14159))
	f.Add(uint32(1))
	f.Fuzz(checkFloat32)
}

func TestSampleHasValue(t *testing.T) {
	for q, want := range map[Quality]bool{QualityGood: true, QualityUncertain: true, QualityBad: false} {
		s := Sample{Quality: q, Value: NoValue(KindInt)}
		if s.HasValue() != want {
			t.Errorf("quality %s: HasValue %v, want %v", q, !want, want)
		}
	}
}
