package opcua

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/drivers"
)

func init() {
	config.RegisterDriver(config.DriverPlugin{
		Name:    "opcua",
		Summary: "OPC UA servers (opc.tcp): subscriptions or polled reads, security policies up to Aes256_Sha256_RsaPss with the agent's own certificate and a trust list",
		New:     func() config.Settings { return NewConfig() },
	})
}

// Config is a plcs entry with driver: opcua, less the name, driver and
// enabled keys agent/config keeps.
type Config struct {
	Endpoint string `yaml:"endpoint" json:"endpoint" required:"true" doc:"server URL opc.tcp://host:port[/path]"`
	Mode     string `yaml:"mode" json:"mode" enum:",subscribe,poll" doc:"subscribe (default: monitored items, the server pushes changes) or poll (a batched Read of every node each poll_interval)"`
	// PollInterval is the poll period, or the publishing interval of the
	// subscriptions.
	PollInterval     config.Duration `yaml:"poll_interval" json:"poll_interval" min:"10ms" doc:"poll: time between reads; subscribe: publishing interval; default 1s"`
	SamplingInterval config.Duration `yaml:"sampling_interval" json:"sampling_interval" doc:"subscribe: how often the server samples each node; default poll_interval"`
	QueueSize        int             `yaml:"queue_size" json:"queue_size" range:"1,10000" doc:"subscribe: changes the server keeps per item between publishes; default 1"`
	DeadbandType     string          `yaml:"deadband_type" json:"deadband_type" enum:",none,absolute,percent" doc:"subscribe: none (default), absolute or percent (of the node's EURange) deadband"`
	DeadbandValue    float64         `yaml:"deadband_value" json:"deadband_value" doc:"subscribe: the deadband; a change smaller than this is not reported"`
	Timeout          config.Duration `yaml:"timeout" json:"timeout" min:"10ms" doc:"bound on every call to the server (connect, read, subscribe); default 5s"`
	// MaxItemsPerSubscription splits the items over several subscriptions.
	MaxItemsPerSubscription int             `yaml:"max_items_per_subscription" json:"max_items_per_subscription" range:"0," doc:"subscribe: monitored items per subscription at most (items the server refuses with BadTooManyMonitoredItems go to new subscriptions of the size it accepted); default 1000"`
	MaxNodesPerRead         int             `yaml:"max_nodes_per_read" json:"max_nodes_per_read" range:"0," doc:"poll: nodes per Read at most; default the server's MaxNodesPerRead, else 1000"`
	Watchdog                config.Duration `yaml:"watchdog" json:"watchdog" doc:"subscribe: a subscription silent this long gets the server probed, and the session rebuilt if it does not answer; default 30s"`
	ReconnectMax            config.Duration `yaml:"reconnect_max" json:"reconnect_max" doc:"longest wait between two reconnection attempts (the wait doubles from 500ms); default 30s"`
	// Security.
	SecurityPolicy  string `yaml:"security_policy" json:"security_policy" enum:",None,Basic256Sha256,Aes128_Sha256_RsaOaep,Aes256_Sha256_RsaPss,Basic128Rsa15,Basic256" doc:"Basic256Sha256 (default), Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss; None, Basic128Rsa15 and Basic256 only with allow_insecure"`
	SecurityMode    string `yaml:"security_mode" json:"security_mode" enum:",None,Sign,SignAndEncrypt" doc:"SignAndEncrypt (default) or Sign; None with security_policy None"`
	AllowInsecure   bool   `yaml:"allow_insecure" json:"allow_insecure" doc:"allow security_policy None and the deprecated Basic128Rsa15 and Basic256; default false"`
	TrustOnFirstUse bool   `yaml:"trust_on_first_use" json:"trust_on_first_use" doc:"trust the server certificate met at the first connection when the trust list has none for this endpoint; default false (an unknown certificate is refused until trusted with iot-producer opcua trust)"`
	Auth            string `yaml:"auth" json:"auth" enum:",anonymous,username,certificate" doc:"user identity: anonymous (default), username (username and password) or certificate (user_certificate_file and user_key_file)"`
	Username        string `yaml:"username" json:"username" doc:"auth username: the user name"`
	Password        string `yaml:"password" json:"password" secret:"true" doc:"auth username: the password; or password_file, or ${ENV}"`
	UserCertFile    string `yaml:"user_certificate_file" json:"user_certificate_file" doc:"auth certificate: the user certificate (DER or PEM)"`
	UserKeyFile     string `yaml:"user_key_file" json:"user_key_file" doc:"auth certificate: its RSA private key (PEM)"`
	OnError         string `yaml:"on_error" json:"on_error" enum:",bad_quality,drop" doc:"when the server cannot be read: bad_quality (default: one sample of bad quality per tag at the start of the outage) or drop (no sample)"`
	Tags            []Tag  `yaml:"tags" json:"tags" doc:"values read from this server; at least one"`
}

// Tag is one node read from the server.
type Tag struct {
	Name string `yaml:"name" json:"name" required:"true" doc:"tag name, unique within its device"`
	// Address is a node id; BrowsePath is the alternative.
	Address    string `yaml:"address" json:"address" doc:"node id: ns=2;s=Line1.Temp, nsu=urn:plant:line1;i=1001 (namespace by URI), i=2258, g=<guid>, b=<base64>"`
	BrowsePath string `yaml:"browse_path" json:"browse_path" doc:"instead of address: a path from the Objects folder resolved at each connect, elements <ns index or uri>:<browse name> separated by /, e.g. 2:Line1/2:Temperature"`
	Type       string `yaml:"type" json:"type" doc:"optional expected type (bool, int8...int64, uint8...uint64, float32, float64, string, datetime, guid, bytestring, localizedtext, statuscode, or the OPC UA names); a value of another type is a bad sample. Arrays are not supported"`
}

// Defaults.
const (
	defaultInterval     = time.Second
	defaultTimeout      = 5 * time.Second
	defaultItemsPerSub  = 1000
	defaultNodesPerRead = 1000
	defaultWatchdog     = 30 * time.Second
	defaultReconnectMax = 30 * time.Second
)

// NewConfig returns a Config with its defaults, to decode a plcs entry
// into.
func NewConfig() *Config {
	return &Config{
		Mode:                    "subscribe",
		PollInterval:            config.Duration(defaultInterval),
		QueueSize:               1,
		DeadbandType:            "none",
		Timeout:                 config.Duration(defaultTimeout),
		MaxItemsPerSubscription: defaultItemsPerSub,
		Watchdog:                config.Duration(defaultWatchdog),
		ReconnectMax:            config.Duration(defaultReconnectMax),
		SecurityPolicy:          "Basic256Sha256",
		Auth:                    "anonymous",
		OnError:                 "bad_quality",
	}
}

// Problem is one thing wrong in a Config, its key relative to the PLC's
// entry (tags[2].address).
type Problem struct {
	Key string
	Msg string
	// Tagged is set for a problem the field's rule tags already make
	// agent/config report (an enum, a range, a minimum).
	Tagged bool
}

// Check implements config.Settings: the rules the tags cannot say.
func (c *Config) Check(ck *config.Checker) {
	for _, p := range c.Validate() {
		if !p.Tagged {
			ck.Add(p.Key, "%s", p.Msg)
		}
	}
	for i, t := range c.Tags {
		if t.Name != "" && !config.NameOK(t.Name) {
			ck.Add(fmt.Sprintf("tags[%d].name", i), "%q: use letters, digits, '.', '_' and '-' only", config.Cut(t.Name))
		}
	}
}

// DerivedDefaults implements config.DerivedDocs.
func (c *Config) DerivedDefaults() map[string]string {
	return map[string]string{
		"sampling_interval":  "poll_interval",
		"security_mode":      "SignAndEncrypt; None with security_policy None",
		"max_nodes_per_read": "the server's MaxNodesPerRead, else 1000",
	}
}

// Build implements drivers.Builder: everything but connecting (node ids
// and browse paths parsed, the user certificate read).
func (c *Config) Build(env drivers.Env) (drivers.Driver, error) {
	return NewDriver(Options{Name: env.Device, Config: c, StateDir: env.StateDir, OnError: env.OnError, Logger: env.Logger})
}

// typeNames maps the names a tag's type may take to OPC UA type ids.
var typeNames = map[string]ua.TypeID{
	"bool": ua.TypeIDBoolean, "boolean": ua.TypeIDBoolean,
	"int8": ua.TypeIDSByte, "sbyte": ua.TypeIDSByte,
	"uint8": ua.TypeIDByte, "byte": ua.TypeIDByte,
	"int16": ua.TypeIDInt16, "uint16": ua.TypeIDUint16,
	"int32": ua.TypeIDInt32, "uint32": ua.TypeIDUint32,
	"int64": ua.TypeIDInt64, "uint64": ua.TypeIDUint64,
	"float32": ua.TypeIDFloat, "float": ua.TypeIDFloat,
	"float64": ua.TypeIDDouble, "double": ua.TypeIDDouble,
	"string": ua.TypeIDString, "datetime": ua.TypeIDDateTime,
	"guid": ua.TypeIDGUID, "bytestring": ua.TypeIDByteString,
	"xmlelement": ua.TypeIDXMLElement, "nodeid": ua.TypeIDNodeID,
	"expandednodeid": ua.TypeIDExpandedNodeID, "statuscode": ua.TypeIDStatusCode,
	"qualifiedname": ua.TypeIDQualifiedName, "localizedtext": ua.TypeIDLocalizedText,
}

// isArrayType reports whether a tag's type names an array (float64[],
// Array...).
func isArrayType(s string) bool {
	l := strings.ToLower(s)
	return strings.HasSuffix(l, "[]") || strings.HasPrefix(l, "array")
}

// parseType returns the OPC UA type a tag's type names; 0 for "".
func parseType(s string) (ua.TypeID, error) {
	if s == "" {
		return 0, nil
	}
	l := strings.ToLower(s)
	if isArrayType(l) {
		return 0, fmt.Errorf("%q is an array type: arrays are not supported, a tag reads one scalar (name the element's own node if the server has one)", s)
	}
	if t, ok := typeNames[l]; ok {
		return t, nil
	}
	names := make([]string, 0, len(typeNames))
	for n := range typeNames {
		names = append(names, n)
	}
	if g := config.Suggest(l, names); g != "" {
		return 0, fmt.Errorf("unknown type %q; did you mean %q?", config.Cut(s), g)
	}
	return 0, fmt.Errorf("%q: unknown type; one of bool, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64, string, datetime, guid, bytestring, localizedtext, statuscode, qualifiedname, nodeid, xmlelement", s)
}

// kindOf is the sample kind of an OPC UA type; float for 0 (not given).
func kindOf(t ua.TypeID) drivers.Kind {
	switch t {
	case ua.TypeIDBoolean:
		return drivers.KindBool
	case ua.TypeIDSByte, ua.TypeIDInt16, ua.TypeIDInt32, ua.TypeIDInt64:
		return drivers.KindInt
	case ua.TypeIDByte, ua.TypeIDUint16, ua.TypeIDUint32, ua.TypeIDUint64, ua.TypeIDStatusCode:
		return drivers.KindUint
	case 0, ua.TypeIDFloat, ua.TypeIDDouble:
		return drivers.KindFloat
	}
	return drivers.KindString
}

// policyURI maps a policy name to its URI.
func policyURI(name string) string {
	if name == "" {
		name = "Basic256Sha256"
	}
	return ua.SecurityPolicyURIPrefix + name
}

// securityMode maps a mode name, with the default for the policy.
func securityMode(policy, mode string) ua.MessageSecurityMode {
	switch mode {
	case "None":
		return ua.MessageSecurityModeNone
	case "Sign":
		return ua.MessageSecurityModeSign
	case "SignAndEncrypt":
		return ua.MessageSecurityModeSignAndEncrypt
	}
	if policy == "None" {
		return ua.MessageSecurityModeNone
	}
	return ua.MessageSecurityModeSignAndEncrypt
}

// Validate returns every problem of c, keys relative to the PLC's entry.
func (c *Config) Validate() []Problem {
	var ps []Problem
	add := func(key, f string, a ...any) { ps = append(ps, Problem{Key: key, Msg: fmt.Sprintf(f, a...)}) }
	tagged := func(key, f string, a ...any) {
		ps = append(ps, Problem{Key: key, Msg: fmt.Sprintf(f, a...), Tagged: true})
	}
	if c.Endpoint == "" {
		tagged("endpoint", "required: the server URL opc.tcp://host:port")
	} else if u, err := url.Parse(c.Endpoint); err != nil || u.Scheme != "opc.tcp" || u.Host == "" {
		add("endpoint", "%q: an opcua endpoint is a URL opc.tcp://host:port[/path]", c.Endpoint)
	}
	switch c.Mode {
	case "", "subscribe", "poll":
	default:
		tagged("mode", "%q: subscribe or poll", c.Mode)
	}
	pol := c.SecurityPolicy
	switch pol {
	case "", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss":
	case "None", "Basic128Rsa15", "Basic256":
		if !c.AllowInsecure {
			what := "is deprecated (broken hashes)"
			if pol == "None" {
				what = "neither signs nor encrypts"
			}
			add("security_policy", "%s %s: set allow_insecure: true to use it anyway, or choose Basic256Sha256, Aes128_Sha256_RsaOaep or Aes256_Sha256_RsaPss", pol, what)
		}
	default:
		tagged("security_policy", "%q: one of Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss (or, with allow_insecure, None, Basic128Rsa15, Basic256)", pol)
	}
	switch c.SecurityMode {
	case "":
	case "None":
		if pol != "None" {
			add("security_mode", "None goes with security_policy None only; use Sign or SignAndEncrypt")
		}
	case "Sign", "SignAndEncrypt":
		if pol == "None" {
			add("security_mode", "%s needs a security policy other than None", c.SecurityMode)
		}
	default:
		tagged("security_mode", "%q: Sign or SignAndEncrypt (None with security_policy None)", c.SecurityMode)
	}
	switch c.Auth {
	case "", "anonymous":
		if c.Username != "" || c.Password != "" {
			add("auth", "username and password are set but auth is anonymous; set auth: username")
		}
	case "username":
		if c.Username == "" {
			add("username", "required with auth username")
		}
	case "certificate":
		if c.UserCertFile == "" || c.UserKeyFile == "" {
			add("user_certificate_file", "auth certificate needs user_certificate_file and user_key_file")
		}
	default:
		tagged("auth", "%q: anonymous, username or certificate", c.Auth)
	}
	switch c.DeadbandType {
	case "", "none":
		if c.DeadbandValue != 0 {
			add("deadband_value", "set, but deadband_type is none; set deadband_type absolute or percent")
		}
	case "absolute":
		if c.DeadbandValue < 0 {
			add("deadband_value", "%v: must not be negative", c.DeadbandValue)
		}
	case "percent":
		if c.DeadbandValue < 0 || c.DeadbandValue > 100 {
			add("deadband_value", "%v: a percent deadband is 0 to 100", c.DeadbandValue)
		}
	default:
		tagged("deadband_type", "%q: none, absolute or percent", c.DeadbandType)
	}
	if c.DeadbandType != "" && c.DeadbandType != "none" && c.Mode == "poll" {
		add("deadband_type", "a deadband applies to subscribe mode only")
	}
	if c.PollInterval != 0 && c.PollInterval.Std() < 10*time.Millisecond {
		tagged("poll_interval", "%s: at least 10ms", c.PollInterval)
	}
	if c.Timeout != 0 && c.Timeout.Std() < 10*time.Millisecond {
		tagged("timeout", "%s: at least 10ms", c.Timeout)
	}
	if c.QueueSize < 0 {
		tagged("queue_size", "%d: at least 1", c.QueueSize)
	}
	if c.MaxItemsPerSubscription < 0 {
		tagged("max_items_per_subscription", "%d: must not be negative", c.MaxItemsPerSubscription)
	}
	if c.MaxNodesPerRead < 0 {
		tagged("max_nodes_per_read", "%d: must not be negative", c.MaxNodesPerRead)
	}
	switch c.OnError {
	case "", "bad_quality", "drop":
	default:
		tagged("on_error", "%q: bad_quality or drop", c.OnError)
	}
	if len(c.Tags) == 0 {
		add("tags", "no tags: give at least one")
	}
	seen := map[string]int{}
	for i, t := range c.Tags {
		key := fmt.Sprintf("tags[%d]", i)
		if t.Name == "" {
			tagged(key+".name", "required")
		} else if j, ok := seen[t.Name]; ok {
			add(key+".name", "duplicate tag name %q in this device (also tags[%d])", t.Name, j)
		} else {
			seen[t.Name] = i
		}
		switch {
		case t.Address == "" && t.BrowsePath == "":
			add(key+".address", "required: a node id (ns=2;s=Line1.Temp) or a browse_path")
		case t.Address != "" && t.BrowsePath != "":
			add(key+".browse_path", "give address or browse_path, not both")
		case t.Address != "":
			if _, err := ParseNode(t.Address); err != nil {
				add(key+".address", "%v", err)
			}
		default:
			if _, err := ParsePath(t.BrowsePath); err != nil {
				add(key+".browse_path", "%v", err)
			}
		}
		if _, err := parseType(t.Type); err != nil && isArrayType(t.Type) {
			// Say which tag and node: the user may want the node of an
			// element instead.
			node := t.Address
			if node == "" {
				node = "browse path " + t.BrowsePath
			}
			add(key+".type", "tag %s (%s): %v", t.Name, node, err)
		} else if err != nil {
			add(key+".type", "%v", err)
		}
	}
	return ps
}
