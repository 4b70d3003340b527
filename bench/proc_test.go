package bench

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// agentProc is the agent binary running in a process of its own, so that
// its CPU time (/proc/<pid>/stat) and anonymous memory (/proc/<pid>/status)
// are the agent's alone: the load (Modbus devices) and the broker run in
// other processes.
type agentProc struct {
	b       *testing.B
	cmd     *exec.Cmd
	metrics string // host:port of /metrics
	pprof   string // host:port of /debug/pprof, "" when off
}

// modbusAgentConfig returns an agent configuration polling one Modbus TCP
// endpoint per address, registers uint16 holding registers each (one
// request), every interval, into the buffer under dir and the topic at
// brokers. extra is appended to the file as is. For trying settings
// other than the defaults, the environment variable BENCH_PRODUCER adds
// keys to the producer section ("flush_interval: 2ms, worker_count: 8")
// and BENCH_CONFIG whole sections ("buffer: {commit_interval: 2ms}");
// BENCH_AGENT_ENV sets variables in the agent's environment alone
// ("GOGC=100 GOMAXPROCS=1"), not in the devices' or the broker's.
func modbusAgentConfig(dir string, brokers []string, topic string, addrs []string, registers int, interval time.Duration, extra string) string {
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "gateway: {id: gw-bench, state_dir: %q}\n", dir)
	producer := ""
	if v := os.Getenv("BENCH_PRODUCER"); v != "" {
		producer = ", " + v
	}
	fmt.Fprintf(&cfg, "producer: {brokers: [%s], topic: %s%s}\n", strings.Join(brokers, ", "), topic, producer)
	cfg.WriteString(extra)
	if v := os.Getenv("BENCH_CONFIG"); v != "" {
		cfg.WriteString(v + "\n")
	}
	cfg.WriteString("plcs:\n")
	for i, a := range addrs {
		fmt.Fprintf(&cfg, "  - name: dev-%04d\n    driver: modbus\n    endpoint: %q\n", i, a)
		if i == 0 {
			fmt.Fprintf(&cfg, "    poll_interval: %s\n", interval)
			cfg.WriteString("    tags: &tags\n")
			for r := range registers {
				fmt.Fprintf(&cfg, "      - {name: r%d, address: \"%d\", register: holding, type: uint16}\n", r, r)
			}
		} else {
			fmt.Fprintf(&cfg, "    poll_interval: %s\n", interval)
			cfg.WriteString("    tags: *tags\n")
		}
	}
	return cfg.String()
}

// startAgent writes cfg to dir/config.yaml and runs the agent binary on
// it until the benchmark ends.
func startAgent(b *testing.B, bin, dir, cfg string) *agentProc {
	b.Helper()
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "-c", cfgPath)
	if v := os.Getenv("BENCH_AGENT_ENV"); v != "" {
		cmd.Env = append(os.Environ(), strings.Fields(v)...)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
	started := make(chan [2]string, 1)
	exited := make(chan string, 1)
	go func() {
		var log strings.Builder
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if m := startedLine.FindStringSubmatch(line); m != nil {
				p := ""
				if i := strings.Index(line, " pprof="); i >= 0 {
					p = strings.Fields(line[i+len(" pprof="):])[0]
				}
				started <- [2]string{m[1], p}
			}
			if log.Len() < 1<<16 {
				log.WriteString(line + "\n")
			}
		}
		exited <- log.String()
	}()
	select {
	case a := <-started:
		return &agentProc{b: b, cmd: cmd, metrics: a[0], pprof: a[1]}
	case log := <-exited:
		b.Fatalf("agent exited before it started:\n%s", log)
	case <-time.After(120 * time.Second):
		b.Fatal("agent did not start within 120s")
	}
	return nil
}

// pid returns the agent's process id.
func (a *agentProc) pid() int { return a.cmd.Process.Pid }

// cpu returns the agent's user+system CPU time so far.
func (a *agentProc) cpu() time.Duration { return procCPU(a.b, a.pid()) }

// rssAnon returns the agent's anonymous resident memory in bytes.
func (a *agentProc) rssAnon() float64 { return rssAnon(a.b, a.pid()) }

// scrape sums the series of the named metric on the agent's /metrics.
func (a *agentProc) scrape(name string) float64 {
	a.b.Helper()
	resp, err := http.Get("http://" + a.metrics + "/metrics")
	if err != nil {
		a.b.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			sum += v
		}
	}
	return sum
}

// cpuProfile fetches a CPU profile of the agent over d into path.
func (a *agentProc) cpuProfile(d time.Duration, path string) error {
	return a.profile("profile", d, path)
}

// profile fetches the named pprof profile of the agent (over d for a CPU
// profile) into path.
func (a *agentProc) profile(name string, d time.Duration, path string) error {
	if a.pprof == "" {
		return fmt.Errorf("pprof is off")
	}
	c := http.Client{Timeout: d + 30*time.Second}
	url := fmt.Sprintf("http://%s/debug/pprof/%s", a.pprof, name)
	if d > 0 {
		url += fmt.Sprintf("?seconds=%d", int(d.Seconds()))
	}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
