package mqtt

import (
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iot-producer/iot-producer/internal/faultproxy"
	"github.com/iot-producer/iot-producer/record"
	"github.com/iot-producer/iot-producer/uplink"
	"github.com/iot-producer/iot-producer/uplink/mqtt/sparkplug"
)

// spHost follows a Sparkplug edge node as a host application would, and
// fails the test on any breach of the rules: seq 0 on NBIRTH and +1 mod
// 256 after it, a DBIRTH before a device's DDATA in each session, DDATA
// aliases born in the device's DBIRTH with the same data type, NDEATH with
// the bdSeq of the session's NBIRTH.
type spHost struct {
	t        *testing.T
	bdSeq    int64  // of the current session; -1 before the first NBIRTH
	nextSeq  uint64 // expected seq of the next message
	births   int
	deaths   int
	ddeaths  int
	born     map[string]map[uint64]spBorn // device → alias → metric
	values   map[string]uint64            // "device/tag" → highest seq seen in DDATA
	samples  int                          // DDATA metrics seen
	histor   int                          // of which historical
	lastData map[string]sparkplug.Metric  // "device/tag" → last DDATA metric
}

type spBorn struct {
	name string
	typ  sparkplug.DataType
}

func newSpHost(t *testing.T) *spHost {
	return &spHost{t: t, bdSeq: -1, born: map[string]map[uint64]spBorn{}, values: map[string]uint64{}, lastData: map[string]sparkplug.Metric{}}
}

func (h *spHost) follow(msgs []paho.Message) {
	h.t.Helper()
	for _, m := range msgs {
		h.one(m.Topic(), m.Payload())
	}
}

func (h *spHost) one(topic string, payload []byte) {
	t := h.t
	t.Helper()
	parts := strings.Split(topic, "/")
	if len(parts) < 4 || parts[0] != sparkplug.Namespace || parts[1] != "plant" || parts[3] != "gw" {
		t.Fatalf("topic %q", topic)
	}
	p, err := sparkplug.Decode(payload)
	if err != nil {
		t.Fatalf("%s: %v", topic, err)
	}
	typ := parts[2]
	if typ == sparkplug.NCmd {
		return
	}
	if typ == sparkplug.NDeath {
		if p.HasSeq {
			t.Errorf("NDEATH with a seq")
		}
		if bd := metricNamed(t, p, sparkplug.MetricBdSeq); int64(bd.Value.Long) != h.bdSeq {
			t.Errorf("NDEATH bdSeq %d, session's %d", bd.Value.Long, h.bdSeq)
		}
		h.deaths++
		h.bdSeq = -1
		return
	}
	if !p.HasSeq {
		t.Fatalf("%s without seq", topic)
	}
	if typ == sparkplug.NBirth {
		if p.Seq != 0 {
			t.Fatalf("NBIRTH seq %d", p.Seq)
		}
		h.bdSeq = int64(metricNamed(t, p, sparkplug.MetricBdSeq).Value.Long)
		if m := metricNamed(t, p, sparkplug.MetricRebirth); m.Type != sparkplug.Boolean {
			t.Errorf("rebirth metric type %d", m.Type)
		}
		h.births++
		h.born = map[string]map[uint64]spBorn{}
		h.nextSeq = 1
		return
	}
	if h.bdSeq < 0 {
		t.Fatalf("%s before NBIRTH", topic)
	}
	if p.Seq != h.nextSeq {
		t.Fatalf("%s: seq %d, want %d", topic, p.Seq, h.nextSeq)
	}
	h.nextSeq = (h.nextSeq + 1) % 256
	dev := parts[4]
	switch typ {
	case sparkplug.DDeath:
		if _, ok := h.born[dev]; !ok {
			t.Fatalf("DDEATH of %s, not born", dev)
		}
		delete(h.born, dev)
		h.ddeaths++
	case sparkplug.DBirth:
		b := map[uint64]spBorn{}
		for _, m := range p.Metrics {
			if m.Name == "" || !m.HasAlias || m.Type == 0 {
				t.Fatalf("DBIRTH %s metric without name, alias or type: %+v", dev, m)
			}
			b[m.Alias] = spBorn{m.Name, m.Type}
		}
		h.born[dev] = b
	case sparkplug.DData:
		b, ok := h.born[dev]
		if !ok {
			t.Fatalf("DDATA for %s before its DBIRTH", dev)
		}
		for _, m := range p.Metrics {
			bm, ok := b[m.Alias]
			if !ok || m.Name != "" {
				t.Fatalf("DDATA %s: alias %d not born (name %q)", dev, m.Alias, m.Name)
			}
			if m.Type != bm.typ {
				t.Fatalf("DDATA %s/%s: type %d, born %d", dev, bm.name, m.Type, bm.typ)
			}
			var seq uint64
			for _, pr := range m.Properties {
				if pr.Key == "seq" {
					seq = pr.Value.Long
				}
			}
			key := dev + "/" + bm.name
			h.values[key] = max(h.values[key], seq)
			h.lastData[key] = m
			h.samples++
			if m.IsHistorical {
				h.histor++
			}
		}
	default:
		t.Fatalf("unexpected message type %s", typ)
	}
}

func metricNamed(t *testing.T, p sparkplug.Payload, name string) sparkplug.Metric {
	t.Helper()
	for _, m := range p.Metrics {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("payload without %s: %+v", name, p)
	return sparkplug.Metric{}
}

func sparkplugSink(t *testing.T, broker string, o SparkplugOptions) *Sink {
	t.Helper()
	if o.GroupID == "" {
		o.GroupID = "plant"
	}
	return newSink(t, Options{Broker: broker, QoS: 1, Sparkplug: &o})
}

func TestSparkplugSession(t *testing.T) {
	b := startBroker(t, brokerConf{})
	sub := subscribe(t, b.addr(), "spBv1.0/#", nil)
	s := sparkplugSink(t, b.addr(), SparkplugOptions{})
	waitConnected(t, s)
	// 3 devices × 3 tags, 600 samples: seq wraps twice.
	batch := messages([]string{"press-01", "press-02", "oven"}, 600, 1)
	for i := 0; i < len(batch); i += 100 {
		lane := uplink.Live
		if i >= 300 {
			lane = uplink.Backlog
		}
		if err := firstErr(produce(t, s, lane, batch[i:i+100])); err != nil {
			t.Fatal(err)
		}
	}
	// NBIRTH, a DBIRTH per device, 600 DDATA.
	got := sub.waitFor(t, 600, func(msgs []paho.Message) int {
		n := 0
		for _, m := range msgs {
			if strings.Contains(m.Topic(), "/DDATA/") {
				n++
			}
		}
		return n
	})
	h := newSpHost(t)
	h.follow(got)
	if h.births != 1 || h.bdSeq != 0 || h.samples != 600 || h.histor != 300 {
		t.Errorf("births %d bdSeq %d samples %d historical %d; want 1, 0, 600, 300", h.births, h.bdSeq, h.samples, h.histor)
	}
	// Each series' last value is its last record's.
	for _, m := range batch {
		f, _ := record.Decode(m.Value)
		last := h.lastData[f.Device+"/"+f.Tag]
		if h.values[f.Device+"/"+f.Tag] == f.Seq && last.Value.Double != f.Float {
			t.Errorf("%s/%s seq %d: value %v, want %v", f.Device, f.Tag, f.Seq, last.Value.Double, f.Float)
		}
	}
	if got := h.values["oven/t2"]; got != 200 {
		t.Errorf("oven/t2 highest seq %d, want 200", got)
	}
}

func TestSparkplugRebirthAndReconnect(t *testing.T) {
	b := startBroker(t, brokerConf{})
	sub := subscribe(t, b.addr(), "spBv1.0/#", nil)
	proxy, err := faultproxy.New(b.hostPort())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	s := sparkplugSink(t, "tcp://"+proxy.Addr(), SparkplugOptions{})
	waitConnected(t, s)
	if err := firstErr(produce(t, s, uplink.Live, messages([]string{"a", "b"}, 6, 1))); err != nil {
		t.Fatal(err)
	}
	countType := func(typ string) func([]paho.Message) int {
		return func(msgs []paho.Message) int {
			n := 0
			for _, m := range msgs {
				if strings.Contains(m.Topic(), "/"+typ+"/") {
					n++
				}
			}
			return n
		}
	}
	sub.waitFor(t, 6, countType(sparkplug.DData))

	// A host asks for a rebirth: NBIRTH and both DBIRTHs again.
	cmd := sparkplug.Payload{Timestamp: 1, Metrics: []sparkplug.Metric{{Name: sparkplug.MetricRebirth, Type: sparkplug.Boolean, Value: sparkplug.Value{Bool: true}}}}
	if tok := sub.cl.Publish(sparkplug.Topic("plant", sparkplug.NCmd, "gw", ""), 1, false, cmd.Append(nil)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("NCMD: %v", tok.Error())
	}
	sub.waitFor(t, 2, countType(sparkplug.NBirth))
	sub.waitFor(t, 4, countType(sparkplug.DBirth))

	// The link is cut: the broker sends the will (NDEATH, bdSeq 0); the
	// next session is born with a later bdSeq (each CONNECT, refused ones
	// too, takes the next) and births again.
	proxy.Cut()
	waitFor(t, "connection lost", func() bool { return !s.Connected() })
	proxy.Restore()
	waitConnected(t, s)
	if err := firstErr(produce(t, s, uplink.Live, messages([]string{"a", "b"}, 2, 4))); err != nil {
		t.Fatal(err)
	}
	got := sub.waitFor(t, 8, countType(sparkplug.DData))
	h := newSpHost(t)
	h.follow(got)
	if h.births != 3 || h.deaths != 1 || h.bdSeq < 1 {
		t.Errorf("births %d deaths %d bdSeq %d; want 3, 1, at least 1", h.births, h.deaths, h.bdSeq)
	}
}

func TestSparkplugStrictQoS0(t *testing.T) {
	b := startBroker(t, brokerConf{})
	sub := subscribe(t, b.addr(), "spBv1.0/#", nil)
	s := sparkplugSink(t, b.addr(), SparkplugOptions{StrictQoS0: true})
	waitConnected(t, s)
	if err := firstErr(produce(t, s, uplink.Live, messages([]string{"a"}, 3, 1))); err != nil {
		t.Fatal(err)
	}
	for _, m := range sub.waitFor(t, 5, func(m []paho.Message) int { return len(m) }) {
		if m.Qos() != 0 {
			t.Errorf("%s at QoS %d", m.Topic(), m.Qos())
		}
	}
}

func TestSparkplugRefuses(t *testing.T) {
	for _, tc := range []struct {
		o    SparkplugOptions
		want string
	}{
		{SparkplugOptions{}, "group_id is required"},
		{SparkplugOptions{GroupID: "a/b"}, "group_id"},
		{SparkplugOptions{GroupID: "g", EdgeNodeID: "n+"}, "edge_node_id"},
	} {
		_, err := New(Options{Broker: "tcp://h:1", GatewayID: "gw", Sparkplug: &tc.o})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
		}
	}
}

// TestSparkplugGracefulClose: Close ends the session with a DDEATH per
// device and the NDEATH, since the broker drops the will on DISCONNECT.
func TestSparkplugGracefulClose(t *testing.T) {
	b := startBroker(t, brokerConf{})
	sub := subscribe(t, b.addr(), "spBv1.0/#", nil)
	s := sparkplugSink(t, b.addr(), SparkplugOptions{})
	waitConnected(t, s)
	if err := firstErr(produce(t, s, uplink.Live, messages([]string{"a", "b"}, 4, 1))); err != nil {
		t.Fatal(err)
	}
	s.Close()
	got := sub.waitFor(t, 1, func(msgs []paho.Message) int {
		n := 0
		for _, m := range msgs {
			if strings.Contains(m.Topic(), "/NDEATH/") {
				n++
			}
		}
		return n
	})
	h := newSpHost(t)
	h.follow(got)
	if h.ddeaths != 2 || h.deaths != 1 {
		t.Errorf("%d DDEATH and %d NDEATH, want 2 and 1", h.ddeaths, h.deaths)
	}
}

// TestMetricQualityAndStatus checks the properties a sample's quality and
// status become: none for a good sample, Quality and status otherwise, and
// a null metric for a bad one.
func TestMetricQualityAndStatus(t *testing.T) {
	base := record.Fields{Gateway: "gw", Device: "d", Tag: "t", Seq: 7, Type: record.TypeFloat, Float: 1.5, ReadTime: time.Unix(1, 0)}
	for _, tc := range []struct {
		name, quality, status string
		noValue               bool
		wantQuality           int64 // -1: no Quality property
		wantStatus            string
	}{
		{"good", "good", "", false, -1, ""},
		{"uncertain", "uncertain", "UncertainLastUsableValue", false, qualityUncertain, "UncertainLastUsableValue"},
		{"bad", "bad", "BadSensorFailure", true, qualityBad, "BadSensorFailure"},
		{"bad without a name", "bad", "", true, qualityBad, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := base
			f.Quality, f.Status, f.NoValue = tc.quality, tc.status, tc.noValue
			m, err := metricOf(&f)
			if err != nil {
				t.Fatal(err)
			}
			gotQuality, gotStatus := int64(-1), ""
			for _, p := range m.Properties {
				switch p.Key {
				case "Quality":
					gotQuality = int64(p.Value.Int)
				case "status":
					gotStatus = p.Value.Str
				}
			}
			if gotQuality != tc.wantQuality || gotStatus != tc.wantStatus || m.IsNull != tc.noValue {
				t.Errorf("Quality %d, status %q, null %v; want %d, %q, %v", gotQuality, gotStatus, m.IsNull, tc.wantQuality, tc.wantStatus, tc.noValue)
			}
		})
	}
}
