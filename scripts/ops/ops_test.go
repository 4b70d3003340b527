package ops

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/iot-producer/iot-producer/agent"
	"github.com/iot-producer/iot-producer/agent/config"
	_ "github.com/iot-producer/iot-producer/plugins/all"
)

// TestMain runs the kubectl stand-in (kubectl_test.go) when this binary is
// run under the name kubectl, and the tests otherwise.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "kubectl" {
		os.Exit(fakeKubectl(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// running is an agent started for the scripts, with where they find it.
type running struct {
	configFile, logFile     string
	metricsAddr, healthAddr string
	metricsPort, healthPort string
}

// startAgent runs an agent with the simulator and a kfake broker until the
// test ends, its configuration in a file as on a gateway.
func startAgent(t *testing.T) running {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "iot-ops"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	dir := t.TempDir()
	text := fmt.Sprintf(`
gateway: {id: gw-ops, state_dir: %q}
device: {count: 2, tags_per_device: 2, sample_interval: 20ms}
producer: {brokers: [%q], topic: iot-ops}
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0", pprof_listen: "off"}
`, dir, cluster.ListenAddrs()[0])
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(text), file)
	if err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "agent.log")
	logs, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logs.Close() })
	ready := make(chan struct{})
	a, err := agent.New(cfg, agent.Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), OnReady: func() { close(ready) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("agent stopped: %v", err)
	}
	// Wait until something was sent, so the numbers are not all zero.
	deadline := time.Now().Add(time.Minute)
	for !a.Health().Ready() || a.Buffer().Stats().Commits == 0 {
		if time.Now().After(deadline) {
			t.Fatal("agent not ready within a minute")
		}
		time.Sleep(10 * time.Millisecond) // polling the agent's state
	}
	_, mp, _ := net.SplitHostPort(a.Addrs().Metrics)
	_, hp, _ := net.SplitHostPort(a.Addrs().Health)
	return running{configFile: file, logFile: logFile, metricsAddr: a.Addrs().Metrics, healthAddr: a.Addrs().Health, metricsPort: mp, healthPort: hp}
}

// stubs writes systemctl and journalctl stand-ins into a directory for the
// PATH: a gateway's service manager, reporting the unit active and a
// journal holding one ERROR line.
func stubs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"systemctl": `#!/bin/sh
case "$1" in
is-active) echo active ;;
cat) echo "# /lib/systemd/system/iot-producer.service"; echo "[Service]" ;;
show) echo "NRestarts=0"; echo "MemoryCurrent=41943040" ;;
esac
`,
		"journalctl": `#!/bin/sh
case "$*" in
*--disk-usage*) echo "Archived and active journals take up 24.0M in the file system." ;;
*) echo 'time=2026-11-26T08:00:00Z level=INFO msg="agent started"'
   echo 'time=2026-11-26T09:00:00Z level=ERROR msg="buffer commit failed; samples held in memory and retried"' ;;
esac
`,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runScript runs a script of this folder with env added and returns its
// exit status and output.
func runScript(t *testing.T, script string, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command("./"+script, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s: %v", script, err)
		}
		code = ee.ExitCode()
	}
	return code, string(out)
}

// TestScriptsAgainstARunningAgent runs the runbook scripts against a
// running agent, as on a gateway without systemd (local) and with a
// service manager (systemd, with systemctl and journalctl stand-ins): each
// must report what it is for and exit with the status that says whether
// something needs attention.
func TestScriptsAgainstARunningAgent(t *testing.T) {
	ag := startAgent(t)
	backups, logs := t.TempDir(), t.TempDir()
	old := filepath.Join(logs, "agent.log")
	if err := os.WriteFile(old, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	week := time.Now().Add(-8 * 24 * time.Hour)
	if err := os.Chtimes(old, week, week); err != nil {
		t.Fatal(err)
	}
	base := []string{
		"IOT_HOST=127.0.0.1", "IOT_METRICS_PORT=" + ag.metricsPort, "IOT_HEALTH_PORT=" + ag.healthPort,
		"IOT_CONFIG=" + ag.configFile, "IOT_BACKUP_DIR=" + backups, "IOT_LOG_DIR=" + logs,
		"IOT_STATE_DIR=" + filepath.Dir(ag.configFile),
	}
	local := append(base[:len(base):len(base)], "IOT_MODE=local")
	systemd := append(base[:len(base):len(base)], "IOT_MODE=systemd", "PATH="+stubs(t)+":"+os.Getenv("PATH"))
	tests := []struct {
		name   string
		script string
		env    []string
		code   int
		want   []string
	}{
		{"daily, local", "daily_check.sh", local, 0, []string{
			"status: ready", "sink/kafka: ok", "/health: ok", "kafka_messages_sent_total", "kafka_producer_buffer_depth",
			`iot_uplink_state{sink="kafka",state="connected"} 1`, "=== all well ===",
		}},
		{"daily, systemd with an ERROR in the journal", "daily_check.sh", systemd, 1, []string{
			"iot-producer: active", "ERROR lines: 1", "needs attention", "1 ERROR lines in the last 24 hours",
		}},
		{"daily, nothing listening", "daily_check.sh", append(local[:len(local):len(local)], "IOT_HEALTH_PORT=1", "IOT_METRICS_PORT=1"), 1, []string{
			"/health does not answer", "/metrics does not answer",
		}},
		{"backup, local", "backup_config.sh", local, 0, []string{"backup done: " + backups, "config-", "effective-config-", "buffer-stats-"}},
		{"backup, systemd", "backup_config.sh", systemd, 0, []string{"unit-"}},
		{"weekly, local", "weekly_check.sh", local, 0, []string{
			"backup done", "resident memory:", "goroutines:", "records waiting:", "deleted 1 log files older than 7 days", "=== weekly check done ===",
		}},
		{"weekly, systemd", "weekly_check.sh", systemd, 0, []string{"NRestarts=0", "journals take up"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := runScript(t, tt.script, tt.env)
			t.Log(out)
			if code != tt.code {
				t.Errorf("exit status %d, want %d", code, tt.code)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q", w)
				}
			}
		})
	}

	// What the backups hold.
	check := func(glob, want string) {
		t.Helper()
		files, _ := filepath.Glob(filepath.Join(backups, glob))
		if len(files) == 0 {
			t.Fatalf("no %s in the backup", glob)
		}
		data, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), want) {
			t.Errorf("%s lacks %q:\n%s", files[0], want, data)
		}
		fi, _ := os.Stat(files[0])
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is %v: backups must be private to their owner", files[0], fi.Mode())
		}
	}
	check("config-*.yaml", "gw-ops")
	check("effective-config-*.json", "gw-ops")
	check("buffer-stats-*.txt", "iot_buffer_file_bytes")
	check("unit-*.service", "[Service]")
}

// TestScriptsInKubernetes runs the runbook scripts in their Kubernetes
// mode against a running agent, with the kubectl stand-in of
// kubectl_test.go in place of a cluster: they must find the mode by
// themselves, reach /ready, /metrics and /config through kubectl
// port-forward to the Service's ports, read the log of the Deployment, back
// up the ConfigMap, the Secret (private) and the Deployment, and leave no
// port-forward running.
func TestScriptsInKubernetes(t *testing.T) {
	ag := startAgent(t)
	kube := t.TempDir()
	bin := filepath.Join(kube, "bin")
	if err := os.MkdirAll(filepath.Join(kube, "manifests"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(bin, 0o700); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, filepath.Join(bin, "kubectl")); err != nil {
		t.Fatal(err)
	}
	// No systemd unit here, whatever the machine has: the scripts must
	// find the cluster by themselves.
	if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	deployment, err := os.ReadFile("../../k8s/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	config, err := os.ReadFile(ag.configFile)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"ports":                     "8080 " + ag.metricsAddr + "\n8081 " + ag.healthAddr + "\n",
		"log":                       "", // a link to the agent's log, below
		"config":                    string(config),
		"manifests/deployment.yaml": string(deployment),
	} {
		if name == "log" {
			if err := os.Symlink(ag.logFile, filepath.Join(kube, name)); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(filepath.Join(kube, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	backups := t.TempDir()
	env := []string{
		"PATH=" + bin + ":" + os.Getenv("PATH"), fakeKubeEnv + "=" + kube, "IOT_BACKUP_DIR=" + backups,
		// Where a gateway's files would be: none of them may be read in
		// Kubernetes.
		"IOT_CONFIG=/nonexistent/config.yaml", "IOT_LOG_DIR=/nonexistent", "IOT_STATE_DIR=/nonexistent",
	}
	tests := []struct {
		script string
		want   []string
		calls  []string
	}{
		{"daily_check.sh", []string{
			"mode k8s", "iot-producer-7d9f8c6b5-x2x4q   1/1     Running", "/health: ok", "status: ready", "sink/kafka: ok",
			"kafka_messages_sent_total", `iot_uplink_state{sink="kafka",state="connected"} 1`, "ERROR lines: 0", "=== all well ===",
		}, []string{
			"get namespace iot-monitoring",
			"get pods -n iot-monitoring -l app.kubernetes.io/name=iot-producer -o wide",
			"port-forward -n iot-monitoring svc/iot-producer-service ", ":8080", ":8081",
			"logs -n iot-monitoring deployment/iot-producer --since=24h",
		}},
		{"backup_config.sh", []string{"backup done: " + backups, "configmap-", "secret-", "deployment-", "effective-config-", "buffer-stats-"}, []string{
			"get -n iot-monitoring configmap/iot-producer-config -o yaml",
			"get -n iot-monitoring secret/iot-producer-secrets -o yaml",
			"get -n iot-monitoring deployment/iot-producer -o yaml",
		}},
		{"weekly_check.sh", []string{
			"mode k8s", "backup done", "resident memory:", "goroutines:", "kubectl top needs the metrics server",
			"RESTARTS", "records waiting:", "the pod's log is kept by the cluster", "=== weekly check done ===",
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.script, func(t *testing.T) {
			_ = os.Remove(filepath.Join(kube, "calls"))
			code, out := runScript(t, tt.script, env)
			t.Log(out)
			if code != 0 {
				t.Errorf("exit status %d, want 0", code)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q", w)
				}
			}
			data, err := os.ReadFile(filepath.Join(kube, "calls"))
			if err != nil {
				t.Fatalf("kubectl was never called: %v", err)
			}
			calls := string(data)
			for _, w := range tt.calls {
				if !strings.Contains(calls, w) {
					t.Errorf("no kubectl call with %q; calls:\n%s", w, calls)
				}
			}
			// Every port-forward the script started is gone.
			for line := range strings.SplitSeq(calls, "\n") {
				f := strings.Fields(line)
				if len(f) != 5 || f[0] != "port-forward" {
					continue
				}
				local, _, _ := strings.Cut(f[4], ":")
				if c, err := net.Dial("tcp", "127.0.0.1:"+local); err == nil {
					c.Close()
					t.Errorf("the port-forward on %s still runs after the script", local)
				}
			}
		})
	}

	check := func(glob, want string, private bool) {
		t.Helper()
		files, _ := filepath.Glob(filepath.Join(backups, glob))
		if len(files) == 0 {
			t.Fatalf("no %s in the backup", glob)
		}
		data, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), want) {
			t.Errorf("%s lacks %q:\n%s", files[0], want, data)
		}
		if fi, _ := os.Stat(files[0]); private && fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is %v: it must be private to its owner", files[0], fi.Mode())
		}
	}
	check("configmap-*.yaml", "gw-ops", true)
	check("secret-*.yaml", "db-password", true)
	check("deployment-*.yaml", "kind: Deployment", true)
	// Through the port-forward, from the running agent itself.
	check("effective-config-*.json", "gw-ops", true)
	check("buffer-stats-*.txt", "iot_buffer_file_bytes", true)
}
