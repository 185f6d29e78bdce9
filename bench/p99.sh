#!/usr/bin/env bash
# Tap latency at a fixed request rate: the same open-loop load (bench-load, so queueing at
# saturation does not hide the tap's own cost) against the control directly and through the full
# tap (every request captured, replayed to a candidate, diffed and stored in the same process).
# Prints p50/p99/p99.9 for each rate and the tap's p99 minus direct p99 (goal: within 1 ms).
#
#   bench/p99.sh [--rates "500 2000 5000"] [--secs N] [--conns N]
#
# The load comes from `bench-load` (bench/src/bin): requests are due at fixed intervals and
# latency counts from the due time. Environment: NO_BUILD=1 skips the release build;
# CORPUS=path to twitter.json.
source "$(dirname "$0")/common.sh"

RATES="500 2000 5000"; SECS=10; CONNS=256
usage() { sed -n '2,11p' "$0"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --rates) RATES="$2"; shift 2 ;;
        --secs) SECS="$2"; shift 2 ;;
        --conns) CONNS="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
case "$SECS$CONNS${RATES// /}" in *[!0-9]*) echo "numbers expected" >&2; exit 2 ;; esac
build

bench_server control
bench_server candidate --variant candidate
start_tap p99 "http://$ADDR_candidate"

# latency RATE URL → "p50 p99 p999 success sent" in milliseconds.
latency() {
    "$ROOT/target/release/bench-load" --rate "$1" --secs "$SECS" --max-in-flight "$CONNS" "$2"
}

printf "%-8s %-7s %9s %9s %9s %8s\n" rate target p50_ms p99_ms p99.9_ms success
for rate in $RATES; do
    read -r d50 d99 d999 dok _ < <(latency "$rate" "http://$ADDR_control/statuses/0")
    read -r t50 t99 t999 tok _ < <(latency "$rate" "http://127.0.0.1:$TAP_PORT/statuses/0")
    printf "%-8s %-7s %9s %9s %9s %8s\n" "$rate/s" direct "$d50" "$d99" "$d999" "$dok"
    printf "%-8s %-7s %9s %9s %9s %8s\n" "$rate/s" tap "$t50" "$t99" "$t999" "$tok"
    python3 -c "print(f'{\"\":8} tap p99 - direct p99 = {$t99 - $d99:+.3f} ms (goal: within 1 ms)')"
done
captured="$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^shadowdiff_capture_exchanges_total/ {s += $2} END {print s + 0}')"
dropped="$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^shadowdiff_capture_dropped_total/ {s += $2} END {print s + 0}')"
echo "tap captured $captured exchanges, dropped $dropped"
stop_tap
