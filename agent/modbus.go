package agent

import (
	"fmt"
	"log/slog"

	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/drivers/modbus"
	"github.com/iot-producer/iot-producer/telemetry"
)

// modbusDriver translates one configured PLC into a Modbus driver that
// reads through pool (one per agent, so devices behind one host:port or
// serial port share its connection), counting errors in
// iot_driver_errors_total under the driver's name. Errors name the PLC's
// config path and tag.
func modbusDriver(i int, plc config.PLC, pool *modbus.Pool, m *telemetry.Metrics, log *slog.Logger) (*modbus.Driver, error) {
	path := fmt.Sprintf("plcs[%d] (%s)", i, plc.Name)
	transport, err := modbus.ParseTransport(plc.Transport, plc.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	tags := make([]modbus.Tag, 0, len(plc.Tags))
	for j, t := range plc.Tags {
		tp := fmt.Sprintf("%s.tags[%d] (%s)", path, j, t.Name)
		reg, addr, err := modbus.ParseAddress(t.Address, t.Register)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", tp, err)
		}
		typ, err := modbus.ParseType(t.Type)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", tp, err)
		}
		order, err := modbus.ParseByteOrder(t.ByteOrder)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", tp, err)
		}
		bit := -1
		if t.Bit != nil {
			bit = *t.Bit
		}
		tags = append(tags, modbus.Tag{
			Name: t.Name, Register: reg, Address: addr, Type: typ, Order: order,
			Bit: bit, Scale: t.Scale, Offset: t.Offset,
		})
	}
	name := "modbus:" + plc.Name
	errs := m.DriverErrors
	d, err := modbus.New(modbus.Options{
		Name: plc.Name,
		Endpoint: modbus.Endpoint{
			Transport: transport,
			Address:   plc.Endpoint,
			Serial: modbus.Serial{
				BaudRate: plc.BaudRate, DataBits: plc.DataBits, Parity: plc.Parity, StopBits: plc.StopBits,
			},
			ConnectTimeout: plc.ConnectTimeout.Std(),
		},
		Unit:         uint8(plc.UnitID),
		Interval:     plc.PollInterval.Std(),
		Timeout:      plc.Timeout.Std(),
		MaxGap:       plc.MaxGap,
		MaxRegisters: plc.MaxRegisters,
		Tags:         tags,
		DropOnError:  plc.OnError == "drop",
		Pool:         pool,
		OnError:      func(kind string) { errs.WithLabelValues(name, kind).Inc() },
		Logger:       log.With("source", name),
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}
