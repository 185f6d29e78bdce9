#!/usr/bin/env bash
# Wake-ups and CPU per exchange of the full tap at a fixed rate, by thread group (serving
# threads, replay, differs, writer): context switches, futex, sched_yield and write (eventfd
# wake-ups; the writer's file writes) system calls per exchange, the sockets' own calls (sends:
# sendto + writev; receives: recvfrom; epoll_wait) and all system calls, counted by `perf stat`
# from the kernel's tracepoints, and CPU time per exchange from /proc. An exchange needs at least
# 3 sends and 3 receives (client, control, candidate, one HTTP/1.1 message each way). Counts do
# not depend on how busy the machine is, so they compare builds on a shared machine
# (SD_BIN=baseline for the before).
#
#   bench/wakeups.sh [--rate N] [--secs N]
#
# Needs perf (Debian linux-perf) with access to syscall tracepoints (root). Environment:
# NO_BUILD=1 skips the release build; SD_BIN=path runs another shadowdiff binary.
source "$(dirname "$0")/common.sh"

RATE=5000; SECS=4
usage() { sed -n '2,14p' "$0"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --rate) RATE="$2"; shift 2 ;;
        --secs) SECS="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
case "$RATE$SECS" in *[!0-9]*) echo "numbers expected" >&2; exit 2 ;; esac
command -v perf >/dev/null || { echo "perf is missing: apt-get install -y linux-perf" >&2; exit 2; }
build

bench_server control
bench_server candidate --variant candidate
start_tap wakeups "http://$ADDR_candidate"
sleep 0.5

# Per thread group (name without its index): CPU ticks of its threads.
group_ticks() {
    cat /proc/"$TAP_PID"/task/*/stat 2>/dev/null | awk '{
        n = $2; gsub(/[()]/, "", n); sub(/-[0-9]*$/, "", n); t[n] += $14 + $15 }
        END { for (k in t) print k, t[k] }'
}
group_ticks >"$WORK/ticks-before"
events='context-switches,syscalls:sys_enter_futex,syscalls:sys_enter_sched_yield,syscalls:sys_enter_write'
events+=',syscalls:sys_enter_sendto,syscalls:sys_enter_writev,syscalls:sys_enter_recvfrom'
events+=',syscalls:sys_enter_epoll_wait,raw_syscalls:sys_enter'
perf stat -e "$events" --per-thread -p "$TAP_PID" -o "$WORK/perf.txt" -- \
    "$ROOT/target/release/bench-load" --rate "$RATE" --secs "$SECS" --max-in-flight 256 \
    "http://127.0.0.1:$TAP_PORT/statuses/0" >"$WORK/load.txt"
sleep 0.3
group_ticks >"$WORK/ticks-after"
exchanges=$((RATE * SECS))
read -r p50 p99 _ success _ <"$WORK/load.txt"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $exchanges requests at $RATE/s, p50 $p50 ms, p99 $p99 ms, success $success"
echo "captured $(metric shadowdiff_capture_exchanges_total), dropped $(metric shadowdiff_capture_dropped_total)"
printf "%-18s %10s %10s %10s %10s %8s %8s %8s %9s %10s\n" "per exchange" ctx-switch futex sched_yield write \
    send recv epoll syscalls "cpu_us"
awk -v n="$exchanges" -v tck="$CLK_TCK" '
    FILENAME ~ /ticks-before/ { before[$1] = $2; next }
    FILENAME ~ /ticks-after/ { cpu[$1] = ($2 - before[$1]) * 1e6 / tck / n; seen[$1] = 1; next }
    $3 != "context-switches" && $3 !~ /^(raw_)?syscalls:/ { next }
    {
        name = $1; sub(/-[0-9]+$/, "", name); sub(/-[0-9]*$/, "", name)   # perf: comm-tid
        count = $2; gsub(/,/, "", count)
        event = $3; sub(/^syscalls:sys_enter_/, "", event); sub(/^raw_syscalls:sys_enter$/, "all", event)
        if (event == "sendto" || event == "writev") event = "send"
        if (event == "recvfrom") event = "recv"
        c[name, event] += count; seen[name] = 1
    }
    END {
        for (g in seen) {
            label = g
            if (g == "shadowdiff-tap") label = "serving threads"
            if (g == "shadowdiff-repl") label = "replay"
            if (g == "shadowdiff-diff") label = "differs"
            if (g == "shadowdiff-writ") label = "writer"
            if (g == "tokio-rt-worker") label = "async workers"
            if (cpu[g] == 0 && c[g, "context-switches"] == 0) continue
            printf "%-18s %10.2f %10.2f %10.2f %10.2f %8.2f %8.2f %8.2f %9.2f %10.1f\n", label,
                c[g, "context-switches"] / n, c[g, "futex"] / n, c[g, "sched_yield"] / n,
                c[g, "write"] / n, c[g, "send"] / n, c[g, "recv"] / n, c[g, "epoll_wait"] / n,
                c[g, "all"] / n, cpu[g]
            sw += c[g, "context-switches"]; fu += c[g, "futex"]; yi += c[g, "sched_yield"]
            wr += c[g, "write"]; se += c[g, "send"]; re += c[g, "recv"]; ep += c[g, "epoll_wait"]
            al += c[g, "all"]; cp += cpu[g]
        }
        printf "%-18s %10.2f %10.2f %10.2f %10.2f %8.2f %8.2f %8.2f %9.2f %10.1f\n", "whole process",
            sw / n, fu / n, yi / n, wr / n, se / n, re / n, ep / n, al / n, cp
    }' "$WORK/ticks-before" "$WORK/ticks-after" "$WORK/perf.txt"
stop_tap
