package drivers

import (
	"math"
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
