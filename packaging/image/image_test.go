package main

import (
	"archive/tar"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// The image to check: `make image-test` builds it with `make image` and
// passes its layout and version.
var (
	layoutDir   = flag.String("layout", "", "OCI layout directory written by `make image` (dist/image/oci)")
	wantVersion = flag.String("version", "", "the version the image was built with")
	wantArches  = flag.String("arches", "amd64,arm64", "architectures the index must hold")
)

// qemu runs a binary of another architecture, as Debian's
// qemu-user-static installs it (scripts/ci-deps.sh).
var qemu = map[string]string{"amd64": "qemu-x86_64-static", "arm64": "qemu-aarch64-static"}

// TestImage reads the image back from its layout: the index names the
// version and holds every architecture; each image is non-root, runs the
// binary as its entrypoint, declares its architecture, and its binary
// (run natively or under qemu) prints the version.
func TestImage(t *testing.T) {
	if *layoutDir == "" || *wantVersion == "" {
		t.Fatal("run through `make image-test` (needs -layout and -version)")
	}
	p, err := layout.FromPath(*layoutDir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var idx v1.ImageIndex
	for _, d := range im.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] == *wantVersion {
			if idx, err = top.ImageIndex(d.Digest); err != nil {
				t.Fatal(err)
			}
		}
	}
	if idx == nil {
		t.Fatalf("no index tagged %q in %s", *wantVersion, *layoutDir)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var arches []string
	for _, d := range m.Manifests {
		if d.Platform == nil {
			t.Fatalf("manifest %s has no platform", d.Digest)
		}
		arches = append(arches, d.Platform.Architecture)
		t.Run(d.Platform.OS+"/"+d.Platform.Architecture, func(t *testing.T) {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			checkImage(t, img, d.Platform.Architecture)
		})
	}
	want := strings.Split(*wantArches, ",")
	slices.Sort(arches)
	slices.Sort(want)
	if !slices.Equal(arches, want) {
		t.Errorf("architectures %v, want %v", arches, want)
	}
}

func checkImage(t *testing.T, img v1.Image, arch string) {
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != arch {
		t.Errorf("config says %s/%s, index says linux/%s", cf.OS, cf.Architecture, arch)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{binaryPath}) {
		t.Errorf("entrypoint %q, want [%s]", cf.Config.Entrypoint, binaryPath)
	}
	if u := cf.Config.User; u == "" || strings.HasPrefix(u, "0:") || u == "0" || u == "root" {
		t.Errorf("user %q: the image must not run as root", u)
	}
	if cf.Config.User != "10001:10001" {
		t.Errorf("user %q, want 10001:10001 (the Deployment's runAsUser)", cf.Config.User)
	}
	if v := cf.Config.Labels["org.opencontainers.image.version"]; v != *wantVersion {
		t.Errorf("version label %q, want %q", v, *wantVersion)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Errorf("%d layers, want 1 (scratch and the agent)", len(layers))
	}
	bin := extract(t, layers, strings.TrimPrefix(binaryPath, "/"))
	cmd := exec.Command(bin, "version")
	if arch != runtime.GOARCH {
		q, err := exec.LookPath(qemu[arch])
		if err != nil {
			t.Fatalf("running the %s binary needs %s (qemu-user-static): %v", arch, qemu[arch], err)
		}
		cmd = exec.Command(q, bin, "version")
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", binaryPath, err, out)
	}
	if !strings.Contains(string(out), *wantVersion) {
		t.Errorf("%s version printed %q, want %q in it", binaryPath, out, *wantVersion)
	}
	t.Logf("%s: entrypoint %v, user %s, %s version: %s", arch, cf.Config.Entrypoint, cf.Config.User, binaryPath, strings.TrimSpace(string(out)))
}

// extract writes the file name of the image's layers to a temporary file
// and returns its path.
func extract(t *testing.T, layers []v1.Layer, name string) string {
	t.Helper()
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Name != name {
				continue
			}
			if h.Mode&0o111 == 0 {
				t.Errorf("%s has mode %o: not executable", name, h.Mode)
			}
			path := filepath.Join(t.TempDir(), filepath.Base(name))
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			return path
		}
	}
	t.Fatalf("no %s in the image", name)
	return ""
}
