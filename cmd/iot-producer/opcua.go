package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/iot-producer/iot-producer/agent/config"
	"github.com/iot-producer/iot-producer/drivers/opcua"
	simopcua "github.com/iot-producer/iot-producer/simulator/opcua"
)

// cmdOPCUA dispatches the OPC UA commissioning commands.
func cmdOPCUA(args []string, stdout, stderr io.Writer) int {
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "Usage: iot-producer opcua <browse|read|trust|simulate> [flags]")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "  browse  print the address space: node ids (with namespace URIs), browse names, data types, access")
		fmt.Fprintln(w, "          iot-producer opcua browse -endpoint opc.tcp://10.0.0.5:4840 -node 'nsu=urn:plc;s=Line1' -depth 2 -snippet")
		fmt.Fprintln(w, "  read    read one node: iot-producer opcua read -endpoint opc.tcp://10.0.0.5:4840 -node 'ns=2;s=Line1.Temp'")
		fmt.Fprintln(w, "  trust   add a server certificate to the agent's trust list:")
		fmt.Fprintln(w, "          iot-producer opcua trust -endpoint opc.tcp://10.0.0.5:4840 -fingerprint <sha-256>   (fetch and trust)")
		fmt.Fprintln(w, "          iot-producer opcua trust <state_dir>/opcua/rejected/<sha-256>.der                  (trust a refused one)")
		fmt.Fprintln(w, "  simulate serve simulated devices over OPC UA: iot-producer opcua simulate -listen 127.0.0.1:4840 -devices 10 -tags 4")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "browse and read connect as the agent does: -security-policy (default Basic256Sha256) with the")
		fmt.Fprintln(w, "agent's certificate and trust list under -state-dir; -security-policy None needs -allow-insecure.")
	}
	return dispatch("opcua", args, stdout, stderr, usage, map[string]subcommand{
		"browse":   opcuaBrowse,
		"read":     opcuaRead,
		"trust":    opcuaTrust,
		"simulate": opcuaSimulate,
	})
}

// defaultStateDir is systemd's STATE_DIRECTORY when set, else the agent's
// default.
func defaultStateDir() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		return strings.Split(d, ":")[0]
	}
	return config.DefaultStateDir
}

// sessionFlags are the flags that say how to reach a server.
type sessionFlags struct {
	endpoint, policy, mode, auth, user, passwordEnv, stateDir string
	insecure, tofu                                            bool
	timeout                                                   time.Duration
}

func addSessionFlags(fs *flag.FlagSet) *sessionFlags {
	s := &sessionFlags{}
	fs.StringVar(&s.endpoint, "endpoint", "", "server URL opc.tcp://host:port; required")
	fs.StringVar(&s.policy, "security-policy", "Basic256Sha256", "None, Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss (Basic128Rsa15, Basic256 with -allow-insecure)")
	fs.StringVar(&s.mode, "security-mode", "", "Sign or SignAndEncrypt (default)")
	fs.BoolVar(&s.insecure, "allow-insecure", false, "allow security policy None and the deprecated policies")
	fs.StringVar(&s.auth, "auth", "anonymous", "anonymous or username")
	fs.StringVar(&s.user, "username", "", "user name for -auth username")
	fs.StringVar(&s.passwordEnv, "password-env", "OPCUA_PASSWORD", "environment variable holding the password for -auth username")
	fs.StringVar(&s.stateDir, "state-dir", defaultStateDir(), "the agent's state directory: its OPC UA certificate and trust list are under opcua/")
	fs.BoolVar(&s.tofu, "trust-on-first-use", false, "trust the server certificate if none is trusted for this endpoint yet")
	fs.DurationVar(&s.timeout, "timeout", 5*time.Second, "bound on each call")
	return s
}

// dial connects as the flags say.
func (s *sessionFlags) dial(ctx context.Context) (*opcua.Session, error) {
	if s.endpoint == "" {
		return nil, errors.New("-endpoint is required")
	}
	c := opcua.NewConfig()
	c.Endpoint = s.endpoint
	c.SecurityPolicy, c.SecurityMode, c.AllowInsecure = s.policy, s.mode, s.insecure
	c.Auth, c.Username, c.TrustOnFirstUse = s.auth, s.user, s.tofu
	if s.auth == "username" {
		c.Password = os.Getenv(s.passwordEnv)
	}
	c.Timeout = config.Duration(s.timeout)
	c.Tags = []opcua.Tag{{Name: "x", Address: "i=2259"}}
	for _, p := range c.Validate() {
		return nil, fmt.Errorf("%s: %s", p.Key, p.Msg)
	}
	return opcua.Dial(ctx, c, s.stateDir)
}

// signalContext is cancelled by SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func opcuaBrowse(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("opcua browse", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sf := addSessionFlags(fs)
	node := fs.String("node", "", "start node (any node id notation, or a browse path); default the Objects folder")
	depth := fs.Int("depth", 2, "levels below the start node")
	snippet := fs.Bool("snippet", false, "also print a plcs entry with a tag per variable found")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	ctx, cancel := signalContext()
	defer cancel()
	s, err := sf.dial(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "opcua browse: %v\n", err)
		return exitFailure
	}
	defer s.Close()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tBROWSE NAME\tCLASS\tDATA TYPE\tACCESS")
	var vars []opcua.Entry
	err = s.Browse(ctx, *node, max(0, *depth), func(e opcua.Entry) {
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\n", strings.Repeat("  ", e.Depth), e.Node, e.BrowseName, e.Class, e.DataType, e.Access)
		if e.Class == "Variable" {
			vars = append(vars, e)
		}
	})
	_ = tw.Flush()
	if err != nil {
		fmt.Fprintf(stderr, "opcua browse: %v\n", err)
		return exitFailure
	}
	if *snippet {
		fmt.Fprintln(stdout)
		fmt.Fprintln(stdout, "# a plcs entry for the variables found (check names and types):")
		fmt.Fprintf(stdout, "- name: plc-1\n  driver: opcua\n  endpoint: %s\n  security_policy: %s\n  tags:\n", sf.endpoint, sf.policy)
		if sf.policy == "None" {
			fmt.Fprintln(stdout, "  allow_insecure: true")
		}
		used := map[string]int{}
		for _, v := range vars {
			name := tagName(v.BrowseName)
			used[name]++
			if used[name] > 1 {
				name = fmt.Sprintf("%s_%d", name, used[name])
			}
			fmt.Fprintf(stdout, "    - name: %s\n      address: %q\n", name, v.Node)
			if t := typeName(v.DataType); t != "" {
				fmt.Fprintf(stdout, "      type: %s\n", t)
			}
		}
	}
	return exitOK
}

// tagName makes a tag name from a browse name: letters, digits, '.', '_'
// and '-'.
func tagName(browse string) string {
	if i := strings.LastIndex(browse, ":"); i >= 0 {
		browse = browse[i+1:]
	}
	var b strings.Builder
	for _, r := range browse {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "tag"
	}
	return b.String()
}

// typeName maps an OPC UA data type name to a tag's type, "" when the
// type is not a built-in scalar.
func typeName(dt string) string {
	m := map[string]string{
		"Boolean": "bool", "SByte": "int8", "Byte": "uint8", "Int16": "int16", "Uint16": "uint16",
		"Int32": "int32", "Uint32": "uint32", "Int64": "int64", "Uint64": "uint64", "Float": "float32",
		"Double": "float64", "String": "string", "DateTime": "datetime", "GUID": "guid",
		"ByteString": "bytestring", "LocalizedText": "localizedtext", "StatusCode": "statuscode",
	}
	return m[strings.TrimPrefix(dt, "TypeID")]
}

func opcuaRead(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("opcua read", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sf := addSessionFlags(fs)
	node := fs.String("node", "", "node id in any notation (ns=2;s=X, nsu=urn:…;i=5, i=2258) or a browse path; required")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *node == "" {
		fmt.Fprintln(stderr, "opcua read: -node is required")
		return exitUsage
	}
	ctx, cancel := signalContext()
	defer cancel()
	s, err := sf.dial(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "opcua read: %v\n", err)
		return exitFailure
	}
	defer s.Close()
	r, err := s.Read(ctx, *node)
	if err != nil {
		fmt.Fprintf(stderr, "opcua read: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "node:        %s\n", r.Node)
	fmt.Fprintf(stdout, "status:      %s (%s)\n", r.Status, r.Quality)
	fmt.Fprintf(stdout, "type:        %s\n", r.Type)
	if r.Err != nil {
		fmt.Fprintf(stdout, "value:       (not usable: %v)\n", r.Err)
	} else {
		fmt.Fprintf(stdout, "value:       %s (%s)\n", exactValue(r.Value), r.Value.Kind)
	}
	if !r.SourceTime.IsZero() {
		fmt.Fprintf(stdout, "source time: %s\n", r.SourceTime.UTC().Format(time.RFC3339Nano))
	}
	if !r.ServerTime.IsZero() {
		fmt.Fprintf(stdout, "server time: %s\n", r.ServerTime.UTC().Format(time.RFC3339Nano))
	}
	return exitOK
}

func opcuaTrust(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("opcua trust", flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoint := fs.String("endpoint", "", "fetch the certificate from this server (opc.tcp://host:port)")
	fingerprint := fs.String("fingerprint", "", "with -endpoint: the SHA-256 the certificate must have (as the refusal printed it); without it, the certificates are only shown")
	stateDir := fs.String("state-dir", defaultStateDir(), "the agent's state directory")
	timeout := fs.Duration("timeout", 5*time.Second, "bound on the connection")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	var certs [][]byte
	switch {
	case *endpoint != "" && fs.NArg() == 0:
		ctx, cancel := signalContext()
		defer cancel()
		cs, err := opcua.ServerCertificates(ctx, *endpoint, *timeout)
		if err != nil {
			fmt.Fprintf(stderr, "opcua trust: %v\n", err)
			return exitFailure
		}
		if len(cs) == 0 {
			fmt.Fprintf(stderr, "opcua trust: %s presents no certificate (it offers security None only)\n", *endpoint)
			return exitFailure
		}
		want := strings.ToLower(strings.ReplaceAll(*fingerprint, ":", ""))
		for _, c := range cs {
			if want == "" {
				fmt.Fprintf(stdout, "%s presents %s\n", *endpoint, opcua.Describe(c))
			} else if opcua.Fingerprint(c) == want {
				certs = append(certs, c)
			}
		}
		if want == "" {
			fmt.Fprintln(stdout, "check the fingerprint with the server's administrator, then run again with -fingerprint <sha-256>")
			return exitOK
		}
		if len(certs) == 0 {
			fmt.Fprintf(stderr, "opcua trust: %s presents no certificate with SHA-256 %s: nothing trusted\n", *endpoint, *fingerprint)
			return exitFailure
		}
	case *endpoint == "" && fs.NArg() > 0:
		for _, f := range fs.Args() {
			b, err := os.ReadFile(f)
			if err != nil {
				fmt.Fprintf(stderr, "opcua trust: %v\n", err)
				return exitFailure
			}
			certs = append(certs, b)
		}
	default:
		fmt.Fprintln(stderr, "opcua trust: give -endpoint (with -fingerprint) or certificate files (DER), not both")
		return exitUsage
	}
	for _, c := range certs {
		p, err := opcua.Trust(*stateDir, c)
		if err != nil {
			fmt.Fprintf(stderr, "opcua trust: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(stdout, "trusted %s\n  as %s\n", opcua.Describe(c), p)
	}
	fmt.Fprintln(stdout, "the agent uses it at its next connection attempt (no restart needed)")
	return exitOK
}

func opcuaSimulate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("opcua simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:4840", "host:port to serve on (port 0 picks a free one)")
	devices := fs.Int("devices", 10, "simulated devices: folders sim-0001... under Objects")
	tags := fs.Int("tags", 4, "variables per device: temperature, pressure, counter, alarm, ...")
	interval := fs.Duration("interval", time.Second, "time between updates of every variable")
	types := fs.Bool("types", false, "add a device \"types\" with a variable of every built-in scalar type")
	secure := fs.Bool("secure", false, "also serve the secured endpoints (Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss; Sign and SignAndEncrypt) with the server's own certificate")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	host, port, err := net.SplitHostPort(*listen)
	if err != nil {
		fmt.Fprintf(stderr, "opcua simulate: -listen: %v\n", err)
		return exitUsage
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		fmt.Fprintf(stderr, "opcua simulate: -listen: port %q\n", port)
		return exitUsage
	}
	srv, err := simopcua.New(simopcua.Options{Host: host, Port: p, Devices: *devices, TagsPerDevice: *tags, Interval: *interval, Types: *types, Secure: *secure, Seed: 1, Variation: 0.1})
	if err != nil {
		fmt.Fprintf(stderr, "opcua simulate: %v\n", err)
		return exitFailure
	}
	ctx, cancel := signalContext()
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		fmt.Fprintf(stderr, "opcua simulate: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "opcua %s namespace %s index %d variables %d\n", srv.Endpoint(), simopcua.DefaultNamespaceURI, srv.NamespaceIndex(), srv.Variables())
	fmt.Fprintln(stdout, "ready")
	<-ctx.Done()
	if err := srv.Close(); err != nil {
		fmt.Fprintf(stderr, "opcua simulate: %v\n", err)
	}
	return exitOK
}
