// Package packaging holds the Debian packaging of iot-producer and no code:
// the nfpm configuration (nfpm.yaml), the maintainer scripts (scripts/),
// the default /etc/iot-producer/config.yaml, the version mapping
// (debversion.sh), the make fragment (package.mk) and the install test
// (test.sh). Its Go tests check that these agree with each other, with the
// systemd unit in ../systemd and with the agent's configuration parser; the
// real install is checked by test.sh (`make package-test`).
package packaging
