# Shared helpers for shadowdiff's benchmark scripts (sourced, not run).
# Every process a script starts is recorded in PIDS and killed by the EXIT trap.

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SD="$ROOT/target/release/shadowdiff"
BS="$ROOT/target/release/bench-server"
# The JSON corpus (corpus/json in the repository, see corpus/README.md); SHADOWDIFF_CORPUS names
# another directory laid out the same way. CORPUS=path/to/twitter.json still wins when set.
SHADOWDIFF_CORPUS="${SHADOWDIFF_CORPUS:-$ROOT/corpus/json}"
CORPUS="${CORPUS:-$SHADOWDIFF_CORPUS/twitter.json}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/shadowdiff-bench.XXXXXX")"
PIDS=()

cleanup() {
    local pid all=()
    # With their children: nginx's workers outlived a master killed after its 5 s.
    for pid in "${PIDS[@]}"; do
        # shellcheck disable=SC2207
        all+=("$pid" $(cat "/proc/$pid/task/"*/children 2>/dev/null || true))
    done
    for pid in "${all[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${all[@]}"; do
        # Bounded wait: 5 s, then SIGKILL.
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build() {
    if [ -z "${NO_BUILD:-}" ]; then
        (cd "$ROOT" && cargo build --release -q -p shadowdiff-cli -p shadowdiff-bench)
    fi
    command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 2; }
}

free_port() { "$BS" free-port; }

corpus_args() {
    if [ -f "$CORPUS" ]; then echo "--corpus $CORPUS"; fi
}

# bench_server NAME [args…]: starts a bench server; sets ADDR_<NAME> and PID_<NAME>.
bench_server() {
    local name="$1"; shift
    local file="$WORK/$name.addr"
    # shellcheck disable=SC2046
    "$BS" --addr-file "$file" $(corpus_args) "$@" 2>>"$WORK/$name.log" &
    PIDS+=($!)
    printf -v "PID_$name" '%s' "$!"
    wait_for_file "$file"
    printf -v "ADDR_$name" '%s' "$(cat "$file")"
}

wait_for_file() {
    for _ in $(seq 100); do [ -s "$1" ] && return 0; sleep 0.05; done
    echo "timed out waiting for $1" >&2; exit 1
}

wait_for_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listens on 127.0.0.1:$1" >&2; exit 1
}

# start_shadowdiff COMMAND NAME [flags…]: starts `shadowdiff COMMAND` (run or capture) listening
# on a free tap port and admin port, in front of the control; sets TAP_PORT, ADMIN_PORT, TAP_PID.
start_shadowdiff() {
    local command="$1" name="$2"; shift 2
    TAP_PORT="$(free_port)"; ADMIN_PORT="$(free_port)"
    "$SD" "$command" --listen "127.0.0.1:$TAP_PORT" --admin "127.0.0.1:$ADMIN_PORT" \
        --control "http://$ADDR_control" --experiment "bench-$name" "$@" \
        >"$WORK/tap-$name.log" 2>&1 &
    TAP_PID=$!
    PIDS+=("$TAP_PID")
    wait_for_port "$TAP_PORT"; wait_for_port "$ADMIN_PORT"
}

# start_tap NAME CANDIDATE_URL [extra shadowdiff run flags…]: the embedded pipeline (`run`).
start_tap() {
    local name="$1" candidate="$2"; shift 2
    start_shadowdiff run "$name" --candidate "v2=$candidate" --data "$WORK/data-$name" "$@"
}

# start_nginx WORKERS UPSTREAM_ADDR: Debian's nginx as a plain keep-alive reverse proxy in front
# of UPSTREAM_ADDR (the peer the tap is measured against); sets NGINX_PORT and NGINX_PID.
start_nginx() {
    local workers="$1" upstream="$2"
    command -v nginx >/dev/null || { echo "nginx is missing: apt-get install -y nginx-light" >&2; exit 2; }
    NGINX_PORT="$(free_port)"
    mkdir -p "$WORK/nginx"
    cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes $workers;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    upstream control { server $upstream; keepalive 256; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://control;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering on;
        }
    }
}
CONF
    nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 2>>"$WORK/nginx/error.log" &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    wait_for_port "$NGINX_PORT"
}

# nginx_pids: the nginx master started by start_nginx and its workers (for CPU accounting).
nginx_pids() { echo "$NGINX_PID" $(cat "/proc/$NGINX_PID/task/"*/children 2>/dev/null); }

stop_tap() {
    kill "$TAP_PID" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$TAP_PID" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$TAP_PID" 2>/dev/null || true
    wait "$TAP_PID" 2>/dev/null || true
}

# metric NAME [LABEL-FILTER]: sum of a counter on the tap's admin port (0 when absent).
metric() {
    local body
    body="$(curl -sf --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null \
        || wget -qO- -T 5 "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null || true)"
    printf '%s\n' "$body" | awk -v n="$1" -v f="${2:-}" '
        $0 !~ /^#/ { split($1, a, "{"); if (a[1] == n && index($1, f) > 0) s += $2 }
        END { printf "%d\n", s }'
}

# run_wrk LABEL URL [extra wrk args]: bounded wrk run; sets RPS, P99_MS, P50_MS, REQS.
WRK_THREADS="${WRK_THREADS:-2}"; WRK_CONNS="${WRK_CONNS:-64}"; WRK_SECS="${WRK_SECS:-10}"
run_wrk() {
    local label="$1" url="$2"; shift 2
    local out="$WORK/wrk-$label.txt"
    timeout $((WRK_SECS + 30)) wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WRK_SECS}s" \
        --timeout 10s --latency "$@" "$url" >"$out" 2>&1 || true
    RPS="$(awk '/^Requests\/sec:/ { print $2 }' "$out")"
    REQS="$(awk '/requests in/ { print $1 }' "$out")"
    P50_MS="$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")"
    P99_MS="$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")"
    ERRS="$(awk '/Non-2xx|Socket errors/ { print }' "$out" | tr '\n' ' ')"
    if [ -z "$RPS" ]; then echo "wrk failed for $label:" >&2; cat "$out" >&2; exit 1; fi
}

# wrk prints 812.00us, 1.23ms, 2.01s: normalize to ms.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else printf "nan" }'
}

# cpu_ms PID…: user+system CPU time the processes (all threads) used so far, in ms.
CLK_TCK="$(getconf CLK_TCK)"
cpu_ms() {
    local total=0 pid t
    for pid in "$@"; do
        t="$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)"
        total=$((total + t))
    done
    echo $((total * 1000 / CLK_TCK))
}

# thread_cpu_ms PID PREFIX: CPU time (ms) of the live threads of PID whose name starts with
# PREFIX (e.g. shadowdiff-tap- for the tap's serving threads).
thread_cpu_ms() {
    local ticks
    ticks="$(cat /proc/"$1"/task/*/stat 2>/dev/null | awk -v p="($2" '
        { if (index($2, p) == 1) t += $14 + $15 } END { printf "%d", t }')"
    echo $((ticks * 1000 / CLK_TCK))
}

# SD_BIN=path overrides the shadowdiff binary (e.g. a baseline build for before/after figures).
SD="${SD_BIN:-$SD}"

# add_to ARRAY KEY VALUE: ARRAY[KEY] += VALUE (decimals), for sums over rounds.
add_to() {
    local -n sums="$1"
    sums[$2]="$(awk -v a="${sums[$2]:-0}" -v b="${3:-0}" 'BEGIN { print a + b }')"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "nan" }'; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.3f", a - b }'; }

machine() {
    echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r)"
    echo "wrk -t$WRK_THREADS -c$WRK_CONNS -d${WRK_SECS}s --latency"
}
