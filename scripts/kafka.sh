#!/usr/bin/env bash
# Start and stop a real Apache Kafka cluster (KRaft, combined broker+controller
# nodes) on 127.0.0.1 for end-to-end tests, from Maven Central jars and the
# machine's Java. Used by `make e2e` and CI. No Docker, no downloads outside
# Maven; the jars are cached under ~/.cache/iot-producer, never in the repo.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly POM="${SCRIPT_DIR}/kafka/pom.xml"

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
readonly KAFKA_VERSION
readonly CACHE_ROOT="${IOT_PRODUCER_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/iot-producer}"
readonly KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
readonly KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:-}"
# Short-lived CLI JVMs (StorageTool, TopicCommand) start faster with C1 only.
readonly TOOL_JVM_OPTS=(-Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC)
readonly FALLBACK_JDK="/usr/lib/jvm/temurin-25-jdk-amd64"
readonly READY_TOPIC="kafka-sh-readiness"
readonly DEFAULT_PORT=19092
readonly SCRAM_MECHANISMS="SCRAM-SHA-256,SCRAM-SHA-512"

usage() {
	cat <<EOF
Usage: $(basename "$0") COMMAND [OPTIONS]

Runs a throwaway Apache Kafka ${KAFKA_VERSION} cluster (KRaft, combined
broker+controller nodes) on 127.0.0.1 for tests.

Commands:
  start [--brokers N] [--port P] [--dir DIR] [--partitions N]
        [--replication-factor N] [--min-insync N] [--timeout SECONDS]
        [--advertise-port A] [--internal-port I]
        [--security plaintext|tls-scram] [--scram-user NAME]
        [--scram-password SECRET]
        Format storage, start N nodes (default 1; use 3 for leader-change
        tests) and wait until the cluster accepts produce requests with
        acks=all. Node i listens for clients on P+i-1 (default
        P=${DEFAULT_PORT}); its controller listener is on P+1000+i-1. Prints
        KAFKA_BROKERS=... on stdout (also written to DIR/kafka.env).

        --advertise-port A: node i still listens on P+i-1 but advertises
        127.0.0.1:A+i-1 in metadata, so that clients go through whatever
        forwards A+i-1 to P+i-1 (a faultproxy, socat). KAFKA_BROKERS lists
        the advertised addresses and KAFKA_PROXY_TARGETS the real ones. The
        proxy need not be up for start to succeed.

        --security tls-scram: the client listener is SASL_SSL with
        SCRAM-SHA-256 and SCRAM-SHA-512, and it asks for (does not require)
        a client certificate. A CA, a server certificate for
        127.0.0.1/localhost and a client certificate are made with openssl
        into DIR/tls and reused while valid. The user (default
        gateway/gateway-secret; name of letters, digits and ._-, password
        of those and ~@%+!:^) is created when the storage is formatted.
        Also prints KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISMS,
        KAFKA_CA_FILE, KAFKA_CLIENT_CERT, KAFKA_CLIENT_KEY,
        KAFKA_SCRAM_USER, KAFKA_SCRAM_PASSWORD and KAFKA_CLIENT_PROPERTIES
        (a Java client's settings). Debian 12's kcat
        (librdkafka 2.0.2) cannot do SCRAM with Kafka 4 ("invalid
        credentials" whatever the password); librdkafka 2.6.1 and later can.

        With either option (or --internal-port alone), each node also has a
        PLAINTEXT listener without authentication on I+i-1 (default
        I=P+2000), printed as KAFKA_INTERNAL_BROKERS: brokers replicate over
        it and this script checks readiness and runs its admin tools (topics)
        through it. Readiness also checks each node's own client listener:
        metadata (plaintext), or the certificate and, without
        --advertise-port, a SCRAM login with Kafka's Java client.
  stop [--port P | --dir DIR] [--keep | --purge] [--timeout SECONDS]
        SIGTERM every node, SIGKILL after the timeout (default 20 s), then
        delete the data (unless --keep). DIR/logs (for post-mortems) and
        DIR/tls (the certificates, reused by the next start) are left,
        unless --purge, which removes them and DIR itself if it is then
        empty.
  status [--port P | --dir DIR]
        Show each node's state and the KAFKA_* lines; exit 0 only if every
        node is running.
  stop-node N [--port P | --dir DIR] [--kill] [--timeout SECONDS]
        Stop node N (1-based) keeping its data; --kill sends SIGKILL at once.
  start-node N [--port P | --dir DIR] [--timeout SECONDS]
        Start node N again and wait until it is back in the cluster metadata
        and every partition's replicas are all in sync again.
  topics [--port P | --dir DIR] ARGS...
        Run kafka-topics (TopicCommand) against the cluster, e.g.
        topics --create --topic t --partitions 3 --replication-factor 3
  fetch
        Resolve the Kafka jars with Maven into the cache and print the
        directory (done by start when needed).

DIR defaults to \${TMPDIR:-/tmp}/iot-producer-kafka-P. start remembers its
options in DIR/cluster.env, so the other commands need only --dir (or the
--port that names the default DIR).
Environment: KAFKA_VERSION (default 4.4.0), KAFKA_JAVA (java binary),
KAFKA_HEAP_OPTS (default "-Xms128m -Xmx512m"), KAFKA_JVM_OPTS,
IOT_PRODUCER_CACHE (default ~/.cache/iot-producer).
EOF
}

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# ---------------------------------------------------------------- jars + java

# libs_dir prints the cache directory for this Kafka version and pom content.
libs_dir() {
	local pom_hash
	pom_hash="$(sha256sum "${POM}" | cut -c1-12)"
	printf '%s/kafka-%s-%s/libs' "${CACHE_ROOT}" "${KAFKA_VERSION}" "${pom_hash}"
}

# fetch_jars resolves the broker classpath with Maven into the cache, unless
# it is already there, and prints the directory. Safe to run concurrently.
fetch_jars() {
	local libs tmp mvn_log
	libs="$(libs_dir)"
	if [[ -f "${libs}/kafka_2.13-${KAFKA_VERSION}.jar" ]]; then
		printf '%s\n' "${libs}"
		return 0
	fi
	command -v mvn >/dev/null || die "mvn not found (run scripts/ci-deps.sh)"
	mkdir -p "$(dirname "${libs}")"
	tmp="$(mktemp -d "${libs}.tmp.XXXXXX")"
	mvn_log="${tmp}.log"
	log "resolving org.apache.kafka:kafka_2.13:${KAFKA_VERSION} with Maven into ${libs}"
	if ! mvn -B -q -f "${POM}" dependency:copy-dependencies \
		-Dkafka.version="${KAFKA_VERSION}" -DincludeScope=runtime \
		-DoutputDirectory="${tmp}" </dev/null >"${mvn_log}" 2>&1; then
		tail -n 40 "${mvn_log}" >&2
		rm -rf "${tmp}" "${mvn_log}"
		die "maven could not resolve Kafka ${KAFKA_VERSION}"
	fi
	rm -f "${mvn_log}"
	# Another run may have won the race; keep its copy.
	if ! mv -T "${tmp}" "${libs}" 2>/dev/null; then
		rm -rf "${tmp}"
	fi
	[[ -f "${libs}/kafka_2.13-${KAFKA_VERSION}.jar" ]] || die "jars missing in ${libs}"
	printf '%s\n' "${libs}"
}

# java_feature prints the feature release (17, 25, ...) of a java binary.
java_feature() {
	local version
	version="$("$1" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')"
	case "${version}" in
	1.*) version="${version#1.}" ;;
	esac
	printf '%s\n' "${version%%[.+-]*}"
}

# required_java prints the Java feature release the Kafka jars were compiled
# for (class file major version - 44); 17 if it cannot tell.
required_java() {
	local jar="$1/kafka-server-${KAFKA_VERSION}.jar" class major
	if command -v unzip >/dev/null && [[ -f "${jar}" ]]; then
		class="$(unzip -Z1 "${jar}" | grep -m1 '\.class$' || true)"
		if [[ -n "${class}" ]]; then
			major="$(unzip -p "${jar}" "${class}" | od -An -j7 -N1 -tu1 | tr -d ' ')"
			if [[ "${major}" =~ ^[0-9]+$ ]]; then
				printf '%s\n' "$((major - 44))"
				return 0
			fi
		fi
	fi
	printf '17\n'
}

# pick_java prints a java binary new enough for the jars in $1.
pick_java() {
	local need candidate
	if [[ -n "${KAFKA_JAVA:-}" ]]; then
		printf '%s\n' "${KAFKA_JAVA}"
		return 0
	fi
	need="$(required_java "$1")"
	for candidate in "$(command -v java || true)" "${JAVA_HOME:-/nonexistent}/bin/java" \
		"${FALLBACK_JDK}/bin/java" /usr/lib/jvm/*/bin/java; do
		[[ -n "${candidate}" && -x "${candidate}" ]] || continue
		if (($(java_feature "${candidate}") >= need)); then
			printf '%s\n' "${candidate}"
			return 0
		fi
	done
	die "no Java ${need}+ found for Kafka ${KAFKA_VERSION} (set KAFKA_JAVA)"
}

# ---------------------------------------------------------------- cluster dir

# Cluster state, loaded from / saved to DIR/cluster.env.
DIR=""
BROKERS=1
PORT="${DEFAULT_PORT}"
CONTROLLER_PORT=""
PARTITIONS=3
RF=""
MIN_ISR=""
TIMEOUT=90
CLUSTER_ID=""
LIBS=""
JAVA=""
ADVERTISE_PORT=""
INTERNAL_PORT=""
SECURITY=plaintext
SCRAM_USER=gateway
SCRAM_PASSWORD=gateway-secret

default_dir() { printf '%s/iot-producer-kafka-%s' "${TMPDIR:-/tmp}" "$1"; }
node_dir() { printf '%s/node%s' "${DIR}" "$1"; }
pid_file() { printf '%s/node%s/kafka.pid' "${DIR}" "$1"; }
broker_port() { printf '%s' "$((PORT + $1 - 1))"; }
controller_port() { printf '%s' "$((CONTROLLER_PORT + $1 - 1))"; }
internal_port() { printf '%s' "$((INTERNAL_PORT + $1 - 1))"; }
tls_dir() { printf '%s/tls' "${DIR}"; }

# advertised_port prints the client port node $1 puts in metadata.
advertised_port() {
	if [[ -n "${ADVERTISE_PORT}" ]]; then
		printf '%s' "$((ADVERTISE_PORT + $1 - 1))"
	else
		broker_port "$1"
	fi
}

# has_internal succeeds if the nodes have a separate PLAINTEXT listener for
# replication and this script, because the client listener is proxied or
# secured (or --internal-port asked for it).
has_internal() { [[ -n "${ADVERTISE_PORT}" || -n "${INTERNAL_PORT}" || "${SECURITY}" != plaintext ]]; }

# addr_list PORT_FN prints 127.0.0.1:$(PORT_FN i) for every node, comma
# separated.
addr_list() {
	local fn="$1" i addrs=()
	for ((i = 1; i <= BROKERS; i++)); do
		addrs+=("127.0.0.1:$("${fn}" "${i}")")
	done
	(
		IFS=,
		printf '%s' "${addrs[*]}"
	)
}

# bootstrap prints the addresses clients use: the advertised ones.
bootstrap() { addr_list advertised_port; }

# admin_bootstrap prints the addresses this script talks to: the internal
# listeners if there are, else the client listeners.
admin_bootstrap() {
	if has_internal; then
		addr_list internal_port
	else
		addr_list broker_port
	fi
}

# env_lines prints the KAFKA_* lines that tell a client how to connect.
env_lines() {
	local tls
	tls="$(tls_dir)"
	printf 'KAFKA_BROKERS=%s\n' "$(bootstrap)"
	if [[ -n "${ADVERTISE_PORT}" ]]; then
		printf 'KAFKA_PROXY_TARGETS=%s\n' "$(addr_list broker_port)"
	fi
	if has_internal; then
		printf 'KAFKA_INTERNAL_BROKERS=%s\n' "$(addr_list internal_port)"
	fi
	if [[ "${SECURITY}" == tls-scram ]]; then
		printf '%s\n' \
			"KAFKA_SECURITY_PROTOCOL=SASL_SSL" \
			"KAFKA_SASL_MECHANISMS=${SCRAM_MECHANISMS}" \
			"KAFKA_CA_FILE=${tls}/ca.crt" \
			"KAFKA_CLIENT_CERT=${tls}/client.crt" \
			"KAFKA_CLIENT_KEY=${tls}/client.key" \
			"KAFKA_SCRAM_USER=${SCRAM_USER}" \
			"KAFKA_SCRAM_PASSWORD=${SCRAM_PASSWORD}" \
			"KAFKA_CLIENT_PROPERTIES=${DIR}/client.properties"
	fi
}

save_state() {
	cat >"${DIR}/cluster.env" <<EOF
BROKERS=${BROKERS}
PORT=${PORT}
CONTROLLER_PORT=${CONTROLLER_PORT}
CLUSTER_ID=${CLUSTER_ID}
LIBS=${LIBS}
JAVA=${JAVA}
ADVERTISE_PORT=${ADVERTISE_PORT}
INTERNAL_PORT=${INTERNAL_PORT}
SECURITY=${SECURITY}
SCRAM_USER=${SCRAM_USER}
SCRAM_PASSWORD=${SCRAM_PASSWORD}
EOF
	chmod 600 "${DIR}/cluster.env"
}

load_state() {
	[[ -f "${DIR}/cluster.env" ]] || die "no cluster in ${DIR} (not started?)"
	local key value
	while IFS='=' read -r key value; do
		case "${key}" in
		BROKERS) BROKERS="${value}" ;;
		PORT) PORT="${value}" ;;
		CONTROLLER_PORT) CONTROLLER_PORT="${value}" ;;
		CLUSTER_ID) CLUSTER_ID="${value}" ;;
		LIBS) LIBS="${value}" ;;
		JAVA) JAVA="${value}" ;;
		ADVERTISE_PORT) ADVERTISE_PORT="${value}" ;;
		INTERNAL_PORT) INTERNAL_PORT="${value}" ;;
		SECURITY) SECURITY="${value}" ;;
		SCRAM_USER) SCRAM_USER="${value}" ;;
		SCRAM_PASSWORD) SCRAM_PASSWORD="${value}" ;;
		esac
	done <"${DIR}/cluster.env"
}

# node_pid prints node $1's pid if its process is alive and is our broker.
node_pid() {
	local file pid
	file="$(pid_file "$1")"
	[[ -f "${file}" ]] || return 1
	pid="$(<"${file}")"
	[[ "${pid}" =~ ^[0-9]+$ ]] || return 1
	# Guard against a recycled pid: the command line must name our config.
	grep -qF "$(node_dir "$1")/server.properties" "/proc/${pid}/cmdline" 2>/dev/null || return 1
	printf '%s\n' "${pid}"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

new_cluster_id() {
	# A Kafka Uuid is 16 random bytes in URL-safe base64 without padding; one
	# starting with '-' would be read as an option by StorageTool.
	local id
	while :; do
		id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
		[[ "${id}" == -* ]] || break
	done
	printf '%s\n' "${id}"
}

write_log4j_config() {
	cat >"${DIR}/log4j2.properties" <<'EOF'
# Written by scripts/kafka.sh. kafka.logs.dir is set per node.
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
EOF
	cat >"${DIR}/log4j2-tools.properties" <<'EOF'
# Written by scripts/kafka.sh for StorageTool and TopicCommand.
status = warn
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.console.ref = console
EOF
}

# ---------------------------------------------------------------- tls

# tls_valid succeeds if DIR/tls holds a CA, a server and a client
# certificate signed by it, valid for at least another day, and the server's
# PKCS12 keystore.
tls_valid() {
	local tls f
	tls="$(tls_dir)"
	for f in ca.crt ca.key server.crt server.key server.p12 keystore.password client.crt client.key; do
		[[ -s "${tls}/${f}" ]] || return 1
	done
	openssl verify -CAfile "${tls}/ca.crt" "${tls}/server.crt" "${tls}/client.crt" >/dev/null 2>&1 || return 1
	for f in ca.crt server.crt client.crt; do
		openssl x509 -checkend 86400 -noout -in "${tls}/${f}" >/dev/null 2>&1 || return 1
	done
}

# issue_cert TLS_DIR NAME CN EXTENSIONS: a P-256 key and a certificate
# signed by the CA, in TLS_DIR/NAME.{key,crt}.
issue_cert() {
	local tls="$1" name="$2" cn="$3" ext="$4"
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "${tls}/${name}.key" -out "${tls}/${name}.csr" -subj "/CN=${cn}" &&
		openssl x509 -req -in "${tls}/${name}.csr" -CA "${tls}/ca.crt" -CAkey "${tls}/ca.key" \
			-set_serial "0x$(openssl rand -hex 16)" -days 825 -sha256 \
			-extfile <(printf '%s\n' "${ext}") -out "${tls}/${name}.crt" &&
		rm -f "${tls}/${name}.csr"
}

# make_tls TLS_DIR PASSWORD makes the CA, both certificates and the server's
# keystore. Steps are chained with && because errexit does not apply to a
# function called as a condition.
make_tls() {
	local tls="$1" password="$2"
	umask 077
	openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "${tls}/ca.key" -out "${tls}/ca.crt" -days 3650 -sha256 \
		-subj "/CN=iot-producer test CA" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" &&
		issue_cert "${tls}" server localhost "$(printf '%s\n' \
			"basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
			"extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1")" &&
		issue_cert "${tls}" client iot-producer-client "$(printf '%s\n' \
			"basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
			"extendedKeyUsage=clientAuth")" &&
		openssl pkcs12 -export -in "${tls}/server.crt" -inkey "${tls}/server.key" \
			-certfile "${tls}/ca.crt" -name kafka -out "${tls}/server.p12" \
			-passout "pass:${password}" &&
		printf '%s\n' "${password}" >"${tls}/keystore.password"
}

# ensure_tls makes the certificates in DIR/tls, unless valid ones are there.
ensure_tls() {
	local tls password
	tls="$(tls_dir)"
	if tls_valid; then
		log "reusing the certificates in ${tls}"
		return 0
	fi
	command -v openssl >/dev/null || die "openssl not found: needed for --security tls-scram"
	log "making a CA, a server and a client certificate in ${tls}"
	rm -rf "${tls}"
	mkdir -p "${tls}"
	chmod 700 "${tls}"
	password="$(openssl rand -hex 16)"
	# A subshell, so that make_tls's umask stays there.
	if ! (make_tls "${tls}" "${password}") >"${DIR}/tls.log" 2>&1; then
		cat "${DIR}/tls.log" >&2
		die "making the certificates in ${tls} failed"
	fi
	rm -f "${DIR}/tls.log"
	tls_valid || die "the certificates made in ${tls} do not verify"
}

# ---------------------------------------------------------------- nodes

# listener_lines prints node $1's listener settings.
listener_lines() {
	local n="$1" client=PLAINTEXT tls
	if ! has_internal; then
		cat <<EOF
listeners=PLAINTEXT://127.0.0.1:$(broker_port "${n}"),CONTROLLER://127.0.0.1:$(controller_port "${n}")
advertised.listeners=PLAINTEXT://127.0.0.1:$(broker_port "${n}")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
EOF
		return 0
	fi
	[[ "${SECURITY}" == tls-scram ]] && client=SASL_SSL
	cat <<EOF
# CLIENT is what clients use (advertised as a proxy's port with
# --advertise-port); INTERNAL serves replication and kafka.sh itself.
listeners=CLIENT://127.0.0.1:$(broker_port "${n}"),INTERNAL://127.0.0.1:$(internal_port "${n}"),CONTROLLER://127.0.0.1:$(controller_port "${n}")
advertised.listeners=CLIENT://127.0.0.1:$(advertised_port "${n}"),INTERNAL://127.0.0.1:$(internal_port "${n}")
listener.security.protocol.map=CLIENT:${client},INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
EOF
	[[ "${SECURITY}" == tls-scram ]] || return 0
	tls="$(tls_dir)"
	cat <<EOF
sasl.enabled.mechanisms=${SCRAM_MECHANISMS}
listener.name.client.sasl.enabled.mechanisms=${SCRAM_MECHANISMS}
listener.name.client.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.client.ssl.keystore.type=PKCS12
listener.name.client.ssl.keystore.location=${tls}/server.p12
listener.name.client.ssl.keystore.password=$(<"${tls}/keystore.password")
listener.name.client.ssl.key.password=$(<"${tls}/keystore.password")
listener.name.client.ssl.truststore.type=PEM
listener.name.client.ssl.truststore.location=${tls}/ca.crt
listener.name.client.ssl.client.auth=requested
EOF
}

write_server_properties() {
	local n="$1" i voters=()
	for ((i = 1; i <= BROKERS; i++)); do
		voters+=("${i}@127.0.0.1:$(controller_port "${i}")")
	done
	mkdir -p "$(node_dir "${n}")/data"
	cat >"$(node_dir "${n}")/server.properties" <<EOF
# Written by scripts/kafka.sh: node ${n} of ${BROKERS}, KRaft combined mode.
process.roles=broker,controller
node.id=${n}
controller.quorum.voters=$(
		IFS=,
		printf '%s' "${voters[*]}"
	)
$(listener_lines "${n}")
log.dirs=$(node_dir "${n}")/data

auto.create.topics.enable=true
num.partitions=${PARTITIONS}
default.replication.factor=${RF}
min.insync.replicas=${MIN_ISR}
offsets.topic.replication.factor=${RF}
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=${RF}
transaction.state.log.min.isr=${MIN_ISR}
share.coordinator.state.topic.replication.factor=${RF}
share.coordinator.state.topic.min.isr=${MIN_ISR}
group.initial.rebalance.delay.ms=0

# Small machine, fast failure detection for leader-change tests.
num.network.threads=2
num.io.threads=4
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=6000
EOF
}

# format_node writes node $1's meta.properties (KRaft storage format) and,
# with tls-scram, the SCRAM credentials into the bootstrap metadata.
format_node() {
	local n="$1" nd scram=() mech
	nd="$(node_dir "${n}")"
	mkdir -p "${DIR}/logs/node${n}"
	if [[ "${SECURITY}" == tls-scram ]]; then
		for mech in ${SCRAM_MECHANISMS//,/ }; do
			scram+=(--add-scram "${mech}=[name=${SCRAM_USER},password=${SCRAM_PASSWORD}]")
		done
	fi
	"${JAVA}" "${TOOL_JVM_OPTS[@]}" -cp "${LIBS}/*" \
		-Dlog4j2.configurationFile="${DIR}/log4j2-tools.properties" \
		kafka.tools.StorageTool format --cluster-id "${CLUSTER_ID}" \
		--config "${nd}/server.properties" "${scram[@]}" \
		</dev/null >"${DIR}/logs/node${n}/format.out" 2>&1
}

# launch_node starts node $1 in its own session, detached from this shell.
launch_node() {
	local n="$1" nd logs
	nd="$(node_dir "${n}")"
	logs="${DIR}/logs/node${n}"
	mkdir -p "${logs}"
	# The inner shell writes its own pid and execs java, so the pid file holds
	# the JVM's pid whether or not setsid forks.
	# shellcheck disable=SC2016,SC2086 # $$ is the inner shell's; JVM options are word lists
	setsid bash -c 'echo "$$" >"$1"; shift; exec "$@"' kafka-node \
		"$(pid_file "${n}")" "${JAVA}" ${KAFKA_HEAP_OPTS} ${KAFKA_JVM_OPTS} \
		-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
		-Djava.awt.headless=true \
		-Dlog4j2.configurationFile="${DIR}/log4j2.properties" \
		-Dkafka.logs.dir="${logs}" \
		-cp "${LIBS}/*" kafka.Kafka "${nd}/server.properties" \
		</dev/null >"${logs}/stdout.log" 2>&1 &
	disown "$!"
}

show_logs() {
	local n="$1" f
	for f in "${DIR}/logs/node${n}/stdout.log" "${DIR}/logs/node${n}/server.log"; do
		[[ -s "${f}" ]] || continue
		log "---- last lines of ${f}"
		tail -n 30 "${f}" >&2
	done
}

# ---------------------------------------------------------------- readiness

# wait_for DEADLINE DESCRIPTION COMMAND...: retry COMMAND every 0.5 s until it
# succeeds, every node we started is still alive, and DEADLINE (epoch s) holds.
wait_for() {
	local deadline="$1" what="$2" i
	shift 2
	until "$@"; do
		for i in "${WAITING_NODES[@]}"; do
			if ! node_pid "${i}" >/dev/null; then
				show_logs "${i}"
				die "node ${i} exited while waiting for ${what}"
			fi
		done
		if ((SECONDS >= deadline)); then
			for i in "${WAITING_NODES[@]}"; do show_logs "${i}"; done
			die "timed out after ${TIMEOUT}s waiting for ${what}"
		fi
		sleep 0.5
	done
}
WAITING_NODES=()

# alive_brokers prints the broker ids in the cluster metadata.
alive_brokers() {
	kcat -b "$(admin_bootstrap)" -L -m 3 2>/dev/null |
		sed -n 's/^ *broker \([0-9]*\) at .*/\1/p' | sort -n | tr '\n' ' '
}

brokers_registered() {
	local want="$1" got
	got="$(alive_brokers)"
	[[ "${got}" == "${want}" ]]
}

# produce_ok sends one record with acks=all; kcat exits non-zero if it fails.
produce_ok() {
	printf 'ready\n' | kcat -b "$(admin_bootstrap)" -P -t "${READY_TOPIC}" \
		-X acks=all -X message.timeout.ms=5000 -X socket.timeout.ms=3000 \
		>/dev/null 2>&1
}

# in_sync succeeds when no partition of any topic has fewer in-sync replicas
# than replicas, so a restarted node has caught up.
in_sync() {
	local meta
	meta="$(kcat -b "$(admin_bootstrap)" -L -m 3 2>/dev/null)" || return 1
	awk '/^ *partition [0-9]+,/ {
		match($0, /replicas: [0-9]+(,[0-9]+)*/); r = split(substr($0, RSTART + 10, RLENGTH - 10), a, ",")
		match($0, /isrs: [0-9]+(,[0-9]+)*/); i = split(substr($0, RSTART + 6, RLENGTH - 6), b, ",")
		if (i < r) bad = 1
	} END { exit bad }' <<<"${meta}"
}

# client_listener_ok succeeds if node $1's own client listener (not the
# advertised address: a proxy there may not be up yet) works:
#   - plaintext: kcat gets metadata from it;
#   - tls-scram: its certificate verifies against the CA for 127.0.0.1 and,
#     unless it is behind a proxy, Kafka's Java client logs in with SCRAM and
#     lists topics. (Behind a proxy every request after the first goes to the
#     advertised address, so the login is left to the test's own client.)
#     Not kcat: Debian 12's (librdkafka 2.0.2) fails SCRAM against Kafka 4
#     with "invalid credentials" whatever the password (fixed in 2.6.1).
client_listener_ok() {
	local port
	port="$(broker_port "$1")"
	if [[ "${SECURITY}" != tls-scram ]]; then
		kcat -b "127.0.0.1:${port}" -L -m 3 >/dev/null 2>&1
		return
	fi
	timeout 10 openssl s_client -connect "127.0.0.1:${port}" -CAfile "$(tls_dir)/ca.crt" \
		-verify_return_error -verify_ip 127.0.0.1 </dev/null >"${DIR}/logs/client-check.out" 2>&1 ||
		return 1
	[[ -z "${ADVERTISE_PORT}" ]] || return 0
	timeout 60 "${JAVA}" "${TOOL_JVM_OPTS[@]}" -cp "${LIBS}/*" \
		-Dlog4j2.configurationFile="${DIR}/log4j2-tools.properties" \
		org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:${port}" \
		--command-config "${DIR}/client.properties" --list \
		</dev/null >>"${DIR}/logs/client-check.out" 2>&1
}

# write_client_properties writes DIR/client.properties, the settings a Java
# client (or the Kafka CLI tools' --command-config) needs for tls-scram.
write_client_properties() {
	cat >"${DIR}/client.properties" <<EOF
# Written by scripts/kafka.sh: a Java client's settings for the SASL_SSL
# listener (SCRAM-SHA-256 works too).
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="${SCRAM_USER}" password="${SCRAM_PASSWORD}";
ssl.truststore.type=PEM
ssl.truststore.location=$(tls_dir)/ca.crt
EOF
	chmod 600 "${DIR}/client.properties"
}

# wait_ready waits until nodes "$@" serve the Kafka ports and, if kcat is
# available, are in the metadata, the cluster takes an acks=all produce,
# every partition is fully in sync and each node's client listener answers.
wait_ready() {
	local deadline=$((SECONDS + TIMEOUT)) n want="" i
	WAITING_NODES=("$@")
	for n in "$@"; do
		wait_for "${deadline}" "node ${n} to listen on $(broker_port "${n}")" \
			port_open "$(broker_port "${n}")"
		if has_internal; then
			wait_for "${deadline}" "node ${n} to listen on $(internal_port "${n}")" \
				port_open "$(internal_port "${n}")"
		fi
	done
	if ! command -v kcat >/dev/null; then
		log "kcat not found: waiting for the broker log line only (run scripts/ci-deps.sh)"
		for n in "$@"; do
			wait_for "${deadline}" "node ${n} to start" \
				grep -q 'Kafka Server started' "${DIR}/logs/node${n}/server.log"
		done
		# Without kcat only the Java check of a secured listener is left.
		[[ "${SECURITY}" == tls-scram ]] || return 0
	else
		for ((i = 1; i <= BROKERS; i++)); do
			# Nodes stopped with stop-node are not expected in the metadata.
			if node_pid "${i}" >/dev/null; then want+="${i} "; fi
		done
		wait_for "${deadline}" "brokers [${want% }] in the metadata" brokers_registered "${want}"
		wait_for "${deadline}" "an acks=all produce to ${READY_TOPIC}" produce_ok
		wait_for "${deadline}" "all partitions to be in sync" in_sync
	fi
	for n in "$@"; do
		wait_for "${deadline}" "node ${n}'s ${SECURITY} client listener on $(broker_port "${n}")" \
			client_listener_ok "${n}"
	done
}

# ---------------------------------------------------------------- commands

stop_nodes() {
	local signal="$1" timeout="$2" n pid pids=() deadline entry
	shift 2
	for n in "$@"; do
		if pid="$(node_pid "${n}")"; then
			kill "-${signal}" "${pid}" 2>/dev/null || true
			pids+=("${n}:${pid}")
		fi
		rm -f "$(pid_file "${n}")"
	done
	deadline=$((SECONDS + timeout))
	for entry in "${pids[@]}"; do
		n="${entry%%:*}"
		pid="${entry#*:}"
		while kill -0 "${pid}" 2>/dev/null; do
			if ((SECONDS >= deadline)); then
				log "node ${n} (pid ${pid}) ignored SIG${signal} for ${timeout}s; sending SIGKILL"
				kill -KILL "${pid}" 2>/dev/null || true
			fi
			sleep 0.2
		done
		log "node ${n} stopped"
	done
}

# abort_start is the EXIT trap of a failing start: it kills nodes "$@".
abort_start() {
	local status=$?
	log "start failed: killing the nodes it started (logs kept in ${DIR}/logs)"
	stop_nodes KILL 5 "$@"
	exit "${status}"
}

# check_ports dies unless every port the nodes listen on is valid, distinct,
# free, and none is an advertised port of a proxy.
check_ports() {
	local n p listen=() seen=" "
	for ((n = 1; n <= BROKERS; n++)); do
		listen+=("$(broker_port "${n}")" "$(controller_port "${n}")")
		if has_internal; then listen+=("$(internal_port "${n}")"); fi
	done
	for p in "${listen[@]}"; do
		((p >= 1 && p <= 65535)) || die "port ${p} is out of range (check --port and friends)"
		[[ "${seen}" != *" ${p} "* ]] || die "port ${p} would be used twice (check --port and friends)"
		seen+="${p} "
	done
	if [[ -n "${ADVERTISE_PORT}" ]]; then
		for ((n = 1; n <= BROKERS; n++)); do
			p="$(advertised_port "${n}")"
			((p >= 1 && p <= 65535)) || die "advertised port ${p} is out of range"
			[[ "${seen}" != *" ${p} "* ]] ||
				die "advertised port ${p} is also a port a node listens on; pick another --advertise-port"
		done
	fi
	for p in "${listen[@]}"; do
		! port_open "${p}" || die "port ${p} on 127.0.0.1 is already in use"
	done
}

# check_scram dies unless the SCRAM user and password fit StorageTool's
# --add-scram syntax and a JAAS string unquoted, and DIR/kafka.env can be
# sourced by a shell.
check_scram() {
	local user_re='^[A-Za-z0-9._-]+$' password_re='^[A-Za-z0-9._~@%+!:^-]+$'
	[[ "${SCRAM_USER}" =~ ${user_re} ]] ||
		die "--scram-user must be letters, digits and ._- only, got '${SCRAM_USER}'"
	[[ "${SCRAM_PASSWORD}" =~ ${password_re} ]] ||
		die "--scram-password must be letters, digits and ._~@%+!:^- only"
}

cmd_start() {
	local n pid
	[[ -z "${CONTROLLER_PORT}" ]] && CONTROLLER_PORT=$((PORT + 1000))
	[[ -z "${DIR}" ]] && DIR="$(default_dir "${PORT}")"
	((BROKERS >= 1)) || die "--brokers must be at least 1"
	[[ -z "${RF}" ]] && RF=$((BROKERS < 3 ? BROKERS : 3))
	[[ -z "${MIN_ISR}" ]] && MIN_ISR=$((RF > 1 ? RF - 1 : 1))
	((RF <= BROKERS)) || die "--replication-factor ${RF} exceeds --brokers ${BROKERS}"
	if has_internal && [[ -z "${INTERNAL_PORT}" ]]; then INTERNAL_PORT=$((PORT + 2000)); fi
	[[ "${SECURITY}" == plaintext ]] || check_scram

	if [[ -f "${DIR}/cluster.env" ]]; then
		local new=("${BROKERS}" "${PORT}" "${CONTROLLER_PORT}" "${ADVERTISE_PORT}" \
			"${INTERNAL_PORT}" "${SECURITY}" "${SCRAM_USER}" "${SCRAM_PASSWORD}")
		load_state
		for ((n = 1; n <= BROKERS; n++)); do
			if pid="$(node_pid "${n}")"; then
				die "a cluster is already running in ${DIR} (node ${n}, pid ${pid}); stop it first"
			fi
		done
		log "removing stale cluster state in ${DIR}"
		for ((n = 1; n <= BROKERS; n++)); do rm -rf "$(node_dir "${n}")"; done
		BROKERS="${new[0]}" PORT="${new[1]}" CONTROLLER_PORT="${new[2]}"
		ADVERTISE_PORT="${new[3]}" INTERNAL_PORT="${new[4]}" SECURITY="${new[5]}"
		SCRAM_USER="${new[6]}" SCRAM_PASSWORD="${new[7]}"
	fi
	check_ports

	LIBS="$(fetch_jars)"
	JAVA="$(pick_java "${LIBS}")"
	CLUSTER_ID="$(new_cluster_id)"
	mkdir -p "${DIR}"
	rm -rf "${DIR}/logs"
	save_state
	write_log4j_config
	if [[ "${SECURITY}" == tls-scram ]]; then
		ensure_tls
		write_client_properties
	fi
	log "starting ${BROKERS} node(s) of Kafka ${KAFKA_VERSION} (${SECURITY}${ADVERTISE_PORT:+, advertising port ${ADVERTISE_PORT}}) in ${DIR} with $("${JAVA}" -version 2>&1 | head -n 1)"

	local pids=()
	for ((n = 1; n <= BROKERS; n++)); do
		write_server_properties "${n}"
		format_node "${n}" &
		pids+=("$!")
	done
	for n in "${!pids[@]}"; do
		if ! wait "${pids[${n}]}"; then
			cat "${DIR}/logs/node$((n + 1))/format.out" >&2
			die "formatting storage of node $((n + 1)) failed"
		fi
	done

	local nodes=()
	for ((n = 1; n <= BROKERS; n++)); do nodes+=("${n}"); done
	# A half-started cluster is of no use: kill it if start fails from here.
	# shellcheck disable=SC2064 # expand the node list now
	trap "abort_start ${nodes[*]}" EXIT
	for n in "${nodes[@]}"; do launch_node "${n}"; done
	# The pid files appear once the inner shells have run.
	for n in "${nodes[@]}"; do
		local waited=0
		until [[ -s "$(pid_file "${n}")" ]] || ((waited++ > 50)); do sleep 0.1; done
	done
	wait_ready "${nodes[@]}"
	trap - EXIT
	env_lines >"${DIR}/kafka.env"
	chmod 600 "${DIR}/kafka.env"
	cat "${DIR}/kafka.env"
	log "ready in ${SECONDS}s; logs in ${DIR}/logs"
	if [[ -n "${ADVERTISE_PORT}" ]]; then
		log "clients reach the brokers only through a proxy from $(bootstrap) to $(addr_list broker_port)"
	fi
}

# purge_dir removes what start leaves besides node data (logs,
# certificates), then DIR itself if nothing else is in it. It removes only
# names this script makes, never DIR wholesale.
purge_dir() {
	rm -rf "${DIR}/logs" "$(tls_dir)" "${DIR}/tls.log"
	rmdir "${DIR}" 2>/dev/null || true
	log "purged ${DIR}"
}

cmd_stop() {
	local keep="$1" stop_timeout="$2" purge="$3" n nodes=()
	if [[ ! -f "${DIR}/cluster.env" ]]; then
		log "no cluster in ${DIR}; nothing to stop"
		if [[ "${purge}" == true ]]; then purge_dir; fi
		return 0
	fi
	load_state
	for ((n = 1; n <= BROKERS; n++)); do nodes+=("${n}"); done
	stop_nodes TERM "${stop_timeout}" "${nodes[@]}"
	if [[ "${keep}" == true ]]; then
		log "kept data in ${DIR}"
		return 0
	fi
	for n in "${nodes[@]}"; do rm -rf "$(node_dir "${n}")"; done
	rm -f "${DIR}/cluster.env" "${DIR}/kafka.env" "${DIR}/log4j2.properties" \
		"${DIR}/log4j2-tools.properties" "${DIR}/client.properties"
	if [[ "${purge}" == true ]]; then
		purge_dir
	else
		log "removed data in ${DIR} (kept ${DIR}/logs and any certificates in $(tls_dir); --purge removes them)"
	fi
}

cmd_status() {
	local n pid all=0
	load_state
	for ((n = 1; n <= BROKERS; n++)); do
		if pid="$(node_pid "${n}")"; then
			printf 'node %s: running (pid %s) on 127.0.0.1:%s\n' "${n}" "${pid}" "$(broker_port "${n}")"
		else
			printf 'node %s: stopped\n' "${n}"
			all=1
		fi
	done
	env_lines
	return "${all}"
}

check_node() {
	if ! [[ "$1" =~ ^[0-9]+$ ]] || (($1 < 1 || $1 > BROKERS)); then
		die "node must be 1..${BROKERS}, got '$1'"
	fi
}

cmd_stop_node() {
	local n="$1" kill_now="$2" stop_timeout="$3"
	load_state
	check_node "${n}"
	if [[ "${kill_now}" == true ]]; then
		stop_nodes KILL "${stop_timeout}" "${n}"
	else
		stop_nodes TERM "${stop_timeout}" "${n}"
	fi
}

cmd_start_node() {
	local n="$1" waited=0
	load_state
	check_node "${n}"
	! node_pid "${n}" >/dev/null || die "node ${n} is already running"
	[[ -f "$(node_dir "${n}")/server.properties" ]] || die "node ${n} has no data in ${DIR}"
	launch_node "${n}"
	until [[ -s "$(pid_file "${n}")" ]] || ((waited++ > 50)); do sleep 0.1; done
	wait_ready "${n}"
	log "node ${n} is back in ${SECONDS}s"
}

cmd_topics() {
	load_state
	"${JAVA}" "${TOOL_JVM_OPTS[@]}" -cp "${LIBS}/*" \
		-Dlog4j2.configurationFile="${DIR}/log4j2-tools.properties" \
		org.apache.kafka.tools.TopicCommand --bootstrap-server "$(admin_bootstrap)" "$@" </dev/null
}

main() {
	local cmd="${1:-}" keep=false purge=false kill_now=false stop_timeout=20 node="" dir_given="" passthrough=() v flag
	[[ -n "${cmd}" ]] || {
		usage >&2
		exit 2
	}
	shift
	case "${cmd}" in
	stop-node | start-node)
		node="${1:-}"
		[[ -n "${node}" ]] || die "${cmd} needs a node number"
		shift
		;;
	-h | --help | help)
		usage
		return 0
		;;
	esac
	while (($# > 0)); do
		case "$1" in
		--brokers) BROKERS="${2:?--brokers needs a value}" && shift ;;
		--port) PORT="${2:?--port needs a value}" && shift ;;
		--controller-port) CONTROLLER_PORT="${2:?--controller-port needs a value}" && shift ;;
		--dir) dir_given="${2:?--dir needs a value}" && shift ;;
		--partitions) PARTITIONS="${2:?--partitions needs a value}" && shift ;;
		--replication-factor) RF="${2:?--replication-factor needs a value}" && shift ;;
		--min-insync) MIN_ISR="${2:?--min-insync needs a value}" && shift ;;
		--timeout)
			TIMEOUT="${2:?--timeout needs a value}"
			stop_timeout="${TIMEOUT}"
			shift
			;;
		--advertise-port) ADVERTISE_PORT="${2:?--advertise-port needs a value}" && shift ;;
		--internal-port) INTERNAL_PORT="${2:?--internal-port needs a value}" && shift ;;
		--security) SECURITY="${2:?--security needs a value}" && shift ;;
		--scram-user) SCRAM_USER="${2:?--scram-user needs a value}" && shift ;;
		--scram-password) SCRAM_PASSWORD="${2:?--scram-password needs a value}" && shift ;;
		--keep) keep=true ;;
		--purge) purge=true ;;
		--kill) kill_now=true ;;
		-h | --help)
			usage
			return 0
			;;
		*)
			[[ "${cmd}" == topics ]] || die "unknown option '$1' (see --help)"
			passthrough+=("$1")
			;;
		esac
		shift
	done
	for v in BROKERS PORT PARTITIONS TIMEOUT; do
		[[ "${!v}" =~ ^[0-9]+$ ]] || die "${v,,} must be a number, got '${!v}'"
	done
	for v in CONTROLLER_PORT ADVERTISE_PORT INTERNAL_PORT; do
		flag="${v,,}"
		[[ -z "${!v}" || "${!v}" =~ ^[0-9]+$ ]] || die "--${flag//_/-} must be a number, got '${!v}'"
	done
	case "${SECURITY}" in
	plaintext | tls-scram) ;;
	*) die "--security must be plaintext or tls-scram, got '${SECURITY}'" ;;
	esac
	[[ "${keep}" == false || "${purge}" == false ]] || die "--keep and --purge exclude each other"
	DIR="${dir_given:-$(default_dir "${PORT}")}"
	DIR="$(realpath -m "${DIR}")"

	case "${cmd}" in
	start) cmd_start ;;
	stop) cmd_stop "${keep}" "${stop_timeout}" "${purge}" ;;
	status) cmd_status ;;
	stop-node) cmd_stop_node "${node}" "${kill_now}" "${stop_timeout}" ;;
	start-node) cmd_start_node "${node}" ;;
	topics) cmd_topics "${passthrough[@]}" ;;
	fetch) fetch_jars ;;
	*)
		usage >&2
		exit 2
		;;
	esac
}

main "$@"
