// Package configs holds the example configurations. Each is loaded by a
// test; demo.yaml is also embedded in the binary as the default of
// `iot-producer demo`.
package configs

import _ "embed"

// Demo is configs/demo.yaml: the built-in simulator sending to Kafka.
//
//go:embed demo.yaml
var Demo []byte
