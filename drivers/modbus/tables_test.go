package modbus

import (
	"testing"
	"time"
)

// TestDriversShareTagTables: Drivers of identical tags on one Pool share
// one table of tags and requests; a difference in any tag, or in the
// planning, gives a table of its own.
func TestDriversShareTagTables(t *testing.T) {
	pool := NewPool(PoolOptions{})
	u16 := Type{Base: Uint16}
	tags := func() []Tag {
		return []Tag{{Name: "a", Address: 0, Type: u16, Bit: -1}, {Name: "b", Address: 1, Type: u16, Bit: -1}}
	}
	build := func(name string, tags []Tag, gap int) *Driver {
		t.Helper()
		d, err := New(Options{Name: name, Endpoint: Endpoint{Address: "127.0.0.1:1"}, Interval: time.Second, Tags: tags, MaxGap: gap, Pool: pool})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	first := build("d1", tags(), 0)
	scaled := tags()
	scaled[1].Scale = 2
	tests := []struct {
		name  string
		d     *Driver
		share bool
	}{
		{"same tags", build("d2", tags(), 0), true},
		{"another scale", build("d3", scaled, 0), false},
		{"another gap", build("d4", tags(), -1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.d.table == first.table; got != tt.share {
				t.Fatalf("shares the first driver's table: %v, want %v", got, tt.share)
			}
			if len(tt.d.opts.Tags) != 2 || &tt.d.opts.Tags[0] != &tt.d.table.tags[0] {
				t.Fatal("the driver's tags are not its table's")
			}
		})
	}
}
