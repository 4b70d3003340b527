#!/bin/sh
# changelog.sh VERSION DEB_VERSION EPOCH: print the package's Debian
# changelog (/usr/share/doc/iot-producer/changelog.gz once gzipped): one
# entry for this build, dated EPOCH (SOURCE_DATE_EPOCH) so that the same
# commit gives the same bytes. The history itself is the git log; commit
# subjects are not copied in, as lintian judges their wording.
set -eu

version=$1
deb_version=$2
epoch=$3

printf 'iot-producer (%s) stable; urgency=medium\n\n' "$deb_version"
printf '  * Build of %s (git describe); see the git history for changes.\n' "$version"
printf '\n -- IoT Platform Team <iot-platform@example.com>  %s\n' \
	"$(LC_ALL=C date -u -R -d "@$epoch")"
