package k8s

import (
	"bytes"
	"errors"
	_ "github.com/iot-producer/iot-producer/plugins/all"
	"github.com/iot-producer/iot-producer/uplink/kafka"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/iot-producer/iot-producer/agent/config"
)

// Names the operations guide (docs/operations.md) and the runbook scripts use in their commands.
const (
	manualNamespace = "iot-monitoring"
	manualConfigMap = "iot-producer-config"
	manualSecret    = "iot-producer-secrets"
	// manualSecretKey is the key the runbook's rotation step patches
	// (`kubectl patch secret ... {"data":{"db-password":...}}`): the
	// agent must read its broker password from it, or the rotation changes
	// nothing.
	manualSecretKey  = "db-password"
	manualDeployment = "iot-producer"
	manualContainer  = "iot-producer"
	manualService    = "iot-producer-service"
	configKey        = "config.yaml"
	configDir        = "/etc/iot-producer"
)

// apiVersions is every kind these manifests may hold, with its API version.
// A new kind needs an entry here and a case in loadManifests.
var apiVersions = map[string]string{
	"Namespace":             "v1",
	"ServiceAccount":        "v1",
	"ConfigMap":             "v1",
	"Secret":                "v1",
	"PersistentVolumeClaim": "v1",
	"Service":               "v1",
	"NetworkPolicy":         "networking.k8s.io/v1",
	"Deployment":            "apps/v1",
}

// object is one decoded document: its header and where it came from.
type object struct {
	typeMeta
	file string
	line int
}

// manifests is every object of k8s/*.yaml, decoded strictly by kind.
type manifests struct {
	objects         []object
	namespaces      []namespaceObj
	serviceAccounts []serviceAccountObj
	configMaps      []configMapObj
	secrets         []secretObj
	pvcs            []pvcObj
	services        []serviceObj
	networkPolicies []networkPolicyObj
	deployments     []deploymentObj
}

// loadManifests decodes every document of every *.yaml file in this
// directory, failing the test on a syntax error, an unknown kind or a field
// the API mirror in api_test.go does not have.
func loadManifests(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no *.yaml manifests in k8s/")
	}
	// The examples (the placeholder Secret) are outside what
	// `kubectl apply -f k8s/` applies, but checked the same way.
	examples, err := filepath.Glob("examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, examples...)
	m := &manifests{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var doc yaml.Node
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			obj := object{file: f, line: doc.Line}
			if err := doc.Decode(&obj.typeMeta); err != nil {
				t.Fatalf("%s:%d: %v", f, doc.Line, err)
			}
			// Re-encode the document alone so that a strict decoder sees it.
			one, err := yaml.Marshal(&doc)
			if err != nil {
				t.Fatalf("%s:%d: %v", f, doc.Line, err)
			}
			strict := func(v any) {
				t.Helper()
				d := yaml.NewDecoder(bytes.NewReader(one))
				d.KnownFields(true)
				if err := d.Decode(v); err != nil {
					t.Fatalf("%s: %s %q (document at line %d): %v", f, obj.Kind, obj.Metadata.Name, doc.Line, err)
				}
			}
			switch obj.Kind {
			case "Namespace":
				m.namespaces = append(m.namespaces, decodeAs[namespaceObj](strict))
			case "ServiceAccount":
				m.serviceAccounts = append(m.serviceAccounts, decodeAs[serviceAccountObj](strict))
			case "ConfigMap":
				m.configMaps = append(m.configMaps, decodeAs[configMapObj](strict))
			case "Secret":
				m.secrets = append(m.secrets, decodeAs[secretObj](strict))
			case "PersistentVolumeClaim":
				m.pvcs = append(m.pvcs, decodeAs[pvcObj](strict))
			case "Service":
				m.services = append(m.services, decodeAs[serviceObj](strict))
			case "NetworkPolicy":
				m.networkPolicies = append(m.networkPolicies, decodeAs[networkPolicyObj](strict))
			case "Deployment":
				m.deployments = append(m.deployments, decodeAs[deploymentObj](strict))
			default:
				t.Fatalf("%s:%d: kind %q is not one this test knows; add it to apiVersions and loadManifests", f, doc.Line, obj.Kind)
			}
			m.objects = append(m.objects, obj)
		}
	}
	return m
}

func decodeAs[T any](strict func(any)) T {
	var v T
	strict(&v)
	return v
}

// find returns the object of kind named name, or nil.
func find[T any](objs []T, name string, meta func(*T) objectMeta) *T {
	for i := range objs {
		if meta(&objs[i]).Name == name {
			return &objs[i]
		}
	}
	return nil
}

// theDeployment returns the manual's Deployment and its agent container.
func theDeployment(t *testing.T, m *manifests) (*deploymentObj, *container) {
	t.Helper()
	d := find(m.deployments, manualDeployment, func(d *deploymentObj) objectMeta { return d.Metadata })
	if d == nil {
		t.Fatalf("no Deployment %q", manualDeployment)
	}
	for i := range d.Spec.Template.Spec.Containers {
		if c := &d.Spec.Template.Spec.Containers[i]; c.Name == manualContainer {
			return d, c
		}
	}
	t.Fatalf("Deployment %q has no container %q", manualDeployment, manualContainer)
	return nil, nil
}

// containerPort resolves a port number or name of c to its number, 0 when
// c does not declare it.
func containerPort(c *container, port intOrString) int {
	for _, p := range c.Ports {
		if p.Name == string(port) || strconv.Itoa(p.ContainerPort) == string(port) {
			return p.ContainerPort
		}
	}
	return 0
}

// selects reports whether selector matches labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestObjectHeaders(t *testing.T) {
	m := loadManifests(t)
	seen := map[string]string{}
	for _, o := range m.objects {
		where := o.file + ":" + strconv.Itoa(o.line)
		if want := apiVersions[o.Kind]; o.APIVersion != want {
			t.Errorf("%s: %s has apiVersion %q, want %q", where, o.Kind, o.APIVersion, want)
		}
		if o.Metadata.Name == "" {
			t.Errorf("%s: %s has no name", where, o.Kind)
		}
		wantNS := manualNamespace
		if o.Kind == "Namespace" {
			wantNS = ""
		}
		if o.Metadata.Namespace != wantNS {
			t.Errorf("%s: %s %q is in namespace %q, want %q", where, o.Kind, o.Metadata.Name, o.Metadata.Namespace, wantNS)
		}
		if o.Metadata.Labels["app.kubernetes.io/part-of"] != "iot-producer" {
			t.Errorf("%s: %s %q lacks label app.kubernetes.io/part-of: iot-producer", where, o.Kind, o.Metadata.Name)
		}
		key := o.Kind + "/" + o.Metadata.Name
		if first, dup := seen[key]; dup {
			t.Errorf("%s: %s defined again (first at %s)", where, key, first)
		}
		seen[key] = where
	}
}

// TestOpsManualObjects checks every object and file the ops manual names.
func TestOpsManualObjects(t *testing.T) {
	m := loadManifests(t)
	byKey := map[string]object{}
	for _, o := range m.objects {
		byKey[o.Kind+"/"+o.Metadata.Name] = o
	}
	for _, tc := range []struct {
		kind, name string
		file       string // the file the manual applies, if it names one
	}{
		{"Namespace", manualNamespace, "namespace.yaml"},
		{"ConfigMap", manualConfigMap, "configmap.yaml"},
		{"Secret", manualSecret, ""},
		{"Deployment", manualDeployment, ""},
		{"Service", manualService, ""},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			o, ok := byKey[tc.kind+"/"+tc.name]
			if !ok {
				t.Fatalf("no %s %q: the ops manual uses it", tc.kind, tc.name)
			}
			if tc.file != "" && o.file != tc.file {
				t.Errorf("%s %q is in %s; the manual applies k8s/%s", tc.kind, tc.name, o.file, tc.file)
			}
		})
	}
	// `kubectl get networkpolicy -n iot-monitoring` is a troubleshooting step.
	if len(m.networkPolicies) == 0 {
		t.Error("no NetworkPolicy: the manual checks them when Kafka is unreachable")
	}
}

func TestDeployment(t *testing.T) {
	m := loadManifests(t)
	d, c := theDeployment(t, m)
	pod := &d.Spec.Template.Spec

	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Errorf("replicas = %v, want 1: a gateway's buffer and devices belong to one instance", d.Spec.Replicas)
	}
	if d.Spec.Strategy.Type != "Recreate" {
		t.Errorf("strategy %q, want Recreate: the buffer volume is ReadWriteOnce and its file locked", d.Spec.Strategy.Type)
	}
	if !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels) {
		t.Errorf("selector %v does not match the pod labels %v", d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels)
	}
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds != 30 {
		t.Errorf("terminationGracePeriodSeconds = %v, want 30", pod.TerminationGracePeriodSeconds)
	}
	if find(m.serviceAccounts, pod.ServiceAccountName, func(s *serviceAccountObj) objectMeta { return s.Metadata }) == nil {
		t.Errorf("serviceAccountName %q: no such ServiceAccount", pod.ServiceAccountName)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken should be false: the agent does not call the API")
	}

	// The ops manual's tuning section, exactly.
	for _, q := range []struct{ kind, res, got, want string }{
		{"requests", "cpu", c.Resources.Requests["cpu"], "200m"},
		{"requests", "memory", c.Resources.Requests["memory"], "512Mi"},
		{"limits", "cpu", c.Resources.Limits["cpu"], "1000m"},
		{"limits", "memory", c.Resources.Limits["memory"], "1Gi"},
	} {
		if q.got != q.want {
			t.Errorf("resources.%s.%s = %q, want %q", q.kind, q.res, q.got, q.want)
		}
	}

	for _, p := range []struct {
		name  string
		probe *probe
		path  string
	}{
		{"livenessProbe", c.LivenessProbe, "/health"},
		{"readinessProbe", c.ReadinessProbe, "/ready"},
		{"startupProbe", c.StartupProbe, "/health"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe of %s on 8081", p.name, p.path)
			continue
		}
		if p.probe.HTTPGet.Path != p.path || containerPort(c, p.probe.HTTPGet.Port) != 8081 {
			t.Errorf("%s: GET %s on port %q (%d), want %s on 8081", p.name,
				p.probe.HTTPGet.Path, p.probe.HTTPGet.Port, containerPort(c, p.probe.HTTPGet.Port), p.path)
		}
	}

	sc := c.SecurityContext
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem should be true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation should be false")
	}
	if !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Error("capabilities should drop ALL")
	}
	nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) ||
		(pod.SecurityContext.RunAsNonRoot != nil && *pod.SecurityContext.RunAsNonRoot)
	if !nonRoot || pod.SecurityContext.RunAsUser == nil || *pod.SecurityContext.RunAsUser == 0 {
		t.Error("the pod should run as a non-root user (runAsNonRoot and a runAsUser other than 0)")
	}

	if got := strings.Join(c.Args, " "); !strings.Contains(got, "run -c "+path.Join(configDir, configKey)) {
		t.Errorf("args %q do not run the agent with -c %s", got, path.Join(configDir, configKey))
	}

	// Every mount names a volume, and every volume names an existing object.
	volumes := map[string]volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
		switch {
		case v.ConfigMap != nil:
			if find(m.configMaps, v.ConfigMap.Name, func(o *configMapObj) objectMeta { return o.Metadata }) == nil {
				t.Errorf("volume %q: no ConfigMap %q", v.Name, v.ConfigMap.Name)
			}
		case v.Secret != nil:
			if find(m.secrets, v.Secret.SecretName, func(o *secretObj) objectMeta { return o.Metadata }) == nil {
				t.Errorf("volume %q: no Secret %q", v.Name, v.Secret.SecretName)
			}
		case v.PersistentVolumeClaim != nil:
			if find(m.pvcs, v.PersistentVolumeClaim.ClaimName, func(o *pvcObj) objectMeta { return o.Metadata }) == nil {
				t.Errorf("volume %q: no PersistentVolumeClaim %q", v.Name, v.PersistentVolumeClaim.ClaimName)
			}
		case v.EmptyDir != nil:
		default:
			t.Errorf("volume %q has no source", v.Name)
		}
	}
	for _, ct := range pod.Containers {
		for _, vm := range ct.VolumeMounts {
			if _, ok := volumes[vm.Name]; !ok {
				t.Errorf("container %q mounts %q: no such volume", ct.Name, vm.Name)
			}
		}
	}
	mount := mountOf(c, configDir)
	if mount == nil {
		t.Fatalf("nothing mounted at %s", configDir)
	}
	if v := volumes[mount.name]; v.ConfigMap == nil || v.ConfigMap.Name != manualConfigMap {
		t.Errorf("%s is not the ConfigMap %q", configDir, manualConfigMap)
	}
	if mount.subPath != "" {
		t.Errorf("%s is mounted with subPath: the file would never see a ConfigMap update", configDir)
	}
}

// mounted is one volume mount of a container.
type mounted struct{ name, path, subPath string }

// mountOf returns the mount of c at exactly dir, or nil.
func mountOf(c *container, dir string) *mounted {
	for _, vm := range c.VolumeMounts {
		if path.Clean(vm.MountPath) == dir {
			return &mounted{vm.Name, vm.MountPath, vm.SubPath}
		}
	}
	return nil
}

// TestNoSidecarReloader checks that the pod is the agent alone: it
// reloads its configuration when the mounted file changes, so no container
// shares its process namespace (one that could read its secrets through
// /proc), and the configuration is mounted as a directory (no subPath), so
// the kubelet's updates reach it.
func TestNoSidecarReloader(t *testing.T) {
	m := loadManifests(t)
	d, agent := theDeployment(t, m)
	pod := &d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Errorf("the pod has %d containers, want the agent alone", len(pod.Containers))
	}
	if pod.ShareProcessNamespace != nil && *pod.ShareProcessNamespace {
		t.Error("shareProcessNamespace is set: another container could read the agent's secrets through /proc")
	}
	if mountOf(agent, configDir) == nil {
		t.Errorf("the agent does not mount its configuration directory %s", configDir)
	}
	if d.Spec.Template.Metadata.Annotations["kubectl.kubernetes.io/default-container"] != manualContainer {
		t.Errorf("annotation kubectl.kubernetes.io/default-container should be %q, so that "+
			"`kubectl logs deployment/iot-producer` shows the agent", manualContainer)
	}
}

func TestService(t *testing.T) {
	m := loadManifests(t)
	d, c := theDeployment(t, m)
	s := find(m.services, manualService, func(s *serviceObj) objectMeta { return s.Metadata })
	if s == nil {
		t.Fatalf("no Service %q", manualService)
	}
	if !selects(s.Spec.Selector, d.Spec.Template.Metadata.Labels) {
		t.Errorf("selector %v does not match the pod labels %v", s.Spec.Selector, d.Spec.Template.Metadata.Labels)
	}
	ports := map[int]int{}
	for _, p := range s.Spec.Ports {
		target := containerPort(c, p.TargetPort)
		if target == 0 {
			t.Errorf("port %d: targetPort %q is not a port of container %q", p.Port, p.TargetPort, c.Name)
		}
		ports[p.Port] = target
	}
	// The manual port-forwards svc/iot-producer-service 8080 and 8081.
	for _, want := range []int{8080, 8081} {
		if ports[want] != want {
			t.Errorf("port %d goes to container port %d, want %d", want, ports[want], want)
		}
	}
	if _, ok := ports[6060]; ok {
		t.Error("the Service exposes pprof (6060); it is reached with `kubectl port-forward pod/...` only")
	}
}

func TestNetworkPolicy(t *testing.T) {
	m := loadManifests(t)
	d, _ := theDeployment(t, m)
	cfg := parseConfigMap(t, m)
	var allowedIn, allowedOut []int
	for _, np := range m.networkPolicies {
		if !selects(np.Spec.PodSelector.MatchLabels, d.Spec.Template.Metadata.Labels) {
			continue
		}
		for _, in := range np.Spec.Ingress {
			for _, p := range in.Ports {
				allowedIn = append(allowedIn, p.Port)
			}
		}
		for _, out := range np.Spec.Egress {
			for _, p := range out.Ports {
				allowedOut = append(allowedOut, p.Port)
			}
		}
	}
	for _, want := range []int{8080, 8081} {
		if !slices.Contains(allowedIn, want) {
			t.Errorf("no ingress rule allows port %d (metrics/health)", want)
		}
	}
	if slices.Contains(allowedIn, 6060) {
		t.Error("an ingress rule allows pprof (6060)")
	}
	if !slices.Contains(allowedOut, 53) {
		t.Error("no egress rule allows DNS (53)")
	}
	for _, b := range cfg.Sink("producer").Settings.(*kafka.Config).Brokers {
		_, port, err := net.SplitHostPort(b)
		if err != nil {
			t.Fatalf("broker %q: %v", b, err)
		}
		n, _ := strconv.Atoi(port)
		if !slices.Contains(allowedOut, n) {
			t.Errorf("no egress rule allows the broker %s", b)
		}
	}
}

// parseConfigMap loads the ConfigMap's config.yaml with the agent's own
// parser. Its password_file points into the Secret's mount, which does not
// exist here: the test checks that the path is the Secret's mount plus one
// of its keys, then parses the file with the path replaced by a temporary
// file holding that key's value.
func parseConfigMap(t *testing.T, m *manifests) *config.Config {
	t.Helper()
	cm := find(m.configMaps, manualConfigMap, func(o *configMapObj) objectMeta { return o.Metadata })
	if cm == nil {
		t.Fatalf("no ConfigMap %q", manualConfigMap)
	}
	text, ok := cm.Data[configKey]
	if !ok {
		t.Fatalf("ConfigMap %q has no key %q", manualConfigMap, configKey)
	}
	var raw struct {
		Producer struct {
			SASL struct {
				PasswordFile string `yaml:"password_file"`
			} `yaml:"sasl"`
		} `yaml:"producer"`
	}
	if err := yaml.Unmarshal([]byte(text), &raw); err != nil {
		t.Fatalf("%s: %v", configKey, err)
	}
	pwFile := raw.Producer.SASL.PasswordFile
	if pwFile == "" {
		t.Fatalf("%s: producer.sasl.password_file is not set; the Secret %q is not used", configKey, manualSecret)
	}
	if path.Base(pwFile) != manualSecretKey {
		t.Errorf("producer.sasl.password_file is %s: the runbook rotates the Secret key %q, which the agent would not read", pwFile, manualSecretKey)
	}
	secret := secretAt(t, m, pwFile)

	tmp := filepath.Join(t.TempDir(), "kafka-password")
	if err := os.WriteFile(tmp, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(text, pwFile); n != 1 {
		t.Fatalf("%s mentions %s %d times, want once", configKey, pwFile, n)
	}
	cfg, err := config.Parse([]byte(strings.Replace(text, pwFile, tmp, 1)), path.Join(configDir, configKey))
	if err != nil {
		t.Fatalf("ConfigMap %s/%s does not load:\n%v", manualConfigMap, configKey, err)
	}
	if cfg.Sink("producer").Settings.(*kafka.Config).SASL.Password != secret {
		t.Fatalf("the password read through password_file is %q, want the Secret's %q", cfg.Sink("producer").Settings.(*kafka.Config).SASL.Password, secret)
	}
	return cfg
}

// secretAt returns the value of the Secret key that the agent container
// sees at file, failing when no mounted Secret provides it.
func secretAt(t *testing.T, m *manifests, file string) string {
	t.Helper()
	d, c := theDeployment(t, m)
	for _, vm := range c.VolumeMounts {
		if path.Dir(file) != path.Clean(vm.MountPath) {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name != vm.Name || v.Secret == nil {
				continue
			}
			s := find(m.secrets, v.Secret.SecretName, func(o *secretObj) objectMeta { return o.Metadata })
			if s == nil {
				t.Fatalf("volume %q: no Secret %q", v.Name, v.Secret.SecretName)
			}
			if val, ok := s.StringData[path.Base(file)]; ok {
				return val
			}
			t.Fatalf("Secret %q has no stringData key %q (for %s)", s.Metadata.Name, path.Base(file), file)
		}
	}
	t.Fatalf("%s is not in a Secret volume mounted in container %q", file, c.Name)
	return ""
}

func TestConfigMapConfig(t *testing.T) {
	m := loadManifests(t)
	_, c := theDeployment(t, m)
	cfg := parseConfigMap(t, m)

	if cfg.Device.Enabled == nil || !*cfg.Device.Enabled || cfg.Device.Count == 0 {
		t.Error("the simulator should be on, so that a fresh deployment produces data")
	}
	if cfg.Gateway.ID == "" {
		t.Error("gateway.id should be set: the default, the pod name, changes at every restart")
	}
	// The buffer must be on the volume, or it does not survive the pod.
	buf := mountOf(c, path.Clean(cfg.Gateway.StateDir))
	if buf == nil || !strings.HasPrefix(cfg.Buffer.Path, buf.path+"/") {
		t.Errorf("buffer %s (state_dir %s) is not on a mounted volume", cfg.Buffer.Path, cfg.Gateway.StateDir)
	} else {
		for _, v := range volumesNamed(m, buf.name) {
			if v.PersistentVolumeClaim == nil {
				t.Errorf("state_dir %s is volume %q, not a PersistentVolumeClaim: the buffer would die with the pod", cfg.Gateway.StateDir, buf.name)
			}
		}
	}
	for _, l := range []struct{ key, addr, port string }{
		{"metrics_listen", cfg.Telemetry.MetricsListen, "metrics"},
		{"health_listen", cfg.Telemetry.HealthListen, "health"},
	} {
		_, port, err := net.SplitHostPort(l.addr)
		if err != nil {
			t.Fatalf("telemetry.%s %q: %v", l.key, l.addr, err)
		}
		if want := strconv.Itoa(containerPort(c, intOrString(l.port))); port != want {
			t.Errorf("telemetry.%s is port %s, the container's %q port is %s", l.key, port, l.port, want)
		}
	}
	// `kubectl port-forward pod/<pod> 6060:6060` dials localhost:6060 inside
	// the pod's network namespace: loopback is enough and exposes nothing.
	if cfg.Telemetry.PprofListen != "127.0.0.1:6060" {
		t.Errorf("telemetry.pprof_listen = %q, want 127.0.0.1:6060 (the manual's port-forward target, loopback only)", cfg.Telemetry.PprofListen)
	}
}

func volumesNamed(m *manifests, name string) []volume {
	var out []volume
	for _, d := range m.deployments {
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == name {
				out = append(out, v)
			}
		}
	}
	return out
}

// TestImageAndSecretPlacement checks what `kubectl apply -f k8s/` does: it
// applies no Secret (a placeholder would replace a real password), and the
// Deployment names the image `make image` builds by a version tag.
func TestImageAndSecretPlacement(t *testing.T) {
	m := loadManifests(t)
	for _, o := range m.objects {
		if o.Kind == "Secret" && filepath.Dir(o.file) == "." {
			t.Errorf("%s holds Secret %q: `kubectl apply -f k8s/` would apply it over the real one; keep it in examples/", o.file, o.Metadata.Name)
		}
	}
	_, c := theDeployment(t, m)
	name, tag, ok := strings.Cut(c.Image, ":")
	if !ok || strings.Contains(tag, "/") {
		t.Fatalf("image %q has no tag", c.Image)
	}
	if path.Base(name) != "iot-producer" {
		t.Errorf("image %q: want the iot-producer image", c.Image)
	}
	if !regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`).MatchString(tag) {
		t.Errorf("image tag %q: want a release version such as 1.0.0 (not latest)", tag)
	}
	if c.ImagePullPolicy != "IfNotPresent" {
		t.Errorf("imagePullPolicy %q, want IfNotPresent: a version tag does not move", c.ImagePullPolicy)
	}
	if sc := c.SecurityContext; sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("the container must run as non-root, as the image's user 10001 does")
	}
}
