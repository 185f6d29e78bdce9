#!/usr/bin/env bash
# Starts and stops the servers shadowdiff's integration tests use: a Kafka-protocol broker
# (tansu) and ClickHouse, as plain processes on 127.0.0.1, on free ports, with their data under
# .services/ in the repository. See docs/ops-services.md.
#
#   scripts/services.sh deps            install what is missing (apt, cargo install)
#   scripts/services.sh start [--memory] [--fresh]
#                                       start both (durable sqlite broker unless --memory;
#                                       --fresh wipes .services/ data first), write .services/env
#   scripts/services.sh stop            stop both (pid files)
#   scripts/services.sh status          show what runs
#   scripts/services.sh env             print the environment the tests read
#
# Then: source .services/env && cargo test -p shadowdiff-kafka -p shadowdiff-clickhouse
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${SHADOWDIFF_SERVICES_DIR:-$ROOT/.services}"
ENV_FILE="$DIR/env"
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$CARGO_BIN:$PATH"

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

deps() {
    local missing=()
    command -v clickhouse-server >/dev/null || missing+=(clickhouse-server)
    command -v clickhouse-client >/dev/null || missing+=(clickhouse-client)
    # Building rdkafka's bundled librdkafka (./configure + make) needs a C toolchain.
    command -v cc >/dev/null || missing+=(build-essential)
    command -v make >/dev/null || missing+=(make)
    command -v curl >/dev/null || missing+=(curl)
    command -v python3 >/dev/null || missing+=(python3)
    if [ ${#missing[@]} -gt 0 ]; then
        log "Installing ${missing[*]} from Debian."
        as_root apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    fi
    if ! command -v tansu >/dev/null; then
        log "Installing tansu with cargo (about 9 minutes on 2 cores)."
        cargo install tansu --locked --features dynostore,libsql
    fi
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() { # description, seconds, command...
    local what="$1" secs="$2"; shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
    log "$what is up."
}

tcp_open() { # host port
    python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()' "$1" "$2"
}

start_kafka() {
    local engine="$1"
    local d="$DIR/kafka"
    mkdir -p "$d"
    if pid_alive "$d/pid"; then
        log "tansu already runs (pid $(cat "$d/pid"), port $(cat "$d/port"))."
        return
    fi
    local port
    port="$(free_port)"
    local storage
    if [ "$engine" = memory ]; then
        storage="memory://tansu/"
    else
        # tansu resolves the sqlite path against its working directory.
        storage="sqlite://tansu.db"
    fi
    # setsid: the broker outlives this script and its terminal.
    (cd "$d" && exec setsid tansu broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine "$storage" \
        >"$d/tansu.log" 2>&1 </dev/null) &
    echo $! >"$d/pid"
    echo "$port" >"$d/port"
    if ! wait_for "tansu on 127.0.0.1:$port ($storage)" 60 tcp_open 127.0.0.1 "$port"; then
        tail -20 "$d/tansu.log" >&2 || true
        die "tansu did not start; log: $d/tansu.log"
    fi
}

start_clickhouse() {
    local d="$DIR/clickhouse"
    mkdir -p "$d/data/tmp" "$d/data/user_files" "$d/data/format_schemas"
    if pid_alive "$d/pid"; then
        log "ClickHouse already runs (pid $(cat "$d/pid"), port $(cat "$d/port"))."
        return
    fi
    local http tcp inter
    http="$(free_port)"; tcp="$(free_port)"; inter="$(free_port)"
    # Debian's config, with every path and port overridden; runs as the current user (root too).
    setsid clickhouse-server --config-file=/etc/clickhouse-server/config.xml -- \
        --path="$d/data/" \
        --tmp_path="$d/data/tmp/" \
        --user_files_path="$d/data/user_files/" \
        --format_schema_path="$d/data/format_schemas/" \
        --logger.log="$d/clickhouse.log" \
        --logger.errorlog="$d/clickhouse.err.log" \
        --http_port="$http" \
        --tcp_port="$tcp" \
        --interserver_http_port="$inter" \
        --listen_host=127.0.0.1 \
        >"$d/stdout.log" 2>&1 </dev/null &
    echo $! >"$d/pid"
    echo "$http" >"$d/port"
    echo "$tcp" >"$d/tcp_port"
    if ! wait_for "ClickHouse on http://127.0.0.1:$http" 60 curl -fsS "http://127.0.0.1:$http/ping"; then
        tail -20 "$d/clickhouse.err.log" >&2 || true
        die "ClickHouse did not start; log: $d/clickhouse.err.log"
    fi
}

write_env() {
    {
        echo "export SHADOWDIFF_TEST_KAFKA=127.0.0.1:$(cat "$DIR/kafka/port")"
        echo "export SHADOWDIFF_TEST_CLICKHOUSE=http://127.0.0.1:$(cat "$DIR/clickhouse/port")"
    } >"$ENV_FILE"
}

stop_one() { # name, dir
    local name="$1" d="$2"
    if pid_alive "$d/pid"; then
        local pid
        pid="$(cat "$d/pid")"
        log "Stopping $name (pid $pid)."
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 20))
        while kill -0 "$pid" 2>/dev/null; do
            if [ $SECONDS -ge $deadline ]; then
                log "$name ignores SIGTERM; killing it."
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.2
        done
    fi
    rm -f "$d/pid"
}

cmd="${1:-}"
shift || true
case "$cmd" in
    deps)
        deps
        ;;
    start)
        engine=sqlite
        for arg in "$@"; do
            case "$arg" in
                --memory) engine=memory ;;
                --fresh) stop_one tansu "$DIR/kafka"; stop_one ClickHouse "$DIR/clickhouse"; rm -rf "$DIR" ;;
                *) die "unknown option $arg" ;;
            esac
        done
        mkdir -p "$DIR"
        deps
        start_kafka "$engine"
        start_clickhouse
        write_env
        cat "$ENV_FILE"
        ;;
    stop)
        stop_one tansu "$DIR/kafka"
        stop_one ClickHouse "$DIR/clickhouse"
        rm -f "$ENV_FILE"
        ;;
    status)
        for s in kafka clickhouse; do
            if pid_alive "$DIR/$s/pid"; then
                echo "$s: running, pid $(cat "$DIR/$s/pid"), port $(cat "$DIR/$s/port")"
            else
                echo "$s: stopped"
            fi
        done
        ;;
    env)
        [ -f "$ENV_FILE" ] || die "no $ENV_FILE; run: scripts/services.sh start"
        cat "$ENV_FILE"
        ;;
    *)
        sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
        [ -z "$cmd" ] || exit 2
        ;;
esac
