# packaging/package.mk: the .deb packages. Included by the Makefile, which
# defines GO, VERSION and LDFLAGS.
#
#   make package         bin + .deb for amd64, arm64 and armhf into dist/
#   make package-amd64   one architecture (also package-arm64, package-armhf)
#   make package-test    build the host's .deb, install it, check it, purge it
#                        (needs root and dpkg: it changes this machine)
#   make package-clean   remove dist/
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

.PHONY: package package-test package-clean monitoring-check unit-check $(addprefix package-,$(PACKAGE_ARCHES))

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

unit-check:
	bash systemd/check.sh systemd/iot-producer.service

package-clean:
	rm -rf $(DIST)

monitoring-check:
	bash monitoring/promtool.sh
