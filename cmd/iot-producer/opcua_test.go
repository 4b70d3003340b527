package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/iot-producer/iot-producer/drivers/opcua"
	simopcua "github.com/iot-producer/iot-producer/simulator/opcua"
)

func startOPCUASim(t *testing.T) *simopcua.Server {
	t.Helper()
	s, err := simopcua.New(simopcua.Options{Secure: true, Devices: 1, TagsPerDevice: 2, Types: true, ExtraNamespaces: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestOPCUACommands(t *testing.T) {
	sim := startOPCUASim(t)
	state := t.TempDir()
	insecure := []string{"-endpoint", sim.Endpoint(), "-security-policy", "None", "-allow-insecure", "-state-dir", state}
	for _, c := range []struct {
		name string
		args []string
		code int
		out  []string
	}{
		{"browse", append([]string{"opcua", "browse", "-depth", "1", "-snippet"}, insecure...), exitOK, []string{
			"nsu=urn:iot-producer:simulator;s=sim-0001.temperature", "3:temperature", "Variable", "Double", "read",
			"nsu=urn:iot-producer:simulator;s=types.Int64", "Int64",
			"- name: plc-1", "    - name: UInt64\n      address: \"nsu=urn:iot-producer:simulator;s=types.UInt64\"\n      type: uint64",
		}},
		{"read by uri", append([]string{"opcua", "read", "-node", "nsu=urn:iot-producer:simulator;s=types.UInt64"}, insecure...), exitOK, []string{
			"status:      Good (good)", "value:       18446744073709551614 (uint)", "source time:",
		}},
		{"read a path", append([]string{"opcua", "read", "-node", "3:types/3:Float"}, insecure...), exitOK, []string{
			"value:       0.1 (float)",
		}},
		{"none refused", []string{"opcua", "read", "-node", "i=2259", "-endpoint", sim.Endpoint(), "-security-policy", "None", "-state-dir", state}, exitFailure, []string{
			"security_policy: None neither signs nor encrypts",
		}},
		{"untrusted", []string{"opcua", "read", "-node", "i=2259", "-endpoint", sim.Endpoint(), "-state-dir", state}, exitFailure, []string{
			"is not trusted", "iot-producer opcua trust --state-dir " + state + " --endpoint " + sim.Endpoint() + " --fingerprint " + opcua.Fingerprint(sim.Certificate()),
		}},
		{"trust shows", []string{"opcua", "trust", "-endpoint", sim.Endpoint(), "-state-dir", state}, exitOK, []string{
			opcua.Fingerprint(sim.Certificate()), "run again with -fingerprint",
		}},
		{"trust wrong fingerprint", []string{"opcua", "trust", "-endpoint", sim.Endpoint(), "-fingerprint", "00", "-state-dir", state}, exitFailure, []string{
			"nothing trusted",
		}},
		{"trust", []string{"opcua", "trust", "-endpoint", sim.Endpoint(), "-fingerprint", opcua.Fingerprint(sim.Certificate()), "-state-dir", state}, exitOK, []string{
			"trusted", "opcua/trusted/" + opcua.Fingerprint(sim.Certificate()) + ".der",
		}},
		{"read secured once trusted", []string{"opcua", "read", "-node", "nsu=urn:iot-producer:simulator;s=types.Int64", "-endpoint", sim.Endpoint(), "-state-dir", state}, exitOK, []string{
			"status:      Good (good)", "(int)",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(c.args, &out, &errb)
			all := out.String() + errb.String()
			if code != c.code {
				t.Fatalf("exit %d, want %d\n%s", code, c.code, all)
			}
			for _, w := range c.out {
				if !strings.Contains(all, w) {
					t.Errorf("output lacks %q:\n%s", w, all)
				}
			}
		})
	}
	if !opcua.IsTrusted(state, sim.Certificate()) {
		t.Error("not trusted after opcua trust")
	}
}
