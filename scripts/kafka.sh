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

usage() {
	cat <<EOF
Usage: $(basename "$0") COMMAND [OPTIONS]

Runs a throwaway Apache Kafka ${KAFKA_VERSION} cluster (KRaft, combined
broker+controller nodes) on 127.0.0.1 for tests.

Commands:
  start [--brokers N] [--port P] [--dir DIR] [--partitions N]
        [--replication-factor N] [--min-insync N] [--timeout SECONDS]
        Format storage, start N nodes (default 1; use 3 for leader-change
        tests) and wait until the cluster accepts produce requests with
        acks=all. Node i listens on P+i-1 (default P=${DEFAULT_PORT}); its
        controller listener is on P+1000+i-1. Prints KAFKA_BROKERS=... on
        stdout (also written to DIR/kafka.env).
  stop [--port P | --dir DIR] [--keep] [--timeout SECONDS]
        SIGTERM every node, SIGKILL after the timeout (default 20 s), then
        delete the data (unless --keep). DIR/logs is left for post-mortems.
  status [--port P | --dir DIR]
        Show each node's state; exit 0 only if every node is running.
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

DIR defaults to \${TMPDIR:-/tmp}/iot-producer-kafka-P.
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

default_dir() { printf '%s/iot-producer-kafka-%s' "${TMPDIR:-/tmp}" "$1"; }
node_dir() { printf '%s/node%s' "${DIR}" "$1"; }
pid_file() { printf '%s/node%s/kafka.pid' "${DIR}" "$1"; }
broker_port() { printf '%s' "$((PORT + $1 - 1))"; }
controller_port() { printf '%s' "$((CONTROLLER_PORT + $1 - 1))"; }

bootstrap() {
	local i addrs=()
	for ((i = 1; i <= BROKERS; i++)); do
		addrs+=("127.0.0.1:$(broker_port "${i}")")
	done
	(
		IFS=,
		printf '%s' "${addrs[*]}"
	)
}

save_state() {
	cat >"${DIR}/cluster.env" <<EOF
BROKERS=${BROKERS}
PORT=${PORT}
CONTROLLER_PORT=${CONTROLLER_PORT}
CLUSTER_ID=${CLUSTER_ID}
LIBS=${LIBS}
JAVA=${JAVA}
EOF
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
listeners=PLAINTEXT://127.0.0.1:$(broker_port "${n}"),CONTROLLER://127.0.0.1:$(controller_port "${n}")
advertised.listeners=PLAINTEXT://127.0.0.1:$(broker_port "${n}")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
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

# format_node writes node $1's meta.properties (KRaft storage format).
format_node() {
	local n="$1" nd
	nd="$(node_dir "${n}")"
	mkdir -p "${DIR}/logs/node${n}"
	"${JAVA}" "${TOOL_JVM_OPTS[@]}" -cp "${LIBS}/*" \
		-Dlog4j2.configurationFile="${DIR}/log4j2-tools.properties" \
		kafka.tools.StorageTool format --cluster-id "${CLUSTER_ID}" \
		--config "${nd}/server.properties" \
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
	kcat -b "$(bootstrap)" -L -m 3 2>/dev/null |
		sed -n 's/^ *broker \([0-9]*\) at .*/\1/p' | sort -n | tr '\n' ' '
}

brokers_registered() {
	local want="$1" got
	got="$(alive_brokers)"
	[[ "${got}" == "${want}" ]]
}

# produce_ok sends one record with acks=all; kcat exits non-zero if it fails.
produce_ok() {
	printf 'ready\n' | kcat -b "$(bootstrap)" -P -t "${READY_TOPIC}" \
		-X acks=all -X message.timeout.ms=5000 -X socket.timeout.ms=3000 \
		>/dev/null 2>&1
}

# in_sync succeeds when no partition of any topic has fewer in-sync replicas
# than replicas, so a restarted node has caught up.
in_sync() {
	local meta
	meta="$(kcat -b "$(bootstrap)" -L -m 3 2>/dev/null)" || return 1
	awk '/^ *partition [0-9]+,/ {
		match($0, /replicas: [0-9]+(,[0-9]+)*/); r = split(substr($0, RSTART + 10, RLENGTH - 10), a, ",")
		match($0, /isrs: [0-9]+(,[0-9]+)*/); i = split(substr($0, RSTART + 6, RLENGTH - 6), b, ",")
		if (i < r) bad = 1
	} END { exit bad }' <<<"${meta}"
}

# wait_ready waits until nodes "$@" serve the Kafka port and, if kcat is
# available, are in the metadata, the cluster takes an acks=all produce and
# every partition is fully in sync.
wait_ready() {
	local deadline=$((SECONDS + TIMEOUT)) n want="" i
	WAITING_NODES=("$@")
	for n in "$@"; do
		wait_for "${deadline}" "node ${n} to listen on $(broker_port "${n}")" \
			port_open "$(broker_port "${n}")"
	done
	if ! command -v kcat >/dev/null; then
		log "kcat not found: waiting for the broker log line only (run scripts/ci-deps.sh)"
		for n in "$@"; do
			wait_for "${deadline}" "node ${n} to start" \
				grep -q 'Kafka Server started' "${DIR}/logs/node${n}/server.log"
		done
		return 0
	fi
	for ((i = 1; i <= BROKERS; i++)); do
		# Nodes stopped with stop-node are not expected in the metadata.
		if node_pid "${i}" >/dev/null; then want+="${i} "; fi
	done
	wait_for "${deadline}" "brokers [${want% }] in the metadata" brokers_registered "${want}"
	wait_for "${deadline}" "an acks=all produce to ${READY_TOPIC}" produce_ok
	wait_for "${deadline}" "all partitions to be in sync" in_sync
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

cmd_start() {
	local n pid
	[[ -z "${CONTROLLER_PORT}" ]] && CONTROLLER_PORT=$((PORT + 1000))
	[[ -z "${DIR}" ]] && DIR="$(default_dir "${PORT}")"
	((BROKERS >= 1)) || die "--brokers must be at least 1"
	[[ -z "${RF}" ]] && RF=$((BROKERS < 3 ? BROKERS : 3))
	[[ -z "${MIN_ISR}" ]] && MIN_ISR=$((RF > 1 ? RF - 1 : 1))
	((RF <= BROKERS)) || die "--replication-factor ${RF} exceeds --brokers ${BROKERS}"

	if [[ -f "${DIR}/cluster.env" ]]; then
		local new_brokers="${BROKERS}" new_port="${PORT}" new_cport="${CONTROLLER_PORT}"
		load_state
		for ((n = 1; n <= BROKERS; n++)); do
			if pid="$(node_pid "${n}")"; then
				die "a cluster is already running in ${DIR} (node ${n}, pid ${pid}); stop it first"
			fi
		done
		log "removing stale cluster state in ${DIR}"
		for ((n = 1; n <= BROKERS; n++)); do rm -rf "$(node_dir "${n}")"; done
		BROKERS="${new_brokers}" PORT="${new_port}" CONTROLLER_PORT="${new_cport}"
	fi
	local p
	for ((n = 1; n <= BROKERS; n++)); do
		for p in "$(broker_port "${n}")" "$(controller_port "${n}")"; do
			! port_open "${p}" || die "port ${p} on 127.0.0.1 is already in use"
		done
	done

	LIBS="$(fetch_jars)"
	JAVA="$(pick_java "${LIBS}")"
	CLUSTER_ID="$(new_cluster_id)"
	mkdir -p "${DIR}"
	rm -rf "${DIR}/logs"
	save_state
	write_log4j_config
	log "starting ${BROKERS} node(s) of Kafka ${KAFKA_VERSION} in ${DIR} with $("${JAVA}" -version 2>&1 | head -n 1)"

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
	printf 'KAFKA_BROKERS=%s\n' "$(bootstrap)" | tee "${DIR}/kafka.env"
	log "ready in ${SECONDS}s; logs in ${DIR}/logs"
}

cmd_stop() {
	local keep="$1" stop_timeout="$2" n nodes=()
	if [[ ! -f "${DIR}/cluster.env" ]]; then
		log "no cluster in ${DIR}; nothing to stop"
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
		"${DIR}/log4j2-tools.properties"
	log "removed data in ${DIR} (logs kept in ${DIR}/logs)"
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
	printf 'KAFKA_BROKERS=%s\n' "$(bootstrap)"
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
		org.apache.kafka.tools.TopicCommand --bootstrap-server "$(bootstrap)" "$@" </dev/null
}

main() {
	local cmd="${1:-}" keep=false kill_now=false stop_timeout=20 node="" dir_given="" passthrough=() v
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
		--keep) keep=true ;;
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
	DIR="${dir_given:-$(default_dir "${PORT}")}"
	DIR="$(realpath -m "${DIR}")"

	case "${cmd}" in
	start) cmd_start ;;
	stop) cmd_stop "${keep}" "${stop_timeout}" ;;
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
