package modbus

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/drivers"
)

func init() {
	config.RegisterDriver(config.DriverPlugin{
		Name:    "modbus",
		Summary: "Modbus TCP, RTU on a serial line, or RTU over TCP (a serial gateway in transparent mode)",
		New:     func() config.Settings { return NewConfig() },
	})
}

// Defaults of a plcs entry with driver: modbus.
const (
	DefaultPollInterval   = time.Second
	DefaultTimeout        = time.Second
	DefaultConnectTimeout = 3 * time.Second
	// DefaultMaxGap is the largest run of unused registers one request
	// reads to join two tags.
	DefaultMaxGap = 8
)

// Config is a plcs entry with driver: modbus, less the name, driver and
// enabled keys agent/config keeps. It is the one home of Modbus's
// configuration rules: the agent, validate and the modbus commands all
// check tags through it.
type Config struct {
	// Endpoint is host:port for Modbus TCP or RTU over TCP, a serial
	// device path for RTU.
	Endpoint       string          `yaml:"endpoint" json:"endpoint" required:"true" doc:"host:port (TCP, RTU over TCP) or a serial device path such as /dev/ttyUSB0 (RTU)"`
	UnitID         int             `yaml:"unit_id" json:"unit_id" range:"0,255" doc:"unit (slave) id; 1-247 on serial lines"`
	PollInterval   config.Duration `yaml:"poll_interval" json:"poll_interval" min:"1ms" doc:"time between polls. Devices do not all poll at the same instant: each keeps a phase of its own within the interval (within each second of longer ones), in 100ms slots chosen from its name, the same at every start and counted from whole periods of the clock, so that a slot's devices poll together"`
	Timeout        config.Duration `yaml:"timeout" json:"timeout" min:"1ns" doc:"per-request timeout"`
	Transport      string          `yaml:"transport" json:"transport" enum:",tcp,rtu,rtuovertcp" doc:"tcp, rtu (serial) or rtuovertcp (serial gateway in transparent mode)"`
	ConnectTimeout config.Duration `yaml:"connect_timeout" json:"connect_timeout" min:"1ns" doc:"bound on a TCP connect or a serial open"`
	BaudRate       int             `yaml:"baud_rate" json:"baud_rate" range:"300,4000000" doc:"RTU: serial speed in baud"`
	Parity         string          `yaml:"parity" json:"parity" enum:"N,E,O" doc:"RTU: N, E or O"`
	DataBits       int             `yaml:"data_bits" json:"data_bits" range:"7,8" doc:"RTU: 7 or 8"`
	StopBits       int             `yaml:"stop_bits" json:"stop_bits" range:"1,2" doc:"RTU: 1 or 2"`
	MaxGap         int             `yaml:"max_gap" json:"max_gap" range:"0,2000" doc:"largest run of unused registers (or bits) one request reads to join two tags"`
	MaxRegisters   int             `yaml:"max_registers" json:"max_registers" range:"1,125" doc:"registers per request at most, for devices that accept fewer than 125"`
	OnError        string          `yaml:"on_error" json:"on_error" enum:"bad_quality,drop" doc:"on a failed read: bad_quality (a sample of bad quality, without a value, per tag) or drop (no sample)"`
	Tags           []TagConfig     `yaml:"tags" json:"tags" doc:"values read from this device; at least one"`
}

// TagConfig is one tag of a Modbus device as the file gives it.
type TagConfig struct {
	Name      string  `yaml:"name" json:"name" required:"true" doc:"tag name, unique within its device"`
	Address   string  `yaml:"address" json:"address" required:"true" doc:"0-based address (0-65535) with register, or 5/6-digit notation (40001, 300001, ...) without"`
	Type      string  `yaml:"type" json:"type" required:"true" pattern:"^(bool|int16|uint16|int32|uint32|int64|uint64|float32|float64|string\\((?:[1-9][0-9]?|1[0-9]{2}|2[0-4][0-9]|250)\\))$" doc:"bool, int16, uint16, int32, uint32, int64, uint64, float32, float64 or string(n) with n bytes (1-250)"`
	Register  string  `yaml:"register" json:"register" enum:",coil,discrete,holding,input" doc:"coil, discrete, holding or input; empty: from the address notation, else holding"`
	ByteOrder string  `yaml:"byte_order" json:"byte_order" enum:",ABCD,CDAB,BADC,DCBA" doc:"word and byte order of register values: ABCD (big-endian), CDAB, BADC or DCBA; empty is ABCD. On a 16-bit value or a bit of a register only the byte swap (BADC, DCBA) matters; coils and discrete inputs have none"`
	Bit       *int    `yaml:"bit" json:"bit" doc:"read bit 0-15 (0 the least significant) of a holding or input register; the type must be bool"`
	Scale     float64 `yaml:"scale" json:"scale" doc:"multiplier applied to the raw value"`
	Offset    float64 `yaml:"offset" json:"offset" doc:"added after scaling"`
}

// NewConfig returns a Config with the defaults.
func NewConfig() *Config {
	return &Config{
		UnitID:         1,
		PollInterval:   config.Duration(DefaultPollInterval),
		Timeout:        config.Duration(DefaultTimeout),
		ConnectTimeout: config.Duration(DefaultConnectTimeout),
		BaudRate:       19200,
		Parity:         "E",
		DataBits:       8,
		StopBits:       1,
		MaxGap:         DefaultMaxGap,
		MaxRegisters:   125,
		OnError:        "bad_quality",
	}
}

// SetDefaults gives a new tag its defaults (scale 1).
func (t *TagConfig) SetDefaults() { t.Scale = 1 }

// DerivedDefaults implements config.DerivedDocs.
func (c *Config) DerivedDefaults() map[string]string {
	return map[string]string{
		"transport":  "rtu for a device path, tcp for host:port",
		"tags[].bit": "none: a bool is the whole register, true when not 0",
	}
}

// Parse turns the tag's settings into a Tag, with every rule the driver
// applies: the address within its table, the type allowed there, bit and
// byte order only where they mean something, and the value within the
// 65,536 addresses and within one request of maxRegisters.
func (t *TagConfig) Parse(maxRegisters int) (Tag, error) {
	typ, err := ParseType(t.Type)
	if err != nil {
		if s := config.Suggest(t.Type, baseTypeNames()); s != "" && !strings.HasPrefix(t.Type, "string") {
			err = fmt.Errorf("unknown type %q; did you mean %q?", config.Cut(t.Type), s)
		}
		return Tag{}, &fieldError{"type", err}
	}
	reg, addr, err := ParseAddress(t.Address, t.Register)
	if err != nil {
		return Tag{}, &fieldError{"address", err}
	}
	order := ABCD
	if t.ByteOrder != "" {
		if order, err = ParseByteOrder(t.ByteOrder); err != nil {
			return Tag{}, &fieldError{"byte_order", err}
		}
		// On a 16-bit value (or a bit of a register) the byte swap of
		// BADC and DCBA matters: only the bit tables have no bytes.
		if reg.IsBit() {
			return Tag{}, &fieldError{"byte_order", fmt.Errorf("%s registers hold single bits, which have no byte order: leave it out", reg)}
		}
	}
	if t.Scale == 0 {
		return Tag{}, &fieldError{"scale", fmt.Errorf("0 makes every value 0; leave it out for 1")}
	}
	bit := -1
	if t.Bit != nil {
		if bit = *t.Bit; bit < 0 || bit > 15 {
			return Tag{}, &fieldError{"bit", fmt.Errorf("%d is out of range: want 0 to 15", bit)}
		}
	}
	tag := Tag{Name: t.Name, Register: reg, Address: addr, Type: typ, Order: order, Bit: bit, Scale: t.Scale, Offset: t.Offset}
	if err := tag.check(maxRegisters); err != nil {
		return Tag{}, err
	}
	return tag, nil
}

// fieldError is a problem with one key of a tag.
type fieldError struct {
	key string
	err error
}

func (e *fieldError) Error() string { return e.key + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

// Check implements config.Settings.
func (c *Config) Check(ck *config.Checker) {
	transport, err := ParseTransport(c.Transport, c.Endpoint)
	if err == nil && c.Endpoint != "" {
		err = checkEndpoint(transport, c.Endpoint)
	}
	if err != nil {
		ck.Add("endpoint", "%v", err)
	} else if transport == RTU && (c.UnitID < 1 || c.UnitID > 247) {
		ck.Add("unit_id", "%d: on a serial line unit ids are 1 to 247 (0 is broadcast, never answered)", c.UnitID)
	}
	if len(c.Tags) == 0 {
		ck.Add("tags", "no tags: give at least one")
	}
	first := map[string]int{}
	for j := range c.Tags {
		t := &c.Tags[j]
		path := fmt.Sprintf("tags[%d]", j)
		switch prev, dup := first[t.Name]; {
		case t.Name == "":
			// required, reported by agent/config
		case !config.NameOK(t.Name):
			ck.Add(path+".name", "%q: use letters, digits, '.', '_' and '-' only", config.Cut(t.Name))
		case dup:
			ck.Add(path+".name", "duplicate tag name %q in this device (also %s, line %d)", t.Name, ck.Path(fmt.Sprintf("tags[%d]", prev)), ck.Line(fmt.Sprintf("tags[%d].name", prev)))
		default:
			first[t.Name] = j
		}
		if t.Address == "" || t.Type == "" {
			continue // required, reported by agent/config
		}
		if _, err := t.Parse(c.MaxRegisters); err != nil {
			key := "address"
			if fe, ok := err.(*fieldError); ok {
				key, err = fe.key, fe.err
			}
			ck.Add(path+"."+key, "%v", err)
		}
	}
}

// checkEndpoint checks the endpoint's form for the transport.
func checkEndpoint(t Transport, endpoint string) error {
	path := strings.HasPrefix(endpoint, "/")
	switch {
	case t == RTU && !path:
		return fmt.Errorf("%q: transport rtu needs a serial device path such as /dev/ttyUSB0", config.Cut(endpoint))
	case t != RTU && path:
		return fmt.Errorf("%q: transport %s needs host:port, not a device path", config.Cut(endpoint), t)
	case t == RTU:
		return nil
	}
	if err := config.CheckHostPort(endpoint); err != nil {
		if len(endpoint) >= 4 && strings.EqualFold(endpoint[:3], "COM") {
			return fmt.Errorf("%q: serial ports are device paths on this system, such as /dev/ttyS0 or /dev/ttyUSB0", config.Cut(endpoint))
		}
		return fmt.Errorf("%q: want host:port (TCP) or a serial device path (RTU): %v", config.Cut(endpoint), err)
	}
	return nil
}

// Build implements drivers.Builder: it plans the requests of a driver
// that reads through the agent's shared connection pool.
func (c *Config) Build(env drivers.Env) (drivers.Driver, error) {
	opts, err := c.Options(env.Device)
	if err != nil {
		return nil, err
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts.Pool = env.Shared.Get("modbus.pool", func() (any, func()) {
		return NewPool(PoolOptions{Logger: log.With("component", "modbus")}), nil
	}).(*Pool)
	opts.OnError = env.OnError
	opts.OnReadError = env.OnReadError
	opts.Logger = log
	return New(opts)
}

// Options returns the driver options of the device named name, without a
// pool: the tags parsed and checked as Check does.
func (c *Config) Options(name string) (Options, error) {
	transport, err := ParseTransport(c.Transport, c.Endpoint)
	if err != nil {
		return Options{}, err
	}
	tags := make([]Tag, 0, len(c.Tags))
	for j := range c.Tags {
		t, err := c.Tags[j].Parse(c.MaxRegisters)
		if err != nil {
			return Options{}, fmt.Errorf("tags[%d] (%s): %w", j, c.Tags[j].Name, err)
		}
		tags = append(tags, t)
	}
	return Options{
		Name: name,
		Endpoint: Endpoint{
			Transport:      transport,
			Address:        c.Endpoint,
			Serial:         Serial{BaudRate: c.BaudRate, DataBits: c.DataBits, Parity: c.Parity, StopBits: c.StopBits},
			ConnectTimeout: c.ConnectTimeout.Std(),
		},
		Unit:         uint8(c.UnitID),
		Interval:     c.PollInterval.Std(),
		Timeout:      c.Timeout.Std(),
		MaxGap:       c.MaxGap,
		MaxRegisters: c.MaxRegisters,
		Tags:         tags,
		DropOnError:  c.OnError == "drop",
	}, nil
}

// baseTypeNames lists the type names without a length.
func baseTypeNames() []string {
	return []string{"bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"}
}
