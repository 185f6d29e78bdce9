#!/usr/bin/env bash
# Memory under sustained overload: capture faster than replay (the candidate answers after
# --slow-ms, replay concurrency --concurrency) for --secs; samples the shadowdiff process's
# VmRSS every second and checks it stays below --bound-mib and flat (the last third of the run
# grows by less than 10% over the middle third). Prints the drop counters.
#
# --kafka: the distributed tap instead (`shadowdiff capture --kafka`), with the broker stalled
# (SIGSTOP) once the tap is up, so every copy waits in the Kafka producer's local queue. Needs
# the broker of `scripts/services.sh start` (its .services/env and pid file); the broker is
# resumed (SIGCONT) on exit.
#
#   bench/memory.sh [--secs N] [--body-kib N] [--slow-ms N] [--concurrency N] [--bound-mib N]
#                   [--conns N] [--kafka] [-- extra `shadowdiff run`/`capture` flags…]
#
# Environment: NO_BUILD=1 skips `cargo build --release`; CORPUS=path to twitter.json.
source "$(dirname "$0")/common.sh"

WRK_SECS=60; BODY_KIB=0; SLOW_MS=1000; CONCURRENCY=4; BOUND_MIB=256; WRK_CONNS=32; EXTRA=(); KAFKA=""
usage() { sed -n '2,15p' "$0"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --secs) WRK_SECS="$2"; shift 2 ;;
        --body-kib) BODY_KIB="$2"; shift 2 ;;
        --slow-ms) SLOW_MS="$2"; shift 2 ;;
        --concurrency) CONCURRENCY="$2"; shift 2 ;;
        --bound-mib) BOUND_MIB="$2"; shift 2 ;;
        --conns) WRK_CONNS="$2"; shift 2 ;;
        --kafka) KAFKA=1; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
case "$WRK_SECS$BODY_KIB$SLOW_MS$CONCURRENCY$BOUND_MIB$WRK_CONNS" in *[!0-9]*) echo "numbers expected" >&2; exit 2 ;; esac
build

bench_server control --body-kib "$BODY_KIB"
if [ -n "$KAFKA" ]; then
    [ -f "$ROOT/.services/env" ] && [ -f "$ROOT/.services/kafka/pid" ] \
        || { echo "--kafka needs the test broker: scripts/services.sh start" >&2; exit 2; }
    # shellcheck disable=SC1091
    source "$ROOT/.services/env"
    BROKER_PID="$(cat "$ROOT/.services/kafka/pid")"
    kill -0 "$BROKER_PID" 2>/dev/null || { echo "the test broker is not running: scripts/services.sh start" >&2; exit 2; }
    trap 'kill -CONT "$BROKER_PID" 2>/dev/null; cleanup' EXIT
    # Separate capture processes must share a redaction key (any fixed one for the bench).
    export SHADOWDIFF_REDACTION_KEY="${SHADOWDIFF_REDACTION_KEY:-bench-memory-key}"
    start_shadowdiff capture memory --kafka "$SHADOWDIFF_TEST_KAFKA" \
        --exchanges-topic "bench-memory-$$" "${EXTRA[@]}"
    kill -STOP "$BROKER_PID"
    machine
    echo "control bodies: $( [ "$BODY_KIB" -gt 0 ] && echo "$BODY_KIB KiB" || echo "2-4 KB"); shadowdiff capture --kafka, broker stalled (SIGSTOP); extra flags: ${EXTRA[*]:-none}"
else
    bench_server candidate --variant candidate --body-kib "$BODY_KIB" --delay-ms "$SLOW_MS"
    start_tap memory "http://$ADDR_candidate" --concurrency "$CONCURRENCY" "${EXTRA[@]}"
    machine
    echo "control bodies: $( [ "$BODY_KIB" -gt 0 ] && echo "$BODY_KIB KiB" || echo "2-4 KB"); candidate answers after $SLOW_MS ms; replay concurrency $CONCURRENCY; extra flags: ${EXTRA[*]:-none}"
fi

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$TAP_PID/status" 2>/dev/null || echo 0; }
echo "idle RSS: $(( $(rss_kib) / 1024 )) MiB"
run_wrk memory "http://127.0.0.1:$TAP_PORT/" -s "$(dirname "$0")/rotate.lua" &
WRK_PID=$!
SAMPLES=()
for s in $(seq "$WRK_SECS"); do
    sleep 1
    r="$(rss_kib)"; SAMPLES+=("$r")
    printf 't=%3ds  RSS %6d MiB  captured %8s  dropped %8s\n' "$s" $((r / 1024)) \
        "$(metric shadowdiff_capture_exchanges_total)" "$(metric shadowdiff_capture_dropped_total)"
done
wait "$WRK_PID" || true
RPS="$(awk '/^Requests\/sec:/ { print $2 }' "$WORK/wrk-memory.txt")"
n=${#SAMPLES[@]}; third=$((n / 3))
stats="$(printf '%s\n' "${SAMPLES[@]}" | awk -v t="$third" -v n="$n" '
    { v[NR] = $1; if ($1 > max) max = $1 }
    END {
        for (i = t + 1; i <= 2 * t; i++) { if (v[i] > m2) m2 = v[i] }
        for (i = 2 * t + 1; i <= n; i++) { if (v[i] > m3) m3 = v[i] }
        printf "%d %d %d", max, m2, m3 }')"
read -r max mid last <<<"$stats"
echo
printf 'client load %.0f req/s; captured %s, dropped %s (queue full)\n' "$RPS" \
    "$(metric shadowdiff_capture_exchanges_total)" "$(metric shadowdiff_capture_dropped_total)"
printf 'RSS max %d MiB (bound %d MiB); middle third max %d MiB, last third max %d MiB\n' \
    $((max / 1024)) "$BOUND_MIB" $((mid / 1024)) $((last / 1024))
ok=1
[ $((max / 1024)) -lt "$BOUND_MIB" ] || { echo "FAIL: RSS reached the bound"; ok=0; }
[ "$last" -le $((mid + mid / 10)) ] || { echo "FAIL: RSS still growing in the last third"; ok=0; }
[ "$ok" = 1 ] && echo "PASS: flat and below $BOUND_MIB MiB"
kill -9 "$TAP_PID" 2>/dev/null || true; wait "$TAP_PID" 2>/dev/null || true
[ "$ok" = 1 ]
