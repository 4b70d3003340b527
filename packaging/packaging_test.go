package packaging

import (
	"bufio"
	_ "github.com/iot-producer/iot-producer/plugins/all"
	"github.com/iot-producer/iot-producer/uplink/kafka"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/iot-producer/iot-producer/agent/config"
)

const (
	unitFile  = "../systemd/iot-producer.service"
	stateDir  = "/var/lib/iot-producer"
	confPath  = "/etc/iot-producer/config.yaml"
	binPath   = "/usr/bin/iot-producer"
	unitPath  = "/lib/systemd/system/iot-producer.service"
	serviceID = "iot-producer"
)

// TestDefaultConfig loads the packaged /etc/iot-producer/config.yaml as the
// agent would, under systemd (STATE_DIRECTORY set) and by hand (unset).
func TestDefaultConfig(t *testing.T) {
	for _, tc := range []struct {
		name     string
		stateEnv string // "" leaves STATE_DIRECTORY unset
	}{
		{"by hand", ""},
		{"under systemd", stateDir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("STATE_DIRECTORY", tc.stateEnv)
			t.Setenv("KAFKA_BROKERS", "")
			if tc.stateEnv == "" {
				os.Unsetenv("STATE_DIRECTORY")
			}
			os.Unsetenv("KAFKA_BROKERS")
			cfg, err := config.Load("config.yaml")
			if err != nil {
				t.Fatalf("the packaged config.yaml does not load:\n%v", err)
			}
			if cfg.Device.Enabled == nil || !*cfg.Device.Enabled {
				t.Error("the simulator should be on: a fresh install runs out of the box")
			}
			if !slices.Equal(cfg.Sink("producer").Settings.(*kafka.Config).Brokers, []string{"localhost:9092"}) {
				t.Errorf("brokers = %v, want [localhost:9092]", cfg.Sink("producer").Settings.(*kafka.Config).Brokers)
			}
			if cfg.Gateway.StateDir != stateDir || cfg.Buffer.Path != stateDir+"/buffer.db" {
				t.Errorf("state_dir %s, buffer %s; want %s/buffer.db (the unit's StateDirectory)", cfg.Gateway.StateDir, cfg.Buffer.Path, stateDir)
			}
			if cfg.Telemetry.MetricsListen != ":8080" || cfg.Telemetry.HealthListen != ":8081" ||
				cfg.Telemetry.PprofListen != "127.0.0.1:6060" {
				t.Errorf("telemetry %+v, want the ops manual's ports and pprof on loopback", cfg.Telemetry)
			}
		})
	}
}

// unit reads a systemd unit: every value of every Section.Key, in order.
func unit(t *testing.T, file string) map[string][]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value in a section: %q", file, n, line)
			}
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestUnit checks the unit against the agent's behaviour and the package's
// paths.
func TestUnit(t *testing.T) {
	u := unit(t, unitFile)
	for _, tc := range []struct{ key, want string }{
		{"Service.Type", "notify"},
		{"Service.NotifyAccess", "main"},
		{"Service.WatchdogSec", "30s"},
		{"Service.ExecStart", binPath + " run -c " + confPath},
		{"Service.ExecReload", "/bin/kill -HUP $MAINPID"},
		{"Service.Restart", "on-failure"},
		{"Service.RestartSec", "5s"},
		{"Service.RestartSteps", "8"},
		{"Service.RestartMaxDelaySec", "5min"},
		{"Unit.StartLimitIntervalSec", "0"},
		// run exits 78 (EX_CONFIG) for a refused configuration; 2 is a
		// panic or the watchdog's SIGABRT, which must be restarted.
		{"Service.RestartPreventExitStatus", "78"},
		{"Service.TimeoutStopSec", "30s"},
		{"Service.User", serviceID},
		{"Service.Group", serviceID},
		{"Service.StateDirectory", filepath.Base(stateDir)},
		{"Service.UMask", "0077"},
		{"Service.LimitNOFILE", "4096"},
		{"Service.DevicePolicy", "closed"},
		{"Service.PrivateMounts", "yes"},
		{"Service.ProtectProc", "invisible"},
		{"Service.RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"},
		{"Service.ProtectSystem", "strict"},
		{"Service.ProtectHome", "yes"},
		{"Service.PrivateTmp", "yes"},
		{"Service.NoNewPrivileges", "yes"},
		{"Service.AmbientCapabilities", ""},
		{"Service.CapabilityBoundingSet", ""},
		{"Install.WantedBy", "multi-user.target"},
	} {
		got, ok := u[tc.key]
		if !ok {
			t.Errorf("%s is not set, want %q", tc.key, tc.want)
			continue
		}
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s = %q, want %q", tc.key, got, tc.want)
		}
	}
	if _, ok := u["Service.MemoryMax"]; !ok {
		t.Error("MemoryMax is not set")
	}
	// Serial ports for Modbus RTU, and no other device.
	wantDevices := []string{"char-ttyS rw", "char-ttyUSB rw", "char-ttyACM rw", "char-ttyAMA rw"}
	if got := u["Service.DeviceAllow"]; !slices.Equal(got, wantDevices) {
		t.Errorf("DeviceAllow = %q, want %q", got, wantDevices)
	}
	if got := u["Service.SystemCallFilter"]; !slices.Equal(got, []string{"@system-service", "~@privileged @resources"}) {
		t.Errorf("SystemCallFilter = %q", got)
	}
	// Neither a start limit that leaves the unit failed for good, nor a
	// validation in ExecStartPre= (RestartPreventExitStatus= does not apply
	// to it, so a refused file would be retried), nor a redundant path.
	for _, k := range []string{"Unit.StartLimitBurst", "Service.ExecStartPre", "Service.ReadWritePaths", "Service.SupplementaryGroups"} {
		if v, ok := u[k]; ok {
			t.Errorf("%s = %q, want it unset", k, v)
		}
	}
}

// nfpmConfig is the part of nfpm.yaml this test reads.
type nfpmConfig struct {
	Name          string `yaml:"name"`
	Arch          string `yaml:"arch"`
	Version       string `yaml:"version"`
	VersionSchema string `yaml:"version_schema"`
	Contents      []struct {
		Src    string `yaml:"src"`
		Dst    string `yaml:"dst"`
		Type   string `yaml:"type"`
		Expand bool   `yaml:"expand"`
	} `yaml:"contents"`
	Scripts map[string]string `yaml:"scripts"`
}

// TestNfpmConfig checks that nfpm.yaml installs what the unit and the agent
// expect, and that every file it names exists.
func TestNfpmConfig(t *testing.T) {
	data, err := os.ReadFile("nfpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var n nfpmConfig
	if err := yaml.Unmarshal(data, &n); err != nil {
		t.Fatalf("nfpm.yaml: %v", err)
	}
	if n.Name != serviceID || n.Arch != "${DEB_ARCH}" || n.Version != "${DEB_VERSION}" || n.VersionSchema != "none" {
		t.Errorf("name/arch/version/version_schema = %q/%q/%q/%q; package.mk sets DEB_ARCH and a ready Debian DEB_VERSION",
			n.Name, n.Arch, n.Version, n.VersionSchema)
	}
	dst := map[string]string{} // destination -> "src type"
	for _, c := range n.Contents {
		dst[c.Dst] = c.Src + " " + c.Type
		if c.Src != "" && !c.Expand {
			if _, err := os.Stat(filepath.Join("..", c.Src)); err != nil {
				t.Errorf("contents: %s -> %s: %v", c.Src, c.Dst, err)
			}
		}
	}
	for _, tc := range []struct{ dst, want string }{
		{binPath, "${IOT_PRODUCER_BIN} "},
		{confPath, "packaging/config.yaml config|noreplace"},
		{"/etc/default/iot-producer", "packaging/iot-producer.default config|noreplace"},
		{unitPath, "systemd/iot-producer.service "},
	} {
		if got, ok := dst[tc.dst]; !ok || got != tc.want {
			t.Errorf("%s comes from %q, want %q", tc.dst, got, tc.want)
		}
	}
	// The unit runs and validates what the package installs.
	u := unit(t, unitFile)
	for _, k := range []string{"Service.ExecStart"} {
		if v := u[k]; len(v) != 1 || !strings.HasPrefix(v[0], binPath+" ") || !strings.HasSuffix(v[0], " -c "+confPath) {
			t.Errorf("%s = %q: not the packaged binary and configuration", k, v)
		}
	}
	// The environment file the unit reads is the one the package ships.
	if v := u["Service.EnvironmentFile"]; len(v) != 1 || strings.TrimPrefix(v[0], "-") != "/etc/default/iot-producer" {
		t.Errorf("EnvironmentFile = %q, want -/etc/default/iot-producer", v)
	}
	for _, s := range []string{"postinstall", "preremove", "postremove"} {
		file := n.Scripts[s]
		if file == "" {
			t.Errorf("scripts.%s is not set", s)
			continue
		}
		fi, err := os.Stat(filepath.Join("..", file))
		if err != nil {
			t.Errorf("scripts.%s: %v", s, err)
			continue
		}
		if fi.Mode()&0o111 == 0 {
			t.Errorf("scripts.%s: %s is not executable", s, file)
		}
		if out, err := exec.Command("sh", "-n", filepath.Join("..", file)).CombinedOutput(); err != nil {
			t.Errorf("scripts.%s: sh -n: %v\n%s", s, err, out)
		}
	}
}

// TestDebVersion checks the mapping of `git describe` output to Debian
// versions.
func TestDebVersion(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"v1.2.3", "1.2.3"},
		{"1.2.3", "1.2.3"},
		{"v1.2.3-rc.1", "1.2.3~rc.1"},
		{"v1.2.3-5-gabc1234", "1.2.3+git5.gabc1234"},
		{"v1.2.3-5-gabc1234-dirty", "1.2.3+git5.gabc1234.dirty"},
		{"v1.2.3-dirty", "1.2.3+dirty"},
		{"v1.2.3-rc.1-2-gdeadbee", "1.2.3~rc.1+git2.gdeadbee"},
		{"abc1234", "0~git.abc1234"},
		{"4b05659-dirty", "0~git.4b05659.dirty"}, // a hash that starts with a digit
		{"dev", "0~dev"},
		{"", "0~dev"},
		{"feature/x_y", "0~git.feature.x.y"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			out, err := exec.Command("sh", "debversion.sh", tc.in).CombinedOutput()
			if err != nil {
				t.Fatalf("debversion.sh %q: %v\n%s", tc.in, err, out)
			}
			if got := strings.TrimSpace(string(out)); got != tc.want {
				t.Errorf("debversion.sh %q = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
