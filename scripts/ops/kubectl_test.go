package ops

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// The Kubernetes mode of the scripts is run against a real agent through a
// stand-in for kubectl: this test binary, run under the name kubectl (a
// symlink on the PATH). It answers what the scripts ask of a cluster that
// runs the manifests of k8s/ (namespace iot-monitoring, Service
// iot-producer-service on 8080 and 8081, Deployment iot-producer, ConfigMap
// iot-producer-config, Secret iot-producer-secrets) from the agent the
// test started: `port-forward` is a real TCP forward from the local port
// to the agent's telemetry port the Service port stands for, `logs` is the
// agent's log, `get configmap` wraps its configuration file. Anything else
// fails as kubectl does. Every call is appended to $FAKE_KUBE_DIR/calls.

// fakeKubeEnv names the directory that tells the stand-in where the agent
// is: files ports ("8080 127.0.0.1:PORT" lines), log, config, manifests.
const fakeKubeEnv = "FAKE_KUBE_DIR"

const (
	kubeNamespace  = "iot-monitoring"
	kubeService    = "iot-producer-service"
	kubeDeployment = "iot-producer"
)

// fakeKubectl runs the stand-in with kubectl's arguments and returns its
// exit status.
func fakeKubectl(args []string) int {
	dir := os.Getenv(fakeKubeEnv)
	if dir == "" {
		fmt.Fprintln(os.Stderr, "kubectl stand-in: "+fakeKubeEnv+" is not set")
		return 1
	}
	if f, err := os.OpenFile(filepath.Join(dir, "calls"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
		fmt.Fprintln(f, strings.Join(args, " "))
		f.Close()
	}
	ns := "default"
	var rest []string
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "-n" && i+1 < len(args):
			ns = args[i+1]
			i++
		case strings.HasPrefix(args[i], "--namespace="):
			ns = strings.TrimPrefix(args[i], "--namespace=")
		default:
			rest = append(rest, args[i])
		}
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, format+"\n", a...)
		return 1
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			fmt.Fprintln(os.Stderr, "kubectl stand-in:", err)
			os.Exit(1)
		}
		return string(b)
	}
	if len(rest) == 0 {
		return fail("kubectl stand-in: no command")
	}
	if len(rest) >= 3 && rest[0] == "get" && rest[1] == "namespace" {
		if rest[2] != kubeNamespace {
			return fail("Error from server (NotFound): namespaces %q not found", rest[2])
		}
		fmt.Printf("NAME             STATUS   AGE\n%-16s Active   12d\n", kubeNamespace)
		return 0
	}
	if ns != kubeNamespace {
		return fail("No resources found in %s namespace.", ns)
	}
	pod := kubeDeployment + "-7d9f8c6b5-x2x4q"
	switch rest[0] {
	case "get":
		if len(rest) < 2 {
			return fail("error: you must specify the type of resource to get")
		}
		out := strings.Join(rest[2:], " ")
		switch rest[1] {
		case "pods":
			if strings.Contains(out, "custom-columns") {
				fmt.Printf("POD                              RESTARTS   STARTED\n%s   0          2026-11-20T08:00:00Z\n", pod)
			} else {
				fmt.Printf("NAME                             READY   STATUS    RESTARTS   AGE   IP          NODE\n%s   1/1     Running   0          6d    10.42.0.17  edge-1\n", pod)
			}
		case "configmap/iot-producer-config":
			fmt.Printf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: iot-producer-config\n  namespace: %s\ndata:\n  config.yaml: |\n", kubeNamespace)
			for line := range strings.SplitSeq(strings.TrimRight(read("config"), "\n"), "\n") {
				fmt.Println("    " + line)
			}
		case "secret/iot-producer-secrets":
			fmt.Printf("apiVersion: v1\nkind: Secret\nmetadata:\n  name: iot-producer-secrets\n  namespace: %s\ndata:\n  db-password: %s\n",
				kubeNamespace, base64.StdEncoding.EncodeToString([]byte("not-a-real-password")))
		case "deployment/" + kubeDeployment:
			fmt.Print(read("manifests/deployment.yaml"))
		default:
			return fail("Error from server (NotFound): %s not found", rest[1])
		}
		return 0
	case "top":
		return fail("error: Metrics API not available")
	case "logs":
		if len(rest) < 2 || rest[1] != "deployment/"+kubeDeployment {
			return fail("error: logs of %v: not found", rest[1:])
		}
		fmt.Print(read("log"))
		return 0
	case "port-forward":
		if len(rest) != 3 || rest[1] != "svc/"+kubeService {
			return fail("error: port-forward %v: want svc/%s LOCAL:REMOTE", rest[1:], kubeService)
		}
		local, remote, ok := strings.Cut(rest[2], ":")
		if !ok {
			return fail("error: %s: want LOCAL:REMOTE", rest[2])
		}
		var target string
		for line := range strings.SplitSeq(read("ports"), "\n") {
			if p, addr, ok := strings.Cut(line, " "); ok && p == remote {
				target = addr
			}
		}
		if target == "" {
			return fail("error: Service %s does not have a service port %s", kubeService, remote)
		}
		if err := forward("127.0.0.1:"+local, target, remote); err != nil {
			return fail("error: %v", err)
		}
		return 0
	}
	return fail("kubectl stand-in: %q is not something the runbook scripts do", rest[0])
}

// forward copies every connection to listen through to target, as kubectl
// port-forward does, until it is killed; it gives up after ten minutes so
// that a script that forgets it cannot leave it behind for long.
func forward(listen, target, remote string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("unable to listen on port %s: %w", listen, err)
	}
	fmt.Printf("Forwarding from %s -> %s\n", listen, remote)
	time.AfterFunc(10*time.Minute, func() { ln.Close() })
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			up, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer up.Close()
			var wg sync.WaitGroup
			wg.Go(func() { _, _ = io.Copy(up, c); up.(*net.TCPConn).CloseWrite() })
			_, _ = io.Copy(c, up)
			wg.Wait()
		}()
	}
}
