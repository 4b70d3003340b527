package config_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/iot-producer/iot-producer/agent/config"
)

// BenchmarkParseManyPLCs parses a file of 1,000 Modbus PLCs with 20 tags
// each (the shape BenchmarkModbusAgent runs): what a start or a reload of
// a large gateway costs in time and garbage.
func BenchmarkParseManyPLCs(b *testing.B) {
	var cfg strings.Builder
	cfg.WriteString("gateway: {id: gw, state_dir: /tmp/x}\nproducer: {brokers: [127.0.0.1:9092], topic: t}\nplcs:\n")
	for i := range 1000 {
		fmt.Fprintf(&cfg, "  - name: dev-%04d\n    driver: modbus\n    endpoint: \"127.0.0.1:%d\"\n    poll_interval: 1s\n", i, 20000+i)
		if i == 0 {
			cfg.WriteString("    tags: &tags\n")
			for r := range 20 {
				fmt.Fprintf(&cfg, "      - {name: r%d, address: \"%d\", register: holding, type: uint16}\n", r, r)
			}
		} else {
			cfg.WriteString("    tags: *tags\n")
		}
	}
	data := []byte(cfg.String())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := config.Parse(data, "bench.yaml"); err != nil {
			b.Fatal(err)
		}
	}
}
