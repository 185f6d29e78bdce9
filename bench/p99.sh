#!/usr/bin/env bash
# Tap latency at a fixed request rate: the same open-loop load (bench-load, so queueing at
# saturation does not hide the tap's own cost) against the control directly, through Debian's
# nginx as a plain reverse proxy (the peer), and through the full tap (every request captured,
# replayed to a candidate, diffed and stored in the same process). Prints p50/p99/p99.9 per rate
# and round, each proxy's p99 minus direct p99 (goal for the tap: within 1 ms), the CPU each
# proxy spent per request (all nginx processes; the whole shadowdiff process, replay, diff and
# store included; on a shared machine this is steadier than latency), and per rate the median and
# worst p99 difference over the rounds.
#
#   bench/p99.sh [--rates "500 2000 5000"] [--secs N] [--conns N] [--rounds N] [--worst N]
#
# --worst N prints, for every run, when the N slowest requests were due (tells a one-off stall
# from a periodic one). The load comes from `bench-load` (bench/src/bin): requests are due at
# fixed intervals and latency counts from the due time. Environment: NO_BUILD=1 skips the
# release build; CORPUS=path to twitter.json; NGINX_WORKERS (default auto).
source "$(dirname "$0")/common.sh"

RATES="500 2000 5000"; SECS=10; CONNS=256; ROUNDS=1; WORST=0
NGINX_WORKERS="${NGINX_WORKERS:-auto}"
usage() { sed -n '2,14p' "$0"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --rates) RATES="$2"; shift 2 ;;
        --secs) SECS="$2"; shift 2 ;;
        --conns) CONNS="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        --worst) WORST="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
case "$SECS$CONNS$ROUNDS$WORST${RATES// /}" in *[!0-9]*) echo "numbers expected" >&2; exit 2 ;; esac
build

bench_server control
bench_server candidate --variant candidate
start_nginx "$NGINX_WORKERS" "$ADDR_control"
start_tap p99 "http://$ADDR_candidate"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r)"

# latency LABEL RATE URL → "p50 p99 p999 success sent" in milliseconds (slowest requests to
# stderr with --worst, prefixed by LABEL).
latency() {
    "$ROOT/target/release/bench-load" --rate "$2" --secs "$SECS" --max-in-flight "$CONNS" \
        --worst "$WORST" "$3" 2> >(sed "s|^|  $1: |" >&2)
}

declare -A OVER   # "rate target" → p99 minus direct p99 of each round, space-separated
printf "%-6s %-8s %-7s %9s %9s %9s %8s %12s %12s\n" round rate target p50_ms p99_ms p99.9_ms success "p99-direct" "cpu_us/req"
for round in $(seq "$ROUNDS"); do
    for rate in $RATES; do
        read -r d50 d99 d999 dok _ < <(latency "direct $rate/s" "$rate" "http://$ADDR_control/statuses/0")
        printf "%-6s %-8s %-7s %9s %9s %9s %8s\n" "$round" "$rate/s" direct "$d50" "$d99" "$d999" "$dok"
        for target in nginx tap; do
            case "$target" in
                nginx) port="$NGINX_PORT"; read -ra procs <<<"$(nginx_pids)" ;;
                tap) port="$TAP_PORT"; procs=("$TAP_PID") ;;
            esac
            cpu_before="$(cpu_ms "${procs[@]}")"
            read -r p50 p99 p999 ok sent < <(latency "$target $rate/s" "$rate" "http://127.0.0.1:$port/statuses/0")
            cpu="$(awk -v ms="$(( $(cpu_ms "${procs[@]}") - cpu_before ))" -v n="$sent" 'BEGIN { printf "%.1f", ms * 1000 / n }')"
            over="$(minus "$p99" "$d99")"
            OVER["$rate $target"]+="$over "
            printf "%-6s %-8s %-7s %9s %9s %9s %8s %12s %12s\n" "$round" "$rate/s" "$target" "$p50" "$p99" "$p999" "$ok" "$over ms" "$cpu"
        done
    done
done

echo
echo "p99 over direct across $ROUNDS round(s) (goal for the tap: within 1 ms):"
for rate in $RATES; do
    for target in nginx tap; do
        python3 - "$rate" "$target" ${OVER["$rate $target"]} <<'PY'
import statistics, sys
rate, target, values = sys.argv[1], sys.argv[2], [float(v) for v in sys.argv[3:]]
within = sum(v <= 1.0 for v in values)
print(f"  {rate + '/s':8} {target:6} median {statistics.median(values):+.3f} ms"
      f"  worst {max(values):+.3f} ms  within 1 ms in {within} of {len(values)} runs")
PY
    done
done
echo "tap captured $(metric shadowdiff_capture_exchanges_total) exchanges, dropped $(metric shadowdiff_capture_dropped_total)"
stop_tap
