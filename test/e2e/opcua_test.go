//go:build e2e

package e2e

import (
	"bufio"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iot-producer/iot-producer/drivers/opcua"
	"github.com/iot-producer/iot-producer/record"
)

// nodeOPCUADir returns the node_modules folder where scripts/ci-deps.sh
// installed node-opcua; the test fails without it.
func nodeOPCUADir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("IOT_PRODUCER_NODE_DIR")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "iot-producer", "node")
	}
	mods := filepath.Join(dir, "node_modules")
	if _, err := os.Stat(filepath.Join(mods, "node-opcua", "package.json")); err != nil {
		t.Fatalf("node-opcua is missing in %s: run scripts/ci-deps.sh (%v)", mods, err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is missing: install Node.js (Debian: nodejs)")
	}
	return mods
}

// nodeOPCUA is a running testdata/node_opcua_server.js.
type nodeOPCUA struct {
	cmd  *exec.Cmd
	done chan struct{}
	// lines receives what it prints after "ready".
	lines chan string
}

// startNodeOPCUA starts the server on port with its PKI in pki (kept
// across restarts, so the certificate stays the same) and waits until it
// listens.
func startNodeOPCUA(t *testing.T, mods string, port int, pki string) *nodeOPCUA {
	t.Helper()
	cmd := exec.Command("node", "testdata/node_opcua_server.js", fmt.Sprint(port), pki)
	cmd.Env = append(os.Environ(), "NODE_PATH="+mods)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &nodeOPCUA{cmd: cmd, done: make(chan struct{}), lines: make(chan string, 16)}
	ready := make(chan bool, 1)
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- true
				continue
			}
			select {
			case s.lines <- sc.Text():
			default:
			}
		}
		ready <- false
		_ = cmd.Wait()
	}()
	t.Cleanup(func() { s.kill() })
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("node-opcua server exited before it was ready")
		}
	case <-time.After(180 * time.Second): // loading the standard nodeset is slow on a busy machine
		t.Fatal("node-opcua server not ready within 180s")
	}
	return s
}

// kill stops the server at once, as a crash or power cut would.
func (s *nodeOPCUA) kill() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
	}
	<-s.done
}

var fingerprintRe = regexp.MustCompile(`--fingerprint ([0-9a-f]{64})`)

// TestOPCUAAgainstNodeOPCUA reads node-opcua, an OPC UA server this project
// did not write, with Basic256Sha256 SignAndEncrypt and a user name, in
// both modes: its certificate is refused until trusted with `iot-producer
// opcua trust`, a wrong password is refused, every scalar type arrives in
// Kafka with its exact value and source time, a node whose status turns
// bad arrives bad without a value and with the code's name, items are split over subscriptions when
// the server caps them, a deadband holds, a user identified by a
// certificate reads, and after the server is killed and
// started again the data resumes without restarting the agent.
func TestOPCUAAgainstNodeOPCUA(t *testing.T) {
	brokers := kafkaBrokers(t)
	mods := nodeOPCUADir(t)
	dir := t.TempDir()
	// A fixed port below the ephemeral range: the server restarts on it,
	// and a port picked from the ephemeral range may be some client's by
	// then.
	const port = 25840
	pki := filepath.Join(dir, "server-pki")
	srv := startNodeOPCUA(t, mods, port, pki)
	endpoint := fmt.Sprintf("opc.tcp://127.0.0.1:%d", port)

	scalars := []struct {
		name string
		want record.Fields
	}{
		{"Boolean", record.Fields{Type: "bool", Bool: true}},
		{"SByte", record.Fields{Type: "int", Int: -128}},
		{"Byte", record.Fields{Type: "uint", Uint: 255}},
		{"Int16", record.Fields{Type: "int", Int: -32768}},
		{"UInt16", record.Fields{Type: "uint", Uint: 65535}},
		{"Int32", record.Fields{Type: "int", Int: -2147483648}},
		{"UInt32", record.Fields{Type: "uint", Uint: 4294967295}},
		{"Int64", record.Fields{Type: "int", Int: -9007199254740993}},
		{"UInt64", record.Fields{Type: "uint", Uint: 18446744073709551614}},
		{"Float", record.Fields{Type: "float", Float: 0.1}},
		{"Double", record.Fields{Type: "float", Float: -9876.54321}},
		{"String", record.Fields{Type: "string", String: "Grüße, \"OPC\" ☃"}},
		{"DateTime", record.Fields{Type: "string", String: "2026-11-26T08:00:00.123Z"}},
		{"Guid", record.Fields{Type: "string", String: "72962B91-FA75-4AE6-8D28-B404DC7DAF63"}},
		{"ByteString", record.Fields{Type: "string", String: "AAEC/v8="}},
		{"XmlElement", record.Fields{Type: "string", String: "<a>1</a>"}},
		{"NodeId", record.Fields{Type: "string", String: "ns=3;s=x"}},
		{"StatusCode", record.Fields{Type: "uint", Uint: 0x803C0000}},
		{"QualifiedName", record.Fields{Type: "string", String: "3:q"}},
		{"LocalizedText", record.Fields{Type: "string", String: "Druck"}},
	}
	var tags strings.Builder
	for _, s := range scalars {
		fmt.Fprintf(&tags, "      - {name: %s, address: \"nsu=urn:e2e:plc;s=Line1.%s\"}\n", s.name, s.name)
	}
	tags.WriteString("      - {name: Counter, address: \"nsu=urn:e2e:plc;s=Line1.Counter\", type: uint32}\n")
	tags.WriteString("      - {name: Flaky, browse_path: \"urn:e2e:plc:Line1/urn:e2e:plc:Flaky\", type: float64}\n")
	wrong := filepath.Join(dir, "wrong-password")
	if err := os.WriteFile(wrong, []byte("not-the-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OPCUA_PASSWORD", "right-pass")
	// A user identified by a certificate and its key.
	userDER, userKey, err := opcua.NewCertificate("e2e-user", "urn:e2e:user", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	userCert, userKeyFile := filepath.Join(dir, "user.der"), filepath.Join(dir, "user.key")
	if err := os.WriteFile(userCert, userDER, 0o600); err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(userKey)})
	if err := os.WriteFile(userKeyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	topic := fmt.Sprintf("e2e-opcua-%d", time.Now().UnixNano())
	plc := func(name, mode, password, extra string) string {
		return fmt.Sprintf(`
  - name: %s
    driver: opcua
    endpoint: %s
    mode: %s
    poll_interval: 200ms
    timeout: 5s
    reconnect_max: 2s
    security_policy: Basic256Sha256
    security_mode: SignAndEncrypt
    auth: username
    username: gw
    %s%s
    tags:
%s`, name, endpoint, mode, password, extra, tags.String())
	}
	// Aes256_Sha256_RsaPss with Sign only, and an absolute deadband of 5 on
	// a counter that moves by 1 every 100ms.
	aes := fmt.Sprintf(`
  - name: node-aes
    driver: opcua
    endpoint: %s
    mode: subscribe
    poll_interval: 200ms
    timeout: 5s
    reconnect_max: 2s
    security_policy: Aes256_Sha256_RsaPss
    security_mode: Sign
    auth: username
    username: gw
    password: ${OPCUA_PASSWORD}
    deadband_type: absolute
    deadband_value: 5
    tags:
      - {name: Counter, address: "nsu=urn:e2e:plc;s=Line1.Counter", type: uint32}
  - name: node-usercert
    driver: opcua
    endpoint: %[1]s
    mode: poll
    poll_interval: 200ms
    timeout: 5s
    reconnect_max: 2s
    auth: certificate
    user_certificate_file: %[2]s
    user_key_file: %[3]s
    tags:
      - {name: Counter, address: "nsu=urn:e2e:plc;s=Line1.Counter", type: uint32}
`, endpoint, userCert, userKeyFile)
	cfg := fmt.Sprintf(`
gateway: {id: gw-e2e-opcua, state_dir: %q}
producer:
  brokers: [%s]
  topic: %s
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
plcs:%s%s%s%s`, dir, strings.Join(brokers, ", "), topic,
		plc("node-sub", "subscribe", "password: ${OPCUA_PASSWORD}", ""),
		plc("node-poll", "poll", "password: ${OPCUA_PASSWORD}", ""),
		plc("node-wrongpw", "poll", "password_file: "+wrong, ""),
		aes)
	a := startAgent(t, writeConfig(t, dir, cfg))

	// Refused until trusted, with a message that says how.
	a.waitLog(t, "iot-producer opcua trust", 60*time.Second)
	m := fingerprintRe.FindStringSubmatch(a.log())
	if m == nil {
		t.Fatalf("the refusal gives no fingerprint:\n%s", a.log())
	}
	out, err := exec.Command(agentBin, "opcua", "trust", "-state-dir", dir, "-endpoint", endpoint, "-fingerprint", m[1]).CombinedOutput()
	if err != nil {
		t.Fatalf("opcua trust: %v\n%s", err, out)
	}
	t.Logf("opcua trust: %s", out)

	perRound := float64(len(scalars) + 2)
	a.waitReadAndAcked(t, "opcua:node-sub", 2*perRound, 120*time.Second)
	a.waitReadAndAcked(t, "opcua:node-poll", 10*perRound, 120*time.Second)
	a.waitLog(t, "BadUserAccessDenied", 30*time.Second)
	a.waitReadAndAcked(t, "opcua:node-aes", 5, 120*time.Second)
	a.waitReadAndAcked(t, "opcua:node-usercert", 5, 120*time.Second)
	// The server takes 8 items per subscription: the 22 need three.
	if subs, err := a.counter(`iot_driver_subscriptions{source="opcua:node-sub"}`); err != nil || subs != 3 {
		t.Errorf("node-sub has %v subscriptions (%v), want 3 (22 items, the server takes 8 per subscription)", subs, err)
	}

	// The server dies and comes back with the same certificate.
	before, err := a.counter(`iot_driver_recoveries_total`)
	if err != nil {
		t.Fatal(err)
	}
	srv.kill()
	a.waitLog(t, "opcua session failed; reconnecting", 60*time.Second)
	startNodeOPCUA(t, mods, port, pki)
	deadline := time.Now().Add(120 * time.Second)
	for {
		got, err := a.counter(`iot_driver_recoveries_total`)
		if err != nil {
			t.Fatal(err)
		}
		if got >= before+3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("recoveries %.0f after the restart, want %.0f:\n%s", got, before+3, a.log())
		}
		time.Sleep(200 * time.Millisecond) // scrape interval
	}
	generated, err := a.counter(`device_data_generated_total{source="opcua:node-poll"}`)
	if err != nil {
		t.Fatal(err)
	}
	a.waitReadAndAcked(t, "opcua:node-poll", generated+5*perRound, 120*time.Second)
	if code := a.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("agent exit code %d:\n%s", code, a.log())
	}

	all := readModbusTopic(t, brokers, topic)
	fixed := time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC)
	for _, device := range []string{"node-sub", "node-poll"} {
		byTag := map[string][]record.Fields{}
		for _, f := range all[device] {
			byTag[f.Tag] = append(byTag[f.Tag], f)
		}
		for _, s := range scalars {
			good := 0
			for _, f := range byTag[s.name] {
				if f.Quality != "good" {
					if !f.NoValue {
						t.Errorf("%s/%s: %s sample with a value", device, s.name, f.Quality)
					}
					continue
				}
				good++
				w := s.want
				if f.Type != w.Type || f.Bool != w.Bool || f.Int != w.Int || f.Uint != w.Uint || f.Float != w.Float || f.String != w.String {
					t.Errorf("%s/%s: got %s %v %d %d %v %q, want %s %v %d %d %v %q", device, s.name,
						f.Type, f.Bool, f.Int, f.Uint, f.Float, f.String, w.Type, w.Bool, w.Int, w.Uint, w.Float, w.String)
				}
				if !f.SourceTime.Equal(fixed) {
					t.Errorf("%s/%s: source time %s, want %s", device, s.name, f.SourceTime, fixed)
				}
			}
			if good == 0 {
				t.Errorf("%s/%s: no good sample", device, s.name)
			}
		}
		var goodFlaky, badFlaky, sensorFailed, goodCounter, badCounter int
		for _, f := range byTag["Flaky"] {
			switch {
			case f.Quality == "good" && f.Float == 21.5:
				goodFlaky++
				if f.Status != "" {
					t.Errorf("%s/Flaky: a good sample with status %q", device, f.Status)
				}
			case f.Quality == "bad" && f.NoValue:
				badFlaky++
				// The server's code, or the outage's (BadConnectionClosed…).
				if f.Status == "BadSensorFailure" {
					sensorFailed++
				} else if !strings.HasPrefix(f.Status, "Bad") {
					t.Errorf("%s/Flaky: a bad sample with status %q, want the code's name", device, f.Status)
				}
			default:
				t.Errorf("%s/Flaky: %s sample %v (never 9999, the value sent with the bad status)", device, f.Quality, f.Float)
			}
		}
		var last uint64
		for _, f := range byTag["Counter"] {
			if f.Quality != "good" {
				badCounter++
				continue
			}
			goodCounter++
			if f.SourceTime.IsZero() || f.Type != "uint" {
				t.Errorf("%s/Counter: %+v", device, f)
			}
			// The server starts counting again from 0 after its restart.
			last = f.Uint
		}
		t.Logf("%s: Flaky %d good, %d bad (%d BadSensorFailure); Counter %d good (last %d), %d bad (the outage)", device, goodFlaky, badFlaky, sensorFailed, goodCounter, last, badCounter)
		if goodFlaky == 0 || badFlaky == 0 || goodCounter == 0 || badCounter == 0 {
			t.Errorf("%s: want good and bad samples of Flaky and Counter", device)
		}
		if sensorFailed == 0 {
			t.Errorf("%s/Flaky: no record with status BadSensorFailure, the server's code", device)
		}
	}
	// The deadband: a counter that moves by 1 every 100ms arrives only when
	// it moved by more than 5 since the last value reported.
	var prev uint64
	var reported int
	for _, f := range all["node-aes"] {
		if f.Quality != "good" {
			prev = 0 // the restart starts the counter again
			continue
		}
		if prev != 0 && f.Uint > prev && f.Uint-prev <= 5 {
			t.Errorf("node-aes/Counter: %d after %d, within the deadband of 5", f.Uint, prev)
		}
		prev = f.Uint
		reported++
	}
	if reported < 3 {
		t.Errorf("node-aes: %d good Counter samples, want at least 3", reported)
	}
	userGood := 0
	for _, f := range all["node-usercert"] {
		if f.Quality == "good" {
			userGood++
		}
	}
	if userGood == 0 {
		t.Error("node-usercert: no good sample with a user certificate")
	}
	for _, f := range all["node-wrongpw"] {
		if f.Quality != "bad" {
			t.Fatalf("node-wrongpw: a %s sample with a wrong password: %+v", f.Quality, f)
		}
	}
}

// TestOPCUASessionLossAgainstNodeOPCUA: node-opcua closes every session
// and its subscriptions, as when they time out on the server; the
// clients' next requests get BadSessionIdInvalid. The agent rebuilds its
// sessions in both modes without a restart: the recoveries are counted,
// /ready shows the sessions connected again, the gap is a bad sample
// naming the status, and data resumes.
func TestOPCUASessionLossAgainstNodeOPCUA(t *testing.T) {
	brokers := kafkaBrokers(t)
	mods := nodeOPCUADir(t)
	dir := t.TempDir()
	const port = 25841
	srv := startNodeOPCUA(t, mods, port, filepath.Join(dir, "server-pki"))
	endpoint := fmt.Sprintf("opc.tcp://127.0.0.1:%d", port)
	t.Setenv("OPCUA_PASSWORD", "right-pass")
	topic := fmt.Sprintf("e2e-opcua-session-%d", time.Now().UnixNano())
	plc := func(name, mode string) string {
		return fmt.Sprintf(`
  - name: %s
    driver: opcua
    endpoint: %s
    mode: %s
    poll_interval: 200ms
    timeout: 5s
    watchdog: 5s
    reconnect_max: 2s
    trust_on_first_use: true
    auth: username
    username: gw
    password: ${OPCUA_PASSWORD}
    tags:
      - {name: Counter, address: "nsu=urn:e2e:plc;s=Line1.Counter", type: uint32}
`, name, endpoint, mode)
	}
	a := startAgent(t, writeConfig(t, dir, fmt.Sprintf(`
gateway: {id: gw-e2e-opcua-session, state_dir: %q}
producer:
  brokers: [%s]
  topic: %s
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
plcs:%s%s`, dir, strings.Join(brokers, ", "), topic, plc("session-sub", "subscribe"), plc("session-poll", "poll"))))
	a.waitReadAndAcked(t, "opcua:session-sub", 10, 120*time.Second)
	a.waitReadAndAcked(t, "opcua:session-poll", 10, 120*time.Second)
	before, err := a.counter("iot_driver_recoveries_total")
	if err != nil {
		t.Fatal(err)
	}
	closedAt := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	for closed := false; !closed; {
		select {
		case l := <-srv.lines:
			// node-opcua prints its warnings on stdout too.
			if strings.HasPrefix(l, "sessions closed ") {
				if l != "sessions closed 2" {
					t.Fatalf("node-opcua: %q, want sessions closed 2", l)
				}
				closed = true
			}
		case <-time.After(30 * time.Second):
			t.Fatal("node-opcua did not close the sessions within 30s")
		}
	}
	deadline := time.Now().Add(120 * time.Second)
	for {
		got, err := a.counter("iot_driver_recoveries_total")
		if err != nil {
			t.Fatal(err)
		}
		connected, err := a.counter("iot_driver_connected")
		if err != nil {
			t.Fatal(err)
		}
		if got >= before+2 && connected == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("recoveries %.0f (want %.0f), connected %.0f (want 2) after the sessions were closed:\n%s", got, before+2, connected, a.log())
		}
		time.Sleep(200 * time.Millisecond) // scrape interval
	}
	// /ready follows the sessions within its refresh period.
	for recovered := false; !recovered; {
		ready := a.ready(t)
		recovered = true
		for _, name := range []string{"source/opcua:session-sub", "source/opcua:session-poll"} {
			c, ok := ready[name]
			if !ok || c.State != "ok" || !strings.HasPrefix(c.Detail, "connected; ") || strings.HasSuffix(c.Detail, " 0 recoveries") {
				recovered = false
				if time.Now().After(deadline) {
					t.Fatalf("/ready %s: %+v, want ok, connected, recovered", name, c)
				}
			}
		}
		time.Sleep(200 * time.Millisecond) // /ready poll interval
	}
	for _, source := range []string{"opcua:session-sub", "opcua:session-poll"} {
		generated, err := a.counter(`device_data_generated_total{source="` + source + `"}`)
		if err != nil {
			t.Fatal(err)
		}
		a.waitReadAndAcked(t, source, generated+10, 120*time.Second)
	}
	if code := a.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("agent exit code %d:\n%s", code, a.log())
	}
	all := readModbusTopic(t, brokers, topic)
	for _, device := range []string{"session-sub", "session-poll"} {
		var good, after int
		gap := ""
		for _, f := range all[device] {
			switch {
			case f.Quality == "good" && f.ReadTime.Before(closedAt):
				good++
			case f.Quality == "good" && gap != "":
				after++
			case f.Quality == "bad" && f.NoValue && gap == "" && !f.ReadTime.Before(closedAt):
				gap = f.Status
			case f.Quality != "good" && !f.NoValue:
				t.Errorf("%s: a %s sample with a value: %+v", device, f.Quality, f)
			}
		}
		t.Logf("%s: %d good, the gap %q, %d good after it", device, good, gap, after)
		if good == 0 || after == 0 || gap != "BadSessionIdInvalid" {
			t.Errorf("%s: want good samples, a bad one of status BadSessionIdInvalid, good ones again", device)
		}
	}
	if t.Failed() {
		for _, l := range strings.Split(a.log(), "\n") {
			if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
				t.Log(l)
			}
		}
	}
}
