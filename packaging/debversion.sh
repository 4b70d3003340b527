#!/bin/sh
# debversion.sh VERSION: print VERSION (a tag or `git describe --tags
# --always --dirty` output) as a valid Debian upstream version that sorts
# the way the builds were made:
#
#   v1.2.3                    1.2.3
#   v1.2.3-rc.1               1.2.3~rc.1          (before 1.2.3)
#   v1.2.3-5-gabc1234         1.2.3+git5.gabc1234 (after 1.2.3)
#   v1.2.3-5-gabc1234-dirty   1.2.3+git5.gabc1234.dirty
#   abc1234[-dirty]           0~git.abc1234[.dirty] (no tag yet: before any release)
#   dev, empty                0~dev
#
# The result holds only [0-9A-Za-z.+~] and starts with a digit, so dpkg
# accepts it without a revision.
set -eu

v=${1:-}
v=${v#v}
dirty=
case $v in
*-dirty) dirty=.dirty; v=${v%-dirty} ;;
esac

# An abbreviated commit hash (git describe --always before the first tag)
# can start with a digit: it is not a version.
hash=
if printf '%s\n' "$v" | grep -Eq '^[0-9a-f]{7,40}$'; then
	hash=yes
fi

case $hash$v in
[0-9]*)
	# git describe appends -<commits since tag>-g<hash> to the tag.
	tag=$(printf '%s\n' "$v" | sed -E 's/-([0-9]+)-g([0-9a-f]+)$//')
	since=
	if [ "$tag" != "$v" ]; then
		since=$(printf '%s\n' "$v" | sed -E 's/^.*-([0-9]+)-g([0-9a-f]+)$/+git\1.g\2/')
	fi
	# A pre-release tag (1.2.3-rc.1) sorts before its release: '-' -> '~'.
	tag=$(printf '%s\n' "$tag" | sed -E 's/-/~/g')
	if [ -n "$since" ]; then
		out=$tag$since$dirty
	elif [ -n "$dirty" ]; then
		out=$tag+dirty
	else
		out=$tag
	fi
	;;
'' | dev) out=0~dev ;;
*)
	out=0~git.$v$dirty
	;;
esac

# Anything else dpkg would refuse becomes '.'.
out=$(printf '%s\n' "$out" | sed -E 's/[^0-9A-Za-z.+~]+/./g')
printf '%s\n' "$out"
