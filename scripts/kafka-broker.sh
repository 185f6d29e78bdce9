#!/usr/bin/env bash
# A throwaway tansu broker for fault experiments by hand: durable sqlite storage in DIR, a fixed
# port, kill -9 and restart on the same port and database. (The Rust tests use the equivalent
# helper in kafka/tests/common/mod.rs.)
#
#   scripts/kafka-broker.sh start DIR [PORT]   start (free port unless given); prints the address
#   scripts/kafka-broker.sh kill9 DIR          SIGKILL, no shutdown
#   scripts/kafka-broker.sh restart DIR        kill -9, then start on the same port and database
#   scripts/kafka-broker.sh stop DIR           SIGTERM
set -euo pipefail
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

cmd="${1:-}"; dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

start() {
    local port="${1:-}"
    [ -n "$port" ] || port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    # tansu resolves the sqlite path against its working directory.
    (cd "$dir" && exec setsid tansu broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine "sqlite://tansu.db" >>"$dir/tansu.log" 2>&1 </dev/null) &
    echo $! >"$dir/pid"
    echo "$port" >"$dir/port"
    for _ in $(seq 1 150); do
        if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$port" 2>/dev/null; then
            echo "127.0.0.1:$port"
            return
        fi
        sleep 0.2
    done
    echo "tansu did not start; see $dir/tansu.log" >&2
    exit 1
}

signal() {
    [ -f "$dir/pid" ] || return 0
    local pid; pid="$(cat "$dir/pid")"
    kill "-$1" "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    rm -f "$dir/pid"
}

case "$cmd" in
    start) start "${3:-}" ;;
    kill9) signal KILL ;;
    restart) signal KILL; start "$(cat "$dir/port")" ;;
    stop) signal TERM ;;
    *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
