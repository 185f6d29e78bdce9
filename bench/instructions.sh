#!/usr/bin/env bash
# Instructions per exchange of the full tap, by thread group (serving threads, replay, differs,
# writer), counted by valgrind's callgrind: the same for the same binary and inputs however busy
# the machine is, so it compares builds where CPU time is too noisy (SD_BIN=baseline for the
# before). The tap runs under callgrind twice, for N and 3N requests at a fixed rate; per
# exchange = (3N run - N run) / 2N, so start-up and shutdown cancel out. A thread's group is
# found from the functions it ran (relay_exchange, Replayer::replay, Differ::diff, write_batch).
#
#   bench/instructions.sh [--requests N] [--rate N] [--sampling PERCENT]
#
# --sampling 0 runs the tap as a plain proxy (nothing copied): the serving threads' figure
# against the default (100) is what capturing costs them.
# Needs valgrind. Environment: NO_BUILD=1 skips the release build; SD_BIN=path runs another
# shadowdiff binary. Takes about N/rate * 4 s plus start-up (defaults: 1000 at 100 req/s, ~1 min).
source "$(dirname "$0")/common.sh"

REQUESTS=1000; RATE=100; SAMPLING=100
usage() { sed -n '2,15p' "$0"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --requests) REQUESTS="$2"; shift 2 ;;
        --rate) RATE="$2"; shift 2 ;;
        --sampling) SAMPLING="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
case "$REQUESTS$RATE$SAMPLING" in *[!0-9]*|"") echo "numbers expected" >&2; exit 2 ;; esac
[ "$RATE" -gt 0 ] && [ "$REQUESTS" -ge "$RATE" ] || { echo "--requests must be at least --rate" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install -y valgrind" >&2; exit 2; }
build
TARGET_SD="$SD"

bench_server control
bench_server candidate --variant candidate
printf '[capture.sampling]\npercent = %s.0\n' "$SAMPLING" >"$WORK/sampling.toml"

# Thread group of one callgrind file, from the functions it ran.
group_of() {
    if grep -q "relay_exchange" "$1"; then echo serving
    elif grep -q "Replayer::replay" "$1"; then echo replay
    elif grep -q "Differ::diff" "$1"; then echo differs
    elif grep -q "write_batch" "$1"; then echo writer
    else echo other; fi
}

# run N: the tap under callgrind for N requests; prints "group instructions" per thread.
run() {
    local n="$1" out="$WORK/cg-$1"
    mkdir -p "$out"
    printf '#!/usr/bin/env bash\nexec valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=%s/cg.%%p %s "$@"\n' \
        "$out" "$TARGET_SD" >"$WORK/under-callgrind.sh"
    chmod +x "$WORK/under-callgrind.sh"
    SD="$WORK/under-callgrind.sh"
    start_tap "cg$n" "http://$ADDR_candidate" --config "$WORK/sampling.toml"
    sleep 2
    "$ROOT/target/release/bench-load" --rate "$RATE" --secs "$((n / RATE))" --max-in-flight 64 \
        "http://127.0.0.1:$TAP_PORT/statuses/0" >/dev/null 2>&1
    sleep 2
    local captured
    captured="$(metric shadowdiff_capture_exchanges_total)"
    stop_tap
    SD="$TARGET_SD"
    echo "run of $n requests: $captured captured" >&2
    local file total
    for file in "$out"/cg.*-*; do
        total="$(awk '/^(summary|totals):/ { print $2; exit }' "$file")"
        echo "$(group_of "$file") ${total:-0}"
    done
}

small="$(run "$REQUESTS")"
large="$(run "$((3 * REQUESTS))")"
echo "machine: $(nproc) cores, $(uname -r); binary $TARGET_SD; sampling $SAMPLING%"
echo "instructions per exchange (callgrind; ($((3 * REQUESTS))-request run - $REQUESTS-request run) / $((2 * REQUESTS)))"
{ echo "$small" | sed 's/^/small /'; echo "$large" | sed 's/^/large /'; } | awk -v n="$((2 * REQUESTS))" '
    { sum[$1 " " $2] += $3; groups[$2] = 1 }
    END {
        for (g in groups) if (g != "other") {
            per[g] = (sum["large " g] - sum["small " g]) / n; all += per[g]
            printf "  %-16s %10.0f\n", g, per[g]
        }
        printf "  %-16s %10.0f\n", "all four", all
    }'
