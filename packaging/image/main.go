// Command image builds the iot-producer container image without a Docker
// daemon: a minimal OCI image (the static binary, a passwd entry for its
// non-root user, CA certificates, nothing else) for each architecture
// given, gathered in one multi-architecture index and written as an OCI
// image layout directory and as an oci-archive tarball of it.
//
//	go run . -version 1.2.3 -out ../../dist/image \
//	    -binary linux/amd64=../../dist/amd64/iot-producer \
//	    -binary linux/arm64=../../dist/arm64/iot-producer
//
// `make image` runs it. The layout's index.json names the image index
// VERSION (annotation org.opencontainers.image.ref.name), so
// `crane push --index dist/image/oci REGISTRY/iot-producer:VERSION`,
// `skopeo copy --all oci:dist/image/oci:VERSION docker://...` and
// `podman load -i dist/image/iot-producer-VERSION-oci.tar` take it as is.
// File times and the image's creation time come from SOURCE_DATE_EPOCH, so
// the same binaries give the same image digests.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the image holds and how it runs. The user matches the Deployment's
// runAsUser in k8s/.
const (
	binaryPath = "/usr/bin/iot-producer"
	uid        = 10001
	userName   = "iot-producer"
	stateDir   = "/var/lib/iot-producer"
	configPath = "/etc/iot-producer/config.yaml"
	caBundle   = "/etc/ssl/certs/ca-certificates.crt"
)

// platformBinaries collects -binary os/arch=path flags.
type platformBinaries map[string]string

func (p platformBinaries) String() string { return fmt.Sprint(map[string]string(p)) }

func (p platformBinaries) Set(s string) error {
	plat, path, ok := strings.Cut(s, "=")
	if !ok || !strings.HasPrefix(plat, "linux/") || path == "" {
		return fmt.Errorf("%q: want linux/ARCH=PATH", s)
	}
	p[plat] = path
	return nil
}

func main() {
	bins := platformBinaries{}
	version := flag.String("version", "", "image version: the tag (org.opencontainers.image.ref.name) and label")
	out := flag.String("out", "dist/image", "output directory: oci/ (the layout) and iot-producer-VERSION-oci.tar")
	ca := flag.String("ca", caBundle, "PEM CA bundle to ship at "+caBundle+" (for TLS to brokers with the system roots)")
	flag.Var(bins, "binary", "linux/ARCH=PATH of a static iot-producer binary; repeat for each architecture")
	flag.Parse()
	if err := run(*version, *out, *ca, bins); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(version, out, ca string, bins platformBinaries) error {
	if version == "" || len(bins) == 0 {
		return errors.New("-version and at least one -binary are required")
	}
	created, err := sourceDateEpoch()
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(ca)
	if err != nil {
		return fmt.Errorf("CA bundle: %w", err)
	}
	var idx v1.ImageIndex = empty.Index
	idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	for _, plat := range sortedKeys(bins) {
		arch := strings.TrimPrefix(plat, "linux/")
		bin, err := os.ReadFile(bins[plat])
		if err != nil {
			return fmt.Errorf("binary for %s: %w", plat, err)
		}
		img, err := platformImage(arch, version, bin, caPEM, created)
		if err != nil {
			return fmt.Errorf("image for %s: %w", plat, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}

	dir := filepath.Join(out, "oci")
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write layout %s: %w", dir, err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": version,
	})); err != nil {
		return fmt.Errorf("write layout %s: %w", dir, err)
	}
	archive := filepath.Join(out, "iot-producer-"+version+"-oci.tar")
	if err := tarDir(dir, archive, created); err != nil {
		return fmt.Errorf("write %s: %w", archive, err)
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("image iot-producer:%s %s (%s) in %s and %s\n", version, d, strings.Join(sortedKeys(bins), ", "), dir, archive)
	return nil
}

// platformImage is the image of one architecture: one layer on scratch.
func platformImage(arch, version string, bin, caPEM []byte, created time.Time) (v1.Image, error) {
	layerTar, err := rootfs(bin, caPEM, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: created}
	cf.Author = ""
	cf.Config = v1.Config{
		Entrypoint:   []string{binaryPath},
		Cmd:          []string{"run", "-c", configPath},
		User:         fmt.Sprintf("%d:%d", uid, uid),
		WorkingDir:   stateDir,
		Env:          []string{"PATH=/usr/bin"},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}, "8081/tcp": {}},
		Labels: map[string]string{
			"org.opencontainers.image.title":       "iot-producer",
			"org.opencontainers.image.description": "Edge gateway agent: PLCs to Kafka with a durable buffer",
			"org.opencontainers.image.version":     version,
		},
	}
	return mutate.ConfigFile(img, cf)
}

// rootfs is the image's only layer: the binary, the user, CA certificates
// and the directories the agent uses, owned by its user.
func rootfs(bin, caPEM []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64, owner int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: owner, Gid: owner, ModTime: mtime, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:iot-producer gateway agent:%s:/sbin/nologin\n", userName, uid, uid, stateDir)
	group := fmt.Sprintf("root:x:0:\n%s:x:%d:\n", userName, uid)
	steps := []error{
		dir("etc", 0o755, 0),
		file("etc/passwd", 0o644, []byte(passwd)),
		file("etc/group", 0o644, []byte(group)),
		dir("etc/iot-producer", 0o755, 0),
		dir("etc/ssl", 0o755, 0),
		dir("etc/ssl/certs", 0o755, 0),
		file(strings.TrimPrefix(caBundle, "/"), 0o644, caPEM),
		dir("tmp", 0o1777, 0),
		dir("usr", 0o755, 0),
		dir("usr/bin", 0o755, 0),
		file(strings.TrimPrefix(binaryPath, "/"), 0o755, bin),
		dir("var", 0o755, 0),
		dir("var/lib", 0o755, 0),
		dir(strings.TrimPrefix(stateDir, "/"), 0o750, uid),
	}
	if err := errors.Join(steps...); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// tarDir writes the files under dir into the tarball path (an
// oci-archive), in a fixed order with fixed times.
func tarDir(dir, path string, mtime time.Time) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	werr := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: rel + "/", Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX})
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: 0o644, Size: int64(len(data)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	return errors.Join(werr, tw.Close(), f.Close())
}

// sourceDateEpoch returns SOURCE_DATE_EPOCH as a time, or the Unix epoch
// when it is not set.
func sourceDateEpoch() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", s, err)
	}
	return time.Unix(n, 0).UTC(), nil
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
