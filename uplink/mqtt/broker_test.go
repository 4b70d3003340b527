package mqtt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iot-producer/iot-producer/record"
)

// mosquittoBin is Debian's broker, installed by scripts/ci-deps.sh.
const mosquittoBin = "/usr/sbin/mosquitto"

// broker is a Mosquitto started by a test on a loopback port of the range
// this package's tests use (25000-25999).
type broker struct {
	t    *testing.T
	dir  string
	port int
	conf string
	cmd  *exec.Cmd
	log  *os.File
}

// brokerConf is the part of mosquitto.conf after the listener line.
type brokerConf struct {
	persist  bool   // keep sessions and messages across restarts
	tls      *pki   // TLS listener requiring a client certificate
	password string // "user:password" required
}

func startBroker(t *testing.T, bc brokerConf) *broker {
	t.Helper()
	if _, err := os.Stat(mosquittoBin); err != nil {
		t.Fatalf("mosquitto is not installed (scripts/ci-deps.sh installs it): %v", err)
	}
	b := &broker{t: t, dir: t.TempDir(), port: freePort(t)}
	var conf strings.Builder
	// user root: when run as root, keep it (the files are the test's);
	// without root the setting has no effect.
	fmt.Fprintf(&conf, "user root\nper_listener_settings false\nlistener %d 127.0.0.1\n", b.port)
	if bc.persist {
		fmt.Fprintf(&conf, "persistence true\npersistence_location %s/\nautosave_interval 1\n", b.dir)
	} else {
		conf.WriteString("persistence false\n")
	}
	if bc.tls != nil {
		fmt.Fprintf(&conf, "cafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\n", bc.tls.caFile, bc.tls.serverCert, bc.tls.serverKey)
	}
	if bc.password != "" {
		user, pw, _ := strings.Cut(bc.password, ":")
		pwFile := filepath.Join(b.dir, "passwd")
		if out, err := exec.Command("mosquitto_passwd", "-c", "-b", pwFile, user, pw).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd: %v: %s", err, out)
		}
		fmt.Fprintf(&conf, "allow_anonymous false\npassword_file %s\n", pwFile)
	} else {
		conf.WriteString("allow_anonymous true\n")
	}
	conf.WriteString("max_queued_messages 0\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n")
	b.conf = filepath.Join(b.dir, "mosquitto.conf")
	if err := os.WriteFile(b.conf, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	b.start()
	t.Cleanup(func() {
		b.stop()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(b.dir, "mosquitto.log"))
			t.Logf("mosquitto log:\n%s", log)
		}
	})
	return b
}

// addr is the broker's URL.
func (b *broker) addr() string {
	scheme := "tcp"
	if strings.Contains(b.confText(), "certfile") {
		scheme = "ssl"
	}
	return fmt.Sprintf("%s://127.0.0.1:%d", scheme, b.port)
}

func (b *broker) hostPort() string { return fmt.Sprintf("127.0.0.1:%d", b.port) }

func (b *broker) confText() string {
	c, _ := os.ReadFile(b.conf)
	return string(c)
}

// start runs the broker and waits until its port accepts connections.
func (b *broker) start() {
	b.t.Helper()
	f, err := os.OpenFile(filepath.Join(b.dir, "mosquitto.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		b.t.Fatal(err)
	}
	b.log = f
	b.cmd = exec.Command(mosquittoBin, "-c", b.conf)
	b.cmd.Stdout, b.cmd.Stderr = f, f
	if err := b.cmd.Start(); err != nil {
		b.t.Fatalf("start mosquitto: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", b.hostPort(), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(f.Name())
			b.t.Fatalf("mosquitto did not listen on %s: %v\n%s", b.hostPort(), err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop terminates the broker (it saves its sessions when persistent).
func (b *broker) stop() {
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		<-done
	}
	b.cmd = nil
	b.log.Close()
}

var portMu sync.Mutex
var nextPort = 25000 + os.Getpid()%500

// freePort returns a free port of 25000-25999.
func freePort(t *testing.T) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for range 1000 {
		p := nextPort
		nextPort++
		if nextPort > 25999 {
			nextPort = 25000
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		return p
	}
	t.Fatal("no free port in 25000-25999")
	return 0
}

// subscriber collects what a topic filter receives, on a persistent QoS 1
// session of its own.
type subscriber struct {
	mu   sync.Mutex
	msgs []paho.Message
	cl   paho.Client
	ch   chan struct{}
}

func subscribe(t *testing.T, url, filter string, o func(*paho.ClientOptions)) *subscriber {
	t.Helper()
	s := &subscriber{ch: make(chan struct{}, 1)}
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("test-sub-%d", time.Now().UnixNano())).
		SetCleanSession(false).SetAutoReconnect(true).SetMaxReconnectInterval(200 * time.Millisecond).
		SetOrderMatters(true).SetResumeSubs(true)
	if o != nil {
		o(opts)
	}
	opts.SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
		s.mu.Lock()
		s.msgs = append(s.msgs, m)
		s.mu.Unlock()
		select {
		case s.ch <- struct{}{}:
		default:
		}
	})
	s.cl = paho.NewClient(opts)
	if tok := s.cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	if tok := s.cl.Subscribe(filter, 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	t.Cleanup(func() { s.cl.Disconnect(100) })
	return s
}

// wait returns the messages once there are at least n, failing the test
// after a minute.
func (s *subscriber) wait(t *testing.T, n int) []paho.Message {
	t.Helper()
	return s.waitFor(t, n, func(msgs []paho.Message) int { return len(msgs) })
}

// waitDistinct returns the messages once n distinct records (device and
// seq) have arrived; duplicates come with at-least-once delivery.
func (s *subscriber) waitDistinct(t *testing.T, n int) []paho.Message {
	t.Helper()
	return s.waitFor(t, n, func(msgs []paho.Message) int {
		seen := map[string]bool{}
		for _, m := range msgs {
			f, err := record.Decode(m.Payload())
			if err != nil {
				t.Fatalf("message on %s: %v", m.Topic(), err)
			}
			seen[fmt.Sprintf("%s/%d", f.Device, f.Seq)] = true
		}
		return len(seen)
	})
}

func (s *subscriber) waitFor(t *testing.T, n int, count func([]paho.Message) int) []paho.Message {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		s.mu.Lock()
		got := count(s.msgs)
		if got >= n {
			out := append([]paho.Message(nil), s.msgs...)
			s.mu.Unlock()
			return out
		}
		s.mu.Unlock()
		select {
		case <-s.ch:
		case <-deadline:
			t.Fatalf("subscriber got %d messages, want %d", got, n)
		}
	}
}

// pki is a CA with a server certificate for 127.0.0.1 and a client
// certificate, as PEM files.
type pki struct {
	caFile, serverCert, serverKey, clientCert, clientKey string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := &pki{caFile: filepath.Join(dir, "ca.pem")}
	writePEM(t, p.caFile, "CERTIFICATE", caDER)
	issue := func(name string, serial int64, usage x509.ExtKeyUsage, ips []net.IP) (string, string) {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips, KeyUsage: x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		cert, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
		writePEM(t, cert, "CERTIFICATE", der)
		writePEM(t, keyFile, "EC PRIVATE KEY", kder)
		return cert, keyFile
	}
	p.serverCert, p.serverKey = issue("server", 2, x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	p.clientCert, p.clientKey = issue("client", 3, x509.ExtKeyUsageClientAuth, nil)
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	// Mosquitto drops privileges when started as root: the files must be
	// readable by its user.
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}
