package opcua

import (
	"math"
	"strings"
	"testing"

	"github.com/gopcua/opcua/ua"

	"github.com/iot-producer/iot-producer/drivers"
)

func TestParseNode(t *testing.T) {
	ns := []string{"http://opcfoundation.org/UA/", "urn:a", "urn:plant:line1"}
	for _, c := range []struct {
		in, resolved, err string
	}{
		{in: "i=2258", resolved: "i=2258"},
		{in: "ns=2;s=Line1.Temp", resolved: "ns=2;s=Line1.Temp"},
		{in: "nsu=urn:plant:line1;s=Line1.Temp", resolved: "ns=2;s=Line1.Temp"},
		{in: "nsu=urn:plant:line1;i=70000", resolved: "ns=2;i=70000"},
		{in: "ns=1;g=72962B91-FA75-4AE6-8D28-B404DC7DAF63", resolved: "ns=1;g=72962B91-FA75-4AE6-8D28-B404DC7DAF63"},
		{in: "ns=1;b=AQID", resolved: "ns=1;b=AQID"},
		{in: "ns=2;s=a;b", resolved: "ns=2;s=a;b"},
		{in: "nsu=urn:missing;i=1", err: `namespace "urn:missing" is not in the server's namespace array`},
		{in: "Line1.Temp", err: "a node id looks like"},
		{in: "ns=x;i=1", err: "namespace index"},
		{in: "ns=2;i=4294967296", err: "not a number from 0 to 4294967295"},
		{in: "ns=2;g=1234", err: "GUID"},
		{in: "ns=2;b=!!", err: "base64"},
		{in: "nsu=;i=1", err: "empty"},
		{in: "ns=2;x=1", err: "not i, s, g or b"},
	} {
		t.Run(c.in, func(t *testing.T) {
			r, err := ParseNode(c.in)
			var n *ua.NodeID
			if err == nil {
				if r.String() != c.in {
					t.Errorf("String %q", r.String())
				}
				n, err = r.Resolve(ns)
			}
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.String() != c.resolved {
				t.Errorf("resolved %s, want %s", n, c.resolved)
			}
		})
	}
}

func TestParsePath(t *testing.T) {
	p, err := ParsePath("/Objects/2:Line1/urn:plant:line1:Temp")
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 2 || p[0].NS != 2 || p[0].Name != "Line1" || p[1].URI != "urn:plant:line1" || p[1].Name != "Temp" {
		t.Fatalf("%+v", p)
	}
	for _, bad := range []string{"", "2:a//b", "2:"} {
		if _, err := ParsePath(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestQuality(t *testing.T) {
	for _, c := range []struct {
		sc   ua.StatusCode
		q    drivers.Quality
		name string
	}{
		{ua.StatusOK, drivers.QualityGood, "Good"},
		{ua.StatusGoodClamped, drivers.QualityGood, "GoodClamped"},
		{ua.StatusUncertainLastUsableValue, drivers.QualityUncertain, "UncertainLastUsableValue"},
		{ua.StatusBadCommunicationError, drivers.QualityBad, "BadCommunicationError"},
		{ua.StatusBadNodeIDUnknown | 0x400, drivers.QualityBad, "BadNodeIdUnknown"},
		{0xC0AB0000, drivers.QualityBad, "0xC0AB0000"},
	} {
		q, n := Quality(c.sc)
		if q != c.q || n != c.name {
			t.Errorf("%08X: %s %s, want %s %s", uint32(c.sc), q, n, c.q, c.name)
		}
	}
}

func TestConvertRefusesArraysAndStructures(t *testing.T) {
	if _, err := Convert(ua.MustVariant([]float64{1, 2})); err == nil || !strings.Contains(err.Error(), "array") {
		t.Errorf("array: %v", err)
	}
	if _, err := Convert(ua.MustVariant(ua.NewExtensionObject(&ua.Range{Low: 1, High: 2}))); err == nil {
		t.Error("extension object accepted")
	}
	if _, err := Convert(nil); err == nil {
		t.Error("nil accepted")
	}
	if got, _ := Convert(ua.MustVariant(float32(math.Inf(1)))); !math.IsInf(got.F, 1) {
		t.Errorf("float32 +Inf: %v", got.F)
	}
}

func TestValidate(t *testing.T) {
	base := func() *Config {
		c := NewConfig()
		c.Endpoint = "opc.tcp://h:4840"
		c.Tags = []Tag{{Name: "a", Address: "ns=2;s=A"}}
		return c
	}
	for _, c := range []struct {
		name string
		mod  func(*Config)
		want string // "" for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"bad endpoint", func(c *Config) { c.Endpoint = "tcp://h:4840" }, "endpoint: "},
		{"none without allow", func(c *Config) { c.SecurityPolicy = "None" }, "security_policy: None neither signs nor encrypts"},
		{"none allowed", func(c *Config) { c.SecurityPolicy, c.AllowInsecure = "None", true }, ""},
		{"deprecated", func(c *Config) { c.SecurityPolicy = "Basic128Rsa15" }, "security_policy: Basic128Rsa15 is deprecated"},
		{"mode none with policy", func(c *Config) { c.SecurityMode = "None" }, "security_mode: "},
		{"username without name", func(c *Config) { c.Auth = "username" }, "username: required"},
		{"password without auth", func(c *Config) { c.Password = "x" }, "auth: "},
		{"cert auth without files", func(c *Config) { c.Auth = "certificate" }, "user_certificate_file: "},
		{"percent deadband", func(c *Config) { c.DeadbandType, c.DeadbandValue = "percent", 150 }, "deadband_value: "},
		{"deadband in poll", func(c *Config) { c.Mode, c.DeadbandType = "poll", "absolute" }, "deadband_type: a deadband applies"},
		{"no tags", func(c *Config) { c.Tags = nil }, "tags: "},
		{"repeated tag", func(c *Config) { c.Tags = append(c.Tags, Tag{Name: "a", Address: "i=1"}) }, `tags[1].name: duplicate tag name "a" in this device (also tags[0])`},
		{"bad node", func(c *Config) { c.Tags[0].Address = "Line1" }, "tags[0].address: "},
		{"both node and path", func(c *Config) { c.Tags[0].BrowsePath = "2:A" }, "tags[0].browse_path: give address or browse_path"},
		{"array type", func(c *Config) { c.Tags[0].Type = "float64[]" }, "tags[0].type: tag a (ns=2;s=A): \"float64[]\" is an array type: arrays are not supported"},
		{"unknown type", func(c *Config) { c.Tags[0].Type = "flaot" }, "tags[0].type: "},
		{"bad mode", func(c *Config) { c.Mode = "push" }, "mode: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := base()
			c.mod(cfg)
			ps := cfg.Validate()
			var got []string
			for _, p := range ps {
				got = append(got, p.Key+": "+p.Msg)
			}
			all := strings.Join(got, "\n")
			if c.want == "" {
				if len(ps) > 0 {
					t.Fatalf("problems: %s", all)
				}
				return
			}
			if !strings.Contains(all, c.want) {
				t.Fatalf("problems %q, want %q", all, c.want)
			}
		})
	}
}

func TestTypeName(t *testing.T) {
	for id, want := range map[ua.TypeID]string{
		ua.TypeIDDouble: "Double", ua.TypeIDGUID: "Guid", ua.TypeIDXMLElement: "XmlElement", ua.TypeIDUint16: "UInt16",
		ua.TypeIDUint64: "UInt64", ua.TypeIDNodeID: "NodeId", ua.TypeIDExpandedNodeID: "ExpandedNodeId", ua.TypeIDByteString: "ByteString",
		ua.TypeIDExtensionObject: "ExtensionObject", ua.TypeIDSByte: "SByte", ua.TypeIDStatusCode: "StatusCode",
	} {
		if got := typeName(id); got != want {
			t.Errorf("typeName(%d) = %q, want %q", id, got, want)
		}
	}
}
