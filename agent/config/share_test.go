package config_test

import (
	"testing"

	"github.com/iot-producer/iot-producer/drivers/modbus"
)

// TestEqualTagListsAreShared: PLCs given one anchor of tags (or equal
// lists written out) hold one list; a list that differs in anything keeps
// its own, and each PLC still reads its own values.
func TestEqualTagListsAreShared(t *testing.T) {
	c := mustParse(t, `
producer: {brokers: ["k:9092"]}
plcs:
  - name: a
    driver: modbus
    endpoint: "10.0.0.1:502"
    tags: &tags
      - {name: speed, address: "40001", type: uint16}
      - {name: on, address: "40002", type: bool, bit: 3}
  - name: b
    driver: modbus
    endpoint: "10.0.0.2:502"
    tags: *tags
  - name: c
    driver: modbus
    endpoint: "10.0.0.3:502"
    tags:
      - {name: speed, address: "40001", type: uint16}
      - {name: on, address: "40002", type: bool, bit: 3}
  - name: d
    driver: modbus
    endpoint: "10.0.0.4:502"
    tags:
      - {name: speed, address: "40001", type: uint16}
      - {name: on, address: "40002", type: bool, bit: 4}
`)
	tags := func(i int) []modbus.TagConfig { return c.PLCs[i].Settings.(*modbus.Config).Tags }
	tests := []struct {
		plc   int
		share bool
	}{{1, true}, {2, true}, {3, false}}
	for _, tt := range tests {
		t.Run(c.PLCs[tt.plc].Name, func(t *testing.T) {
			if got := &tags(tt.plc)[0] == &tags(0)[0]; got != tt.share {
				t.Fatalf("shares plcs[0]'s tags: %v, want %v", got, tt.share)
			}
			if ep := c.PLCs[tt.plc].Settings.(*modbus.Config).Endpoint; ep != "10.0.0."+string(rune('1'+tt.plc))+":502" {
				t.Fatalf("endpoint %s", ep)
			}
		})
	}
	if b := *tags(3)[1].Bit; b != 4 {
		t.Fatalf("plcs[3].tags[1].bit = %d, want 4", b)
	}
}
