// Package all compiles in every plug-in of this build: each blank import
// registers a driver or a sink with agent/config, as Telegraf's
// plugins/inputs/all does. A binary that imports it knows every
// protocol; agent and agent/config never import a plug-in themselves.
package all

import (
	// The Modbus driver (driver: modbus).
	_ "github.com/iot-producer/iot-producer/drivers/modbus"
	// The OPC UA driver (driver: opcua).
	_ "github.com/iot-producer/iot-producer/drivers/opcua"
	// The Kafka sink (section producer).
	_ "github.com/iot-producer/iot-producer/uplink/kafka"
	// The MQTT sink (section mqtt).
	_ "github.com/iot-producer/iot-producer/uplink/mqtt"
)
