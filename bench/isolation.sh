#!/usr/bin/env bash
# Tap isolation: the same wrk load through `shadowdiff run` with a healthy candidate, a dead one
# (nothing listening) and a slow one (answers after 5 s, the replay timeout). The client must not
# notice: throughput and p99 within 5% of the healthy run. Each scenario runs twice on a fresh
# tap: first at a fixed open-loop rate (bench-load, --rate req/s for --rate-secs; p99 without
# queueing noise), then at saturation (wrk; throughput, and p99 dominated by CPU contention).
#
#   bench/isolation.sh [--secs N] [--conns N] [--threads N] [--rounds N] [--slow-ms N]
#                      [--rate N] [--rate-secs N]
#
# Environment: NO_BUILD=1 skips `cargo build --release`; CORPUS=path to twitter.json.
source "$(dirname "$0")/common.sh"

ROUNDS=1; SLOW_MS=5000; RATE=5000; RATE_SECS=10
usage() { sed -n '2,11p' "$0"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --secs) WRK_SECS="$2"; shift 2 ;;
        --conns) WRK_CONNS="$2"; shift 2 ;;
        --threads) WRK_THREADS="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        --slow-ms) SLOW_MS="$2"; shift 2 ;;
        --rate) RATE="$2"; shift 2 ;;
        --rate-secs) RATE_SECS="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
case "$WRK_SECS$WRK_CONNS$WRK_THREADS$ROUNDS$SLOW_MS$RATE$RATE_SECS" in *[!0-9]*) echo "numbers expected" >&2; exit 2 ;; esac
build

bench_server control
bench_server healthy --variant candidate
bench_server slow --variant candidate --delay-ms "$SLOW_MS"
DEAD_URL="http://127.0.0.1:$(free_port)"   # nothing listens there

machine
echo "candidates: healthy bench-server, dead $DEAD_URL, slow bench-server answering after $SLOW_MS ms (replay timeout 5000 ms)"
declare -A SUM_RPS SUM_P99 SUM_FIXED_P99
for round in $(seq "$ROUNDS"); do
    for scenario in healthy dead slow; do
        case "$scenario" in
            healthy) cand="http://$ADDR_healthy" ;;
            dead) cand="$DEAD_URL" ;;
            slow) cand="http://$ADDR_slow" ;;
        esac
        start_tap "$scenario-$round" "$cand"
        read -r f50 f99 _ fok _ < <("$ROOT/target/release/bench-load" --rate "$RATE" \
            --secs "$RATE_SECS" --max-in-flight 256 "http://127.0.0.1:$TAP_PORT/statuses/0")
        printf 'round %d %-8s %10s req/s   p50 %7.3f ms   p99 %7.3f ms   success %s (fixed rate)\n' \
            "$round" "$scenario" "$RATE" "$f50" "$f99" "$fok"
        add_to SUM_FIXED_P99 "$scenario" "$f99"
        run_wrk "$scenario-$round" "http://127.0.0.1:$TAP_PORT/statuses/0"
        cap="$(metric shadowdiff_capture_exchanges_total)"
        drop="$(metric shadowdiff_capture_dropped_total)"
        errs="$(metric shadowdiff_replay_target_errors_total)"
        printf 'round %d %-8s %10.0f req/s   p50 %7.3f ms   p99 %7.3f ms   captured %s dropped %s   %s\n' \
            "$round" "$scenario" "$RPS" "$P50_MS" "$P99_MS" "$cap" "$drop" "$ERRS"
        # Don't wait for 5 s replays to drain: the measurement is over.
        kill -9 "$TAP_PID" 2>/dev/null || true; wait "$TAP_PID" 2>/dev/null || true
        add_to SUM_RPS "$scenario" "$RPS"
        add_to SUM_P99 "$scenario" "$P99_MS"
    done
done
echo
echo "summary over $ROUNDS round(s) (ratio to the healthy run; goal: throughput >= 0.95, p99 <= 1.05):"
for scenario in healthy dead slow; do
    printf '  %-8s at %s req/s: p99 %7.3f ms   p99 x%s\n' "$scenario" "$RATE" \
        "$(awk -v a="${SUM_FIXED_P99[$scenario]}" -v n="$ROUNDS" 'BEGIN{print a/n}')" \
        "$(ratio "${SUM_FIXED_P99[$scenario]}" "${SUM_FIXED_P99[healthy]}")"
done
for scenario in healthy dead slow; do
    printf '  %-8s saturated: %10.0f req/s  p99 %7.3f ms   throughput x%s   p99 x%s\n' \
        "$scenario" "$(awk -v a="${SUM_RPS[$scenario]}" -v n="$ROUNDS" 'BEGIN{print a/n}')" \
        "$(awk -v a="${SUM_P99[$scenario]}" -v n="$ROUNDS" 'BEGIN{print a/n}')" \
        "$(ratio "${SUM_RPS[$scenario]}" "${SUM_RPS[healthy]}")" \
        "$(ratio "${SUM_P99[$scenario]}" "${SUM_P99[healthy]}")"
done
