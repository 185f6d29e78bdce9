#!/usr/bin/env bash
# Embedded pipeline throughput: wrk drives `shadowdiff run` (tap → queue → replay to a candidate
# → differ → embedded store) with 2–4 KB JSON bodies (27 Twitter statuses; the candidate changes
# one field, so every pair is parsed and diffed in full). Measures completed exchanges per second
# — diffed and stored — over a steady-state window, and the end-to-end rate including the drain.
#
#   bench/pipeline.sh [--secs N] [--warmup N] [--conns N] [--threads N] [--concurrency N]
#
# Environment: NO_BUILD=1 skips `cargo build --release`; CORPUS=path to twitter.json.
source "$(dirname "$0")/common.sh"

WRK_SECS=20; WARMUP=5; CONCURRENCY=""
usage() { sed -n '2,9p' "$0"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --secs) WRK_SECS="$2"; shift 2 ;;
        --warmup) WARMUP="$2"; shift 2 ;;
        --conns) WRK_CONNS="$2"; shift 2 ;;
        --threads) WRK_THREADS="$2"; shift 2 ;;
        --concurrency) CONCURRENCY="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
case "$WRK_SECS$WARMUP$WRK_CONNS$WRK_THREADS$CONCURRENCY" in *[!0-9]*) echo "numbers expected" >&2; exit 2 ;; esac
[ "$WARMUP" -lt "$WRK_SECS" ] || { echo "--warmup must be shorter than --secs" >&2; exit 2; }
build

bench_server control
bench_server candidate --variant candidate
extra=()
[ -n "$CONCURRENCY" ] && extra+=(--concurrency "$CONCURRENCY")
start_tap pipeline "http://$ADDR_candidate" "${extra[@]}"
machine
echo "bodies: $( [ -f "$CORPUS" ] && echo "27 twitter statuses from $CORPUS" || echo "one generated document (no corpus)"), candidate differs in body.retweet_count"

now() { date +%s.%N; }
t0="$(now)"
run_wrk pipeline "http://127.0.0.1:$TAP_PORT/" -s "$(dirname "$0")/rotate.lua" &
WRK_PID=$!
sleep "$WARMUP"
w0="$(now)"; rows0="$(metric shadowdiff_store_rows_total)"; cmp0="$(metric shadowdiff_diff_compared_total)"
cap0="$(metric shadowdiff_capture_exchanges_total)"; cpu0="$(cpu_ms "$TAP_PID")"
sleep $((WRK_SECS - WARMUP - 1))
w1="$(now)"; rows1="$(metric shadowdiff_store_rows_total)"; cmp1="$(metric shadowdiff_diff_compared_total)"
cap1="$(metric shadowdiff_capture_exchanges_total)"; cpu1="$(cpu_ms "$TAP_PID")"
wait "$WRK_PID" || true
RPS="$(awk '/^Requests\/sec:/ { print $2 }' "$WORK/wrk-pipeline.txt")"
# Drain: wait (bounded, 60 s) until every captured exchange is compared and stored.
captured="$(metric shadowdiff_capture_exchanges_total)"
for _ in $(seq 600); do
    [ "$(metric shadowdiff_store_rows_total)" -ge "$captured" ] && break
    sleep 0.1
done
t1="$(now)"
rows="$(metric shadowdiff_store_rows_total)"; compared="$(metric shadowdiff_diff_compared_total)"
dropped="$(metric shadowdiff_capture_dropped_total)"
win="$(awk -v a="$w0" -v b="$w1" 'BEGIN{print b-a}')"
echo
printf 'client load            %10.0f req/s (wrk, %s s)\n' "$RPS" "$WRK_SECS"
printf 'steady window          %10.1f s (after %s s warm-up)\n' "$win" "$WARMUP"
printf '  captured             %10.0f exchanges/s\n' "$(awk -v d=$((cap1 - cap0)) -v w="$win" 'BEGIN{print d/w}')"
printf '  diffed (compared)    %10.0f exchanges/s   (goal >= 10000)\n' "$(awk -v d=$((cmp1 - cmp0)) -v w="$win" 'BEGIN{print d/w}')"
printf '  stored rows          %10.0f rows/s\n' "$(awk -v d=$((rows1 - rows0)) -v w="$win" 'BEGIN{print d/w}')"
printf '  shadowdiff cpu       %10.1f us per exchange diffed (whole process)\n' \
    "$(awk -v ms=$((cpu1 - cpu0)) -v d=$((cmp1 - cmp0)) 'BEGIN{ if (d > 0) print ms * 1000 / d; else print 0 }')"
printf 'end to end: %s captured, %s dropped, %s compared, %s rows stored in %.1f s = %.0f exchanges/s\n' \
    "$captured" "$dropped" "$compared" "$rows" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" \
    "$(awk -v r="$rows" -v a="$t0" -v b="$t1" 'BEGIN{print r/(b-a)}')"
