package modbus

import (
	"bytes"
	"fmt"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/iot-producer/iot-producer/drivers"
	mb "github.com/iot-producer/iot-producer/drivers/modbus"
)

// MapFile is the YAML register map of `iot-producer modbus simulate -map`:
//
//	interval: 1s          # signal update period
//	seed: 1
//	variation: 0.1
//	units:
//	  - id: 1
//	    points:
//	      - {name: speed, address: "40001", type: float32, byte_order: CDAB, signal: speed}
//	      - {name: recipe, address: "40100", type: string(16), value: "IPA-42"}
//	      - {name: running, address: "3", register: coil, value: true}
//
// Addresses, registers, types and byte orders are written as in the
// agent's configuration (see drivers/modbus).
type MapFile struct {
	Interval  string    `yaml:"interval"`
	Seed      int64     `yaml:"seed"`
	Variation float64   `yaml:"variation"`
	Units     []MapUnit `yaml:"units"`
}

// MapUnit is one unit of a MapFile.
type MapUnit struct {
	ID     int        `yaml:"id"`
	Points []MapPoint `yaml:"points"`
}

// MapPoint is one point of a MapUnit. Value is a number, a bool or a
// string.
type MapPoint struct {
	Name      string    `yaml:"name"`
	Address   string    `yaml:"address"`
	Register  string    `yaml:"register"`
	Type      string    `yaml:"type"`
	ByteOrder string    `yaml:"byte_order"`
	Signal    string    `yaml:"signal"`
	Value     yaml.Node `yaml:"value"`
	Scale     float64   `yaml:"scale"`
	Offset    float64   `yaml:"offset"`
}

// ParseMap reads a MapFile into SimOptions.
func ParseMap(data []byte) (SimOptions, error) {
	var f MapFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return SimOptions{}, fmt.Errorf("register map: %w", err)
	}
	opts := SimOptions{Seed: f.Seed, Variation: f.Variation}
	if f.Interval != "" {
		d, err := time.ParseDuration(f.Interval)
		if err != nil {
			return SimOptions{}, fmt.Errorf("register map: interval: %w", err)
		}
		opts.Interval = d
	}
	for i, u := range f.Units {
		if u.ID < 0 || u.ID > 255 {
			return SimOptions{}, fmt.Errorf("register map: units[%d]: id %d out of range 0-255", i, u.ID)
		}
		unit := Unit{ID: uint8(u.ID)}
		for j, p := range u.Points {
			path := fmt.Sprintf("register map: units[%d].points[%d] (%s)", i, j, p.Name)
			reg, addr, err := mb.ParseAddress(p.Address, p.Register)
			if err != nil {
				return SimOptions{}, fmt.Errorf("%s: %w", path, err)
			}
			typ := mb.Type{Base: mb.Bool}
			if p.Type != "" || !reg.IsBit() {
				if typ, err = mb.ParseType(p.Type); err != nil {
					return SimOptions{}, fmt.Errorf("%s: %w", path, err)
				}
			}
			order, err := mb.ParseByteOrder(p.ByteOrder)
			if err != nil {
				return SimOptions{}, fmt.Errorf("%s: %w", path, err)
			}
			v, err := nodeValue(&p.Value, typ)
			if err != nil {
				return SimOptions{}, fmt.Errorf("%s: value: %w", path, err)
			}
			unit.Points = append(unit.Points, Point{
				Name: p.Name, Register: reg, Address: addr, Type: typ, Order: order,
				Signal: p.Signal, Value: v, Scale: p.Scale, Offset: p.Offset,
			})
		}
		opts.Units = append(opts.Units, unit)
	}
	return opts, nil
}

// nodeValue reads a YAML scalar as a value of type t.
func nodeValue(n *yaml.Node, t mb.Type) (drivers.Value, error) {
	if n.Kind == 0 {
		if t.Base == mb.String {
			return drivers.String(""), nil
		}
		return drivers.Float(0), nil
	}
	switch t.Base {
	case mb.String:
		return drivers.String(n.Value), nil
	case mb.Bool:
		var b bool
		if err := n.Decode(&b); err == nil {
			return drivers.Bool(b), nil
		}
	case mb.Int16, mb.Int32, mb.Int64:
		if i, err := strconv.ParseInt(n.Value, 0, 64); err == nil {
			return drivers.Int(i), nil
		}
	case mb.Uint16, mb.Uint32, mb.Uint64:
		if u, err := strconv.ParseUint(n.Value, 0, 64); err == nil {
			return drivers.Uint(u), nil
		}
	}
	var f float64
	if err := n.Decode(&f); err != nil {
		return drivers.Value{}, fmt.Errorf("%q is not a %s", n.Value, t)
	}
	return drivers.Float(f), nil
}
