package config

// This file is the one place that lists fixed value sets and numeric ranges.
// Validation and the JSON Schema (and so the README) both read them, keyed by
// "<struct type>.<Go field>".

// required lists the fields that must be given (in every element of their
// list); the schema marks them required and the reference says so.
var required = map[string]bool{
	"PLC.Name":     true,
	"PLC.Driver":   true,
	"PLC.Endpoint": true,
	"Tag.Name":     true,
	"Tag.Address":  true,
	"Tag.Type":     true,
}

// enumSet is the set of values a string field accepts.
type enumSet struct {
	values []string
	// emptyOK is true when an empty value has a meaning (none, or "let the
	// driver decide") rather than being a mistake.
	emptyOK bool
}

// Value sets shared by validation and the schema.
var (
	drivers        = []string{"modbus", "opcua"}
	tagBaseTypes   = []string{"bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"}
	registers      = []string{"coil", "discrete", "holding", "input"}
	byteOrders     = []string{"ABCD", "CDAB", "BADC", "DCBA"}
	transports     = []string{"tcp", "rtu", "rtuovertcp"}
	parities       = []string{"N", "E", "O"}
	onErrors       = []string{"bad_quality", "drop"}
	compressions   = []string{"none", "gzip", "snappy", "lz4", "zstd"}
	acksValues     = []string{"all", "leader", "none"}
	saslMechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
	dropPolicies   = []string{"drop_oldest", "drop_newest"}
	corruptActions = []string{"quarantine", "fail"}
	logLevels      = []string{"debug", "info", "warn", "error"}
	logFormats     = []string{"text", "json"}
	// mqttSchemes are the broker URL schemes paho accepts; tlsSchemes
	// among them imply TLS.
	mqttSchemes = []string{"tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss"}
	tlsSchemes  = []string{"ssl", "tls", "mqtts", "wss"}
)

// enums maps a field to its value set. Tag.Type is not here: it also takes
// string(n), see tagTypePattern.
var enums = map[string]enumSet{
	"PLC.Driver":           {values: drivers},
	"Tag.Register":         {values: registers, emptyOK: true},
	"Tag.ByteOrder":        {values: byteOrders, emptyOK: true},
	"PLC.Transport":        {values: transports, emptyOK: true},
	"PLC.Parity":           {values: parities},
	"PLC.OnError":          {values: onErrors},
	"Producer.Compression": {values: compressions},
	"Producer.Acks":        {values: acksValues},
	"SASL.Mechanism":       {values: saslMechanisms, emptyOK: true},
	"Buffer.DropPolicy":    {values: dropPolicies},
	"Buffer.OnCorrupt":     {values: corruptActions},
	"Log.Level":            {values: logLevels},
	"Log.Format":           {values: logFormats},
}

// tagTypeField is the field whose values are tagBaseTypes or string(n).
const tagTypeField = "Tag.Type"

// tagTypePattern is the schema's pattern for string(n); maxStringLen bounds
// n (a Modbus read returns at most 125 registers, 250 bytes).
const (
	tagTypePattern = `^string\((?:[1-9][0-9]?|1[0-9]{2}|2[0-4][0-9]|250)\)$`
	maxStringLen   = 250
)

// numRange is an inclusive range for an integer or float field.
type numRange struct {
	min    float64
	max    float64
	hasMax bool
}

func between(lo, hi float64) numRange { return numRange{min: lo, max: hi, hasMax: true} }
func atLeast(lo float64) numRange     { return numRange{min: lo} }

// ranges maps a numeric field to its accepted range.
var ranges = map[string]numRange{
	"PLC.UnitID":           between(0, 255),
	"PLC.BaudRate":         between(300, 4000000),
	"PLC.DataBits":         between(7, 8),
	"PLC.StopBits":         between(1, 2),
	"PLC.MaxGap":           between(0, 2000),
	"PLC.MaxRegisters":     between(1, 125),
	"Device.Count":         between(0, 100000),
	"Device.TagsPerDevice": between(1, 1000),
	"Device.DataVariation": between(0, 1),
	"Buffer.CommitSize":    atLeast(1),
	"Producer.BatchSize":   between(1, 100000),
	"Producer.WorkerCount": between(1, 64),
	"MQTT.QoS":             between(0, 2),
	"MQTT.BatchSize":       between(1, 100000),
}

// Lower bounds of durations and sizes, checked by validate and stated in
// the reference.
const (
	minSampleInterval = Duration(1_000_000) // 1ms
	minMaxBytes       = ByteSize(1 << 20)   // 1MiB
)

// durationMins maps a Duration field to its smallest accepted value (1, one
// nanosecond, means "positive").
var durationMins = map[string]Duration{
	"PLC.PollInterval":         1,
	"PLC.Timeout":              1,
	"PLC.ConnectTimeout":       1,
	"Device.SampleInterval":    minSampleInterval,
	"Buffer.MaxAge":            1,
	"Producer.DeliveryTimeout": Duration(1_000_000_000), // 1s, franz-go's least record timeout
	"Producer.LiveWindow":      Duration(100_000_000),   // 100ms
}

// byteSizeMins maps a ByteSize field to its smallest accepted value.
var byteSizeMins = map[string]ByteSize{
	"Buffer.MaxBytes": minMaxBytes,
}

// topicPlaceholders are the names a topic template may use in braces.
var topicPlaceholders = []string{"gateway", "device"}

// maxModbusAddress is the largest address in 6-digit notation (465536).
const maxModbusAddress = 465536
