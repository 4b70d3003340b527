package mqtt

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/iot-producer/iot-producer/record"
	"github.com/iot-producer/iot-producer/uplink"
	"github.com/iot-producer/iot-producer/uplink/mqtt/sparkplug"
)

// SparkplugOptions configures Sparkplug B payloads. The gateway is one
// edge node; each device is a Sparkplug device and each tag a metric.
type SparkplugOptions struct {
	// GroupID is the Sparkplug group (required).
	GroupID string
	// EdgeNodeID names the gateway; default the gateway id.
	EdgeNodeID string
	// StrictQoS0 publishes DDATA and births at QoS 0 as the specification
	// says. By default they go at the sink's QoS (1), so that a sample
	// leaves the buffer only once the broker has it.
	StrictQoS0 bool
}

// Quality values of the "Quality" property, as OPC and Ignition number
// them; it is sent only for samples that are not good.
const (
	qualityBad       = 0
	qualityUncertain = 64
)

// sparkplugCodec is the edge node's Sparkplug session: sequence numbers,
// bdSeq, aliases and births. Every method runs under the sink's publish
// lock, so one session numbers the messages of both lanes in the order
// they are published.
type sparkplugCodec struct {
	group, node string
	qos         byte
	log         *slog.Logger

	bdSeq     uint64 // of the connection being made or up
	connects  uint64 // connection attempts so far
	seq       uint64 // next message's seq, 0-255
	nextAlias uint64
	devices   map[string]*spDevice
	order     []string // devices in the order they first appeared
	now       func() time.Time
}

// spDevice is what the session knows of one device: its metrics (with the
// last value, for births) and whether it was born in this session.
type spDevice struct {
	born    bool
	metrics map[string]*spMetric
	order   []string
}

type spMetric struct {
	alias uint64
	last  sparkplug.Metric
}

func newSparkplugCodec(o SparkplugOptions, gateway string, qos byte, log *slog.Logger) (*sparkplugCodec, error) {
	if o.GroupID == "" {
		return nil, errors.New("sparkplug: group_id is required")
	}
	if o.EdgeNodeID == "" {
		o.EdgeNodeID = gateway
	}
	for what, id := range map[string]string{"group_id": o.GroupID, "edge_node_id": o.EdgeNodeID} {
		if id == "" || strings.ContainsAny(id, "/+#") {
			return nil, fmt.Errorf("sparkplug: %s %q: want a non-empty id without /, + or #", what, id)
		}
	}
	if o.StrictQoS0 {
		qos = 0
	}
	return &sparkplugCodec{
		group: o.GroupID, node: o.EdgeNodeID, qos: qos, log: log,
		nextAlias: 1, devices: map[string]*spDevice{}, now: time.Now,
	}, nil
}

func (c *sparkplugCodec) cleanSession() bool { return true }

// will returns the NDEATH for the next connection attempt, with a new
// bdSeq: every CONNECT carries the next one, 0-255.
func (c *sparkplugCodec) will() *publish {
	c.bdSeq = c.connects % 256
	c.connects++
	p := sparkplug.Payload{Timestamp: c.ms(c.now()), Metrics: []sparkplug.Metric{
		{Name: sparkplug.MetricBdSeq, Type: sparkplug.Int64, Value: sparkplug.Value{Long: c.bdSeq}},
	}}
	return &publish{topic: sparkplug.Topic(c.group, sparkplug.NDeath, c.node, ""), payload: p.Append(nil), qos: 1}
}

// sessionStart returns the NBIRTH (seq 0, the connection's bdSeq) and a
// DBIRTH for every device seen so far: after a connect and after a
// rebirth request.
func (c *sparkplugCodec) sessionStart() []publish {
	c.seq = 0
	now := c.ms(c.now())
	nb := sparkplug.Payload{Timestamp: now, Metrics: []sparkplug.Metric{
		{Name: sparkplug.MetricBdSeq, Timestamp: now, Type: sparkplug.Int64, Value: sparkplug.Value{Long: c.bdSeq}},
		{Name: sparkplug.MetricRebirth, Timestamp: now, Type: sparkplug.Boolean, Value: sparkplug.Value{Bool: false}},
	}}
	out := []publish{c.message(sparkplug.NBirth, "", &nb)}
	for _, name := range c.order {
		d := c.devices[name]
		d.born = false
		if len(d.metrics) > 0 {
			out = append(out, c.birth(name, d))
		}
	}
	return out
}

// sessionEnd returns a DDEATH for every device born in this session and
// the NDEATH (the will's payload: bdSeq, no seq), for a graceful
// disconnect.
func (c *sparkplugCodec) sessionEnd() []publish {
	var out []publish
	now := c.ms(c.now())
	for _, name := range c.order {
		if d := c.devices[name]; d.born {
			p := sparkplug.Payload{Timestamp: now}
			out = append(out, c.message(sparkplug.DDeath, name, &p))
			d.born = false
		}
	}
	nd := sparkplug.Payload{Timestamp: now, Metrics: []sparkplug.Metric{
		{Name: sparkplug.MetricBdSeq, Type: sparkplug.Int64, Value: sparkplug.Value{Long: c.bdSeq}},
	}}
	return append(out, publish{topic: sparkplug.Topic(c.group, sparkplug.NDeath, c.node, ""), payload: nd.Append(nil), qos: 1})
}

// commands subscribes to the node's NCMD topic and asks for a rebirth
// when a host sends Node Control/Rebirth = true.
func (c *sparkplugCodec) commands() (string, func(topic string, payload []byte) bool) {
	return sparkplug.Topic(c.group, sparkplug.NCmd, c.node, ""), func(topic string, payload []byte) bool {
		p, err := sparkplug.Decode(payload)
		if err != nil {
			c.log.Warn("sparkplug: undecodable NCMD ignored", "topic", topic, "err", err)
			return false
		}
		for _, m := range p.Metrics {
			if m.Name == sparkplug.MetricRebirth && m.Type == sparkplug.Boolean && m.Value.Bool {
				c.log.Info("sparkplug: rebirth requested", "topic", topic)
				return true
			}
		}
		return false
	}
}

// encode returns m's DDATA, preceded by the device's DBIRTH when the
// device was not yet born in this session or the metric is new to it (or
// changed type). Backlog records are marked historical.
func (c *sparkplugCodec) encode(lane uplink.Lane, m *uplink.Message, out []publish) ([]publish, error) {
	f, err := record.Decode(m.Value)
	if err != nil {
		return out, err
	}
	metric, err := metricOf(&f)
	if err != nil {
		return out, err
	}
	if strings.ContainsAny(f.Device, "/+#") || f.Device == "" {
		return out, fmt.Errorf("device %q cannot be a Sparkplug device id", f.Device)
	}
	d := c.devices[f.Device]
	if d == nil {
		d = &spDevice{metrics: map[string]*spMetric{}}
		c.devices[f.Device] = d
		c.order = append(c.order, f.Device)
	}
	known := d.metrics[f.Tag]
	if known == nil {
		known = &spMetric{alias: c.nextAlias}
		c.nextAlias++
		d.metrics[f.Tag] = known
		d.order = append(d.order, f.Tag)
		d.born = false
	} else if known.last.Type != metric.Type {
		d.born = false
	}
	known.last = metric
	known.last.Name = f.Tag
	if !d.born {
		out = append(out, c.birth(f.Device, d))
	}
	metric.Alias, metric.HasAlias = known.alias, true
	metric.IsHistorical = lane == uplink.Backlog
	p := sparkplug.Payload{Timestamp: c.ms(c.now()), Metrics: []sparkplug.Metric{metric}}
	return append(out, c.message(sparkplug.DData, f.Device, &p)), nil
}

// birth returns a DBIRTH of every metric the device has, with names,
// aliases, types and last values, and marks the device born.
func (c *sparkplugCodec) birth(device string, d *spDevice) publish {
	p := sparkplug.Payload{Timestamp: c.ms(c.now()), Metrics: make([]sparkplug.Metric, 0, len(d.order))}
	for _, tag := range d.order {
		km := d.metrics[tag]
		m := km.last
		m.Name, m.Alias, m.HasAlias, m.IsHistorical = tag, km.alias, true, false
		p.Metrics = append(p.Metrics, m)
	}
	d.born = true
	return c.message(sparkplug.DBirth, device, &p)
}

// message numbers p with the session's next seq and returns its publish.
func (c *sparkplugCodec) message(typ, device string, p *sparkplug.Payload) publish {
	p.Seq, p.HasSeq = c.seq, true
	c.seq = (c.seq + 1) % 256
	return publish{topic: sparkplug.Topic(c.group, typ, c.node, device), payload: p.Append(nil), qos: c.qos}
}

func (c *sparkplugCodec) ms(t time.Time) uint64 { return uint64(max(t.UnixMilli(), 0)) }

// metricOf maps a record to a metric without name or alias: float to
// Double, int to Int64, uint to UInt64, bool to Boolean, string to String.
// The metric's time stamp is the read time; its properties carry the
// series' sequence number ("seq", UInt64), the stream epoch ("epoch",
// String, when the record has one) and, when the sample is not good, its
// quality ("Quality", Int32: 64 uncertain, 0 bad) and, when the record
// has one, the source's status name ("status", String, e.g.
// BadSensorFailure). A bad sample, which has no value, is a null metric.
func metricOf(f *record.Fields) (sparkplug.Metric, error) {
	m := sparkplug.Metric{Timestamp: uint64(max(f.ReadTime.UnixMilli(), 0))}
	switch f.Type {
	case record.TypeFloat:
		m.Type, m.Value.Double = sparkplug.Double, f.Float
	case record.TypeInt:
		m.Type, m.Value.Long = sparkplug.Int64, uint64(f.Int)
	case record.TypeUint:
		m.Type, m.Value.Long = sparkplug.UInt64, f.Uint
	case record.TypeBool:
		m.Type, m.Value.Bool = sparkplug.Boolean, f.Bool
	case record.TypeString:
		m.Type, m.Value.Str = sparkplug.String, f.String
	default:
		return m, fmt.Errorf("type %q has no Sparkplug data type", f.Type)
	}
	// A bad sample has no value (record schema 2): a null metric.
	m.IsNull = f.NoValue
	m.Properties = append(m.Properties, sparkplug.Property{Key: "seq", Type: sparkplug.UInt64, Value: sparkplug.Value{Long: f.Seq}})
	if f.Epoch != "" {
		m.Properties = append(m.Properties, sparkplug.Property{Key: "epoch", Type: sparkplug.String, Value: sparkplug.Value{Str: f.Epoch}})
	}
	switch f.Quality {
	case "uncertain":
		m.Properties = append(m.Properties, sparkplug.Property{Key: "Quality", Type: sparkplug.Int32, Value: sparkplug.Value{Int: qualityUncertain}})
	case "bad":
		m.Properties = append(m.Properties, sparkplug.Property{Key: "Quality", Type: sparkplug.Int32, Value: sparkplug.Value{Int: qualityBad}})
	}
	if f.Status != "" {
		m.Properties = append(m.Properties, sparkplug.Property{Key: "status", Type: sparkplug.String, Value: sparkplug.Value{Str: f.Status}})
	}
	m.Properties = slices.Clip(m.Properties)
	return m, nil
}
