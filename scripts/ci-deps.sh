#!/usr/bin/env bash
# Idempotently install what the tests need from Debian (brokers, protocol
# peers, tools) and pre-fetch the Kafka jars, so the first `make e2e` is not
# slow. Safe to run on every CI run: it does nothing when all is present.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR

# Debian packages and, for each, a command proving it is installed (so a
# package installed some other way is not reinstalled).
readonly PACKAGES=(
	"mosquitto:/usr/sbin/mosquitto"
	"mosquitto-clients:mosquitto_pub"
	"kcat:kcat"
	"socat:socat"
	"qemu-user-static:qemu-aarch64-static"
	"python3-pymodbus:"
	"python3-serial-asyncio:"
	"maven:mvn"
	"unzip:unzip"
	"shellcheck:shellcheck"
	"openssl:openssl"
	"lintian:lintian"
	"systemd:systemd-analyze"
)

# npm packages the end-to-end tests use as independent peers, installed
# into NODE_DIR (in the machine's cache, never the repository).
readonly NPM_PACKAGES=(
	"sparkplug-payload@1.0.3"
	"node-opcua@2.186.4"
)
NODE_DIR="${IOT_PRODUCER_NODE_DIR:-${HOME}/.cache/iot-producer/node}"
readonly NODE_DIR

usage() {
	cat <<EOF
Usage: $(basename "$0") [--no-kafka]

Installs, with apt-get, whichever of these Debian packages are missing:
  $(printf '%s ' "${PACKAGES[@]%%:*}")
(a package Debian does not offer is skipped with a note), plus a Java
runtime if there is none, fetches promtool (Debian's prometheus package,
unpacked into ~/.cache/iot-producer; monitoring/promtool.sh --fetch), then
resolves the Kafka broker jars into
~/.cache/iot-producer via scripts/kafka.sh fetch (skip with --no-kafka),
and installs the npm packages $(printf '%s ' "${NPM_PACKAGES[@]}")into
${NODE_DIR} (npm's cache is ~/.npm).
Runs apt-get update at most once, and only if something is missing.
EOF
}

log() { printf 'ci-deps: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# installed succeeds if package $1 (proved by command or path $2) is present.
installed() {
	local pkg="$1" probe="$2"
	if [[ -n "${probe}" ]]; then
		[[ "${probe}" == /* ]] && [[ -x "${probe}" ]] && return 0
		command -v "${probe}" >/dev/null && return 0
	fi
	dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null | grep -q 'install ok installed'
}

# has_candidate succeeds if apt knows an installable version of package $1.
has_candidate() {
	local candidate
	candidate="$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')"
	[[ -n "${candidate}" && "${candidate}" != "(none)" ]]
}

install_debian_packages() {
	local entry pkg missing=() available=()
	for entry in "${PACKAGES[@]}"; do
		pkg="${entry%%:*}"
		installed "${pkg}" "${entry#*:}" || missing+=("${pkg}")
	done
	command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
	if ((${#missing[@]} == 0)); then
		log "Debian packages: all present"
		return 0
	fi
	((EUID == 0)) || die "need root to install: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	log "apt-get update (missing: ${missing[*]})"
	apt-get update -qq </dev/null >/dev/null
	for pkg in "${missing[@]}"; do
		if has_candidate "${pkg}"; then
			available+=("${pkg}")
		else
			log "skipping ${pkg}: this Debian release does not offer it"
		fi
	done
	((${#available[@]} > 0)) || return 0
	log "apt-get install ${available[*]}"
	local apt_log
	apt_log="$(mktemp)"
	if ! apt-get install -y -qq --no-install-recommends "${available[@]}" \
		</dev/null >"${apt_log}" 2>&1; then
		tail -n 30 "${apt_log}" >&2
		rm -f "${apt_log}"
		die "apt-get install failed"
	fi
	rm -f "${apt_log}"
}

# install_npm_packages installs whichever of NPM_PACKAGES is missing (or
# at another version) into NODE_DIR.
install_npm_packages() {
	local spec name version have missing=()
	for spec in "${NPM_PACKAGES[@]}"; do
		name="${spec%@*}"
		version="${spec##*@}"
		have="$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "${NODE_DIR}/node_modules/${name}/package.json" 2>/dev/null || true)"
		[[ "${have}" == "${version}" ]] || missing+=("${spec}")
	done
	if ((${#missing[@]} == 0)); then
		log "npm packages: all present in ${NODE_DIR}"
		return 0
	fi
	command -v npm >/dev/null || die "npm is missing: install Node.js (Debian: nodejs npm)"
	mkdir -p "${NODE_DIR}"
	log "npm install ${missing[*]} into ${NODE_DIR}"
	npm install --prefix "${NODE_DIR}" --no-audit --no-fund --loglevel=error "${missing[@]}" >&2
}

main() {
	local fetch_kafka=true
	while (($# > 0)); do
		case "$1" in
		--no-kafka) fetch_kafka=false ;;
		-h | --help)
			usage
			return 0
			;;
		*) die "unknown option '$1' (see --help)" ;;
		esac
		shift
	done
	install_debian_packages
	install_npm_packages
	log "promtool: $("${SCRIPT_DIR}/../monitoring/promtool.sh" --fetch | tail -n1)"
	if [[ "${fetch_kafka}" == true ]]; then
		log "Kafka jars: $("${SCRIPT_DIR}/kafka.sh" fetch)"
	fi
}

main "$@"
