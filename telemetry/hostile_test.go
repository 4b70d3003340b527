package telemetry

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The hostile-client test runs the telemetry server in a child process (this
// test binary started again with hostileServerEnv set), so that the child's
// resident memory is the server's alone, and attacks it over loopback.
const (
	hostileServerEnv = "TELEMETRY_HOSTILE_SERVER"
	// hostileReadTimeout is the child's ReadTimeout: short, so the test is.
	hostileReadTimeout = time.Second
	// closeSlack is how long past the read timeout a connection may stay
	// open before the test calls it held: scheduling on a loaded machine,
	// never the 80 s and more of an unbounded server.
	closeSlack = 4 * time.Second
	// maxFailedProbesInARow is the liveness probe's failureThreshold in
	// k8s/deployment.yaml: that many failures in a row restart the pod.
	maxFailedProbesInARow = 3
)

// runHostileServer is the child: it serves the telemetry endpoints on free
// loopback ports, prints their addresses and serves until stdin closes.
func runHostileServer() int {
	h := NewHealth()
	h.Set("buffer", StateOK, "open")
	s := NewServer(ServerOptions{
		MetricsAddr: loopbackAny, HealthAddr: loopbackAny, PprofAddr: loopbackAny,
		Metrics: NewMetrics(), Health: h, Config: func() any { return map[string]string{"k": "v"} },
		ReadTimeout: hostileReadTimeout,
	})
	if err := s.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	a := s.Addrs()
	fmt.Printf("%s %s %s\n", a.Metrics, a.Health, a.Pprof)
	_, _ = io.Copy(io.Discard, os.Stdin)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// hostileChild is the running child server.
type hostileChild struct {
	cmd                    *exec.Cmd
	metrics, health, pprof string
}

func startHostileChild(t *testing.T) *hostileChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), hostileServerEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("child server: %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Error("child server did not stop within 30s of its stdin closing")
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the child's addresses: %v", err)
	}
	f := strings.Fields(line)
	if len(f) != 3 {
		t.Fatalf("child printed %q, want three addresses", line)
	}
	return &hostileChild{cmd: cmd, metrics: f[0], health: f[1], pprof: f[2]}
}

// rss returns the child's resident memory in bytes.
func (c *hostileChild) rss() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS in /proc/pid/status")
}

// attack is one kind of hostile client: open a connection to addr, do its
// harm, and report how long the server took to close the connection (or an
// error if it was still open after the read timeout and closeSlack).
type attack struct {
	name  string
	conns int
	// harm runs on a fresh connection.
	harm func(c net.Conn) error
}

// waitClosed reads from c until the server closes it, and fails if that
// takes longer than the read timeout plus closeSlack (counted from start).
func waitClosed(c net.Conn, start time.Time) error {
	limit := start.Add(hostileReadTimeout + closeSlack)
	_ = c.SetReadDeadline(limit)
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("connection still open %v after it was opened", time.Since(start).Round(time.Millisecond))
	}
	return nil // EOF or reset: closed by the server
}

func TestHostileClients(t *testing.T) {
	if testing.Short() {
		t.Skip("starts thousands of connections; skipped with -short")
	}
	child := startHostileChild(t)
	baselineKB, err := child.rss()
	if err != nil {
		t.Fatal(err)
	}
	baseline := baselineKB << 10

	var (
		probesOK, probesFailed  atomic.Int64
		failRun, longestFailRun atomic.Int64 // consecutive failed probes
		maxRSS                  atomic.Int64
		firstProbeErr           atomic.Value
		phase                   atomic.Value
	)
	phase.Store("before the attacks")
	maxRSS.Store(baseline)
	stop := make(chan struct{})
	var bg sync.WaitGroup
	// /health must keep answering throughout, each probe on a new
	// connection as a kubelet's would.
	prober := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	bg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			resp, err := prober.Get("http://" + child.health + "/health")
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %s", resp.Status)
				}
			}
			if err != nil {
				probesFailed.Add(1)
				if run := failRun.Add(1); run > longestFailRun.Load() {
					longestFailRun.Store(run)
				}
				firstProbeErr.CompareAndSwap(nil, fmt.Errorf("during %v: %w", phase.Load(), err))
				t.Logf("probe failed during %v: %v", phase.Load(), err)
				continue
			}
			probesOK.Add(1)
			failRun.Store(0)
		}
	})
	bg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if kb, err := child.rss(); err == nil && kb<<10 > maxRSS.Load() {
				maxRSS.Store(kb << 10)
			}
		}
	})

	bigHeader := bytes.Repeat([]byte("a"), 1<<20)
	attacks := []attack{
		{"incomplete 1 MiB header", 200, func(c net.Conn) error {
			if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Fill: "); err != nil {
				return nil // already closed
			}
			_, _ = c.Write(bigHeader) // fails once the server answers 431 and closes
			return nil
		}},
		{"slow body", 2000, func(c net.Conn) error {
			_, _ = io.WriteString(c, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\nx")
			return nil
		}},
		{"slow header", 200, func(c net.Conn) error {
			for _, b := range []byte("GET /health HTTP/1.1\r\nHost: x\r\n") {
				if _, err := c.Write([]byte{b}); err != nil {
					return nil
				}
				time.Sleep(100 * time.Millisecond) // the attack is slowness itself
			}
			return nil
		}},
		{"idle", 2000, func(net.Conn) error { return nil }},
	}
	for _, a := range attacks {
		for _, target := range []struct{ name, addr string }{{"metrics", child.metrics}, {"health", child.health}} {
			t.Run(a.name+" on "+target.name, func(t *testing.T) {
				phase.Store(a.name + " on " + target.name)
				var wg sync.WaitGroup
				var held, dialFailed atomic.Int64
				var firstErr atomic.Value
				for range a.conns {
					wg.Go(func() {
						start := time.Now()
						c, err := net.DialTimeout("tcp", target.addr, 5*time.Second)
						if err != nil {
							dialFailed.Add(1)
							return
						}
						defer c.Close()
						go func() { _ = a.harm(c) }()
						if err := waitClosed(c, start); err != nil {
							held.Add(1)
							firstErr.CompareAndSwap(nil, err)
						}
					})
				}
				wg.Wait()
				if n := held.Load(); n > 0 {
					t.Errorf("%d of %d connections held open past the read timeout (%v + %v); first: %v",
						n, a.conns, hostileReadTimeout, closeSlack, firstErr.Load())
				}
				t.Logf("%d connections, %d dials refused, peak child RSS %.1f MiB (baseline %.1f MiB)",
					a.conns, dialFailed.Load(), float64(maxRSS.Load())/(1<<20), float64(baseline)/(1<<20))
			})
		}
	}
	close(stop)
	bg.Wait()

	if growth := maxRSS.Load() - baseline; growth > rssGrowthBound {
		t.Errorf("child RSS grew by %.1f MiB under attack (from %.1f MiB), bound %d MiB",
			float64(growth)/(1<<20), float64(baseline)/(1<<20), rssGrowthBound>>20)
	}
	// A kubelet restarts the pod after failureThreshold (3 in k8s/)
	// probes in a row fail. A probe whose client was not scheduled within
	// the listener's shed grace on a loaded machine can lose its
	// connection to the flood; the next one must get through.
	if n := longestFailRun.Load(); n >= maxFailedProbesInARow {
		t.Errorf("/health failed %d probes in a row under attack (%d of %d in all); first: %v",
			n, probesFailed.Load(), probesFailed.Load()+probesOK.Load(), firstProbeErr.Load())
	}
	if probesOK.Load() == 0 {
		t.Error("no /health probe answered")
	}
	t.Logf("/health answered %d probes, %d failed; child RSS peak %.1f MiB from %.1f MiB",
		probesOK.Load(), probesFailed.Load(), float64(maxRSS.Load())/(1<<20), float64(baseline)/(1<<20))
}
