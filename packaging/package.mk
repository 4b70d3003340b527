# packaging/package.mk: the .deb packages. Included by the Makefile, which
# defines GO, VERSION and LDFLAGS.
#
#   make package         bin + .deb for amd64, arm64 and armhf into dist/
#   make package-amd64   one architecture (also package-arm64, package-armhf)
#   make package-test    build the host's .deb, install it, check it, purge it
#                        (needs root and dpkg: it changes this machine)
#   make package-clean   remove dist/
#   make image           the container image (OCI, linux/amd64 and linux/arm64,
#                        non-root, on scratch) into dist/image, without Docker
#   make image-test      make image, then read it back: entrypoint, user,
#                        architectures, and each binary's `version` (qemu)
#   make unit-check      systemd-analyze: the unit's exposure is at most 1.5
#                        (security --offline=true) and it parses (verify)
#   make monitoring-check  promtool on monitoring/: check rules, their unit
#                        tests, every dashboard query (fetches promtool from
#                        Debian's prometheus package if it is not installed)
#
# nfpm is run with `go run` at a pinned version; it is not a dependency of
# the module (not in go.mod).

NFPM              ?= github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
DIST              ?= dist
PACKAGE_ARCHES    := amd64 arm64 armhf
DEB_VERSION       := $(shell packaging/debversion.sh '$(VERSION)')
# File times inside the .deb: the last commit's, so a commit always gives
# the same package bytes.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
HOST_DEB_ARCH     := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)

# Go's target for each Debian architecture. armhf is ARMv7 with hardware
# float, Debian's and Raspberry Pi OS's 32-bit ARM.
GOENV_amd64 := GOARCH=amd64
GOENV_arm64 := GOARCH=arm64
GOENV_armhf := GOARCH=arm GOARM=7

.PHONY: package package-test package-clean monitoring-check unit-check image image-test $(addprefix package-,$(PACKAGE_ARCHES))

package: $(addprefix package-,$(PACKAGE_ARCHES))
	@ls -l $(DIST)/*.deb

$(addprefix package-,$(PACKAGE_ARCHES)): package-%:
	@mkdir -p $(DIST)/$*
	CGO_ENABLED=0 GOOS=linux $(GOENV_$*) $(GO) build -trimpath -ldflags '$(LDFLAGS)' \
		-o $(DIST)/$*/iot-producer ./cmd/iot-producer
	packaging/changelog.sh '$(VERSION)' '$(DEB_VERSION)' $(SOURCE_DATE_EPOCH) > $(DIST)/$*/changelog
	gzip -9nf $(DIST)/$*/changelog
	gzip -9n < packaging/iot-producer.1 > $(DIST)/$*/iot-producer.1.gz
	rm -f $(DIST)/iot-producer_*_$*.deb
	DEB_ARCH=$* DEB_VERSION='$(DEB_VERSION)' IOT_PRODUCER_BIN=$(DIST)/$*/iot-producer PKG_GEN_DIR=$(DIST)/$* \
		SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) \
		$(GO) run $(NFPM) package --config packaging/nfpm.yaml --packager deb --target $(DIST)/

package-test: package-$(HOST_DEB_ARCH)
	bash packaging/test.sh $(DIST)/iot-producer_$(DEB_VERSION)_$(HOST_DEB_ARCH).deb

# The image's tag: the version without git's leading v (v1.2.3 -> 1.2.3,
# v1.2.3-5-gabc1234 -> 1.2.3-5-gabc1234), which is a valid image tag.
IMAGE_ARCHES ?= amd64 arm64
IMAGE_TAG    := $(patsubst v%,%,$(VERSION))
IMAGE_DIR    := $(abspath $(DIST))/image
comma        := ,
empty        :=
space        := $(empty) $(empty)

image:
	@mkdir -p $(IMAGE_DIR)
	for a in $(IMAGE_ARCHES); do \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build -trimpath -ldflags '$(LDFLAGS)' \
			-o $(IMAGE_DIR)/bin/$$a/iot-producer ./cmd/iot-producer || exit 1; \
	done
	cd packaging/image && SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run . -version '$(IMAGE_TAG)' -out $(IMAGE_DIR) \
		$(foreach a,$(IMAGE_ARCHES),-binary linux/$(a)=$(IMAGE_DIR)/bin/$(a)/iot-producer)

image-test: image
	cd packaging/image && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./... && $(GO) test -count=1 -v . \
		-args -layout $(IMAGE_DIR)/oci -version '$(IMAGE_TAG)' -arches $(subst $(space),$(comma),$(IMAGE_ARCHES))

unit-check:
	bash systemd/check.sh systemd/iot-producer.service

package-clean:
	rm -rf $(DIST)

monitoring-check:
	bash monitoring/promtool.sh
