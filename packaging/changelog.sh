#!/bin/sh
# changelog.sh VERSION DEB_VERSION EPOCH: print the package's Debian
# changelog (/usr/share/doc/iot-producer/changelog.gz once gzipped): one
# entry for this build, dated EPOCH (SOURCE_DATE_EPOCH) so the same commit
# gives the same bytes, listing the last commits when git is at hand.
set -eu

version=$1
deb_version=$2
epoch=$3

printf 'iot-producer (%s) stable; urgency=medium\n\n' "$deb_version"
printf '  * Build of %s.\n' "$version"
if git rev-parse --git-dir >/dev/null 2>&1; then
	git log --no-merges -n 20 --format='  * %s' | cut -c1-78
fi
printf '\n -- IoT Platform Team <iot-platform@example.com>  %s\n' \
	"$(LC_ALL=C date -u -R -d "@$epoch")"
