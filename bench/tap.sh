#!/usr/bin/env bash
# Tap overhead: the same wrk load against (a) the control directly, (b) shadowdiff's tap
# (`shadowdiff run`, capturing, replaying to a candidate and diffing in the same process),
# (b') the tap with sampling at 0% (proxy path only) and (c) Debian's nginx as a plain
# keepalive reverse proxy. Prints req/s, p50/p99, CPU per request and the ratios.
#
#   bench/tap.sh [--secs N] [--conns N] [--threads N] [--nginx-workers N|auto] [--rounds N]
#
# Environment: NO_BUILD=1 skips `cargo build --release`; CORPUS=path to twitter.json.
source "$(dirname "$0")/common.sh"

NGINX_WORKERS=auto; ROUNDS=1
usage() { sed -n '2,10p' "$0"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --secs) WRK_SECS="$2"; shift 2 ;;
        --conns) WRK_CONNS="$2"; shift 2 ;;
        --threads) WRK_THREADS="$2"; shift 2 ;;
        --nginx-workers) NGINX_WORKERS="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
case "$WRK_SECS$WRK_CONNS$WRK_THREADS$ROUNDS" in *[!0-9]*) echo "numbers expected" >&2; exit 2 ;; esac
command -v nginx >/dev/null || { echo "nginx is missing: apt-get install -y nginx-light" >&2; exit 2; }
build

bench_server control
bench_server candidate --variant candidate

start_nginx "$NGINX_WORKERS" "$ADDR_control"

# The same tap with sampling at 0%: the proxy path alone, nothing copied (apples to apples with nginx).
printf '[capture.sampling]\npercent = 0.0\n' >"$WORK/proxy-only.toml"
start_tap proxy "http://$ADDR_candidate" --config "$WORK/proxy-only.toml"
PROXY_PORT="$TAP_PORT"; PROXY_PID="$TAP_PID"
start_tap tap "http://$ADDR_candidate"

machine
echo "nginx worker_processes $NGINX_WORKERS; tap: shadowdiff run (default settings: queue 10000, replay concurrency 64, differ threads = cores)"
echo "control and candidate: bench-server, 1 runtime thread each; everything shares $(nproc) cores"
URL_PATH="/statuses/0"
declare -A SUM_RPS SUM_P99 SUM_P50 SUM_CPU SUM_SERVING SUM_PER_EXCHANGE
for round in $(seq "$ROUNDS"); do
    for target in direct nginx proxy tap; do
        case "$target" in
            direct) url="http://$ADDR_control$URL_PATH"; procs=("$PID_control") ;;
            nginx) url="http://127.0.0.1:$NGINX_PORT$URL_PATH"; read -ra procs <<<"$(nginx_pids)" ;;
            proxy) url="http://127.0.0.1:$PROXY_PORT$URL_PATH"; procs=("$PROXY_PID") ;;
            tap) url="http://127.0.0.1:$TAP_PORT$URL_PATH"; procs=("$TAP_PID")
                 cap0="$(metric shadowdiff_capture_exchanges_total)"
                 drop0="$(metric shadowdiff_capture_dropped_total)" ;;
        esac
        c0="$(cpu_ms "${procs[@]}")"
        s0="$(thread_cpu_ms "${procs[0]}" shadowdiff-tap-)"
        declare -A behind0=()
        for group in shadowdiff-repl shadowdiff-diff shadowdiff-writ; do
            behind0[$group]="$(thread_cpu_ms "${procs[0]}" "$group")"
        done
        run_wrk "$target-$round" "$url"
        # The tap's serving threads alone: the client path, including the copy of each exchange.
        serving_us="$(awk -v c=$(( $(thread_cpu_ms "${procs[0]}" shadowdiff-tap-) - s0 )) -v r="$REQS" 'BEGIN { printf "%.1f", c * 1000 / r }')"
        # CPU of the proxy (or of the control, for direct), per request, in microseconds.
        cpu_us="$(awk -v c=$(( $(cpu_ms "${procs[@]}") - c0 )) -v r="$REQS" 'BEGIN { printf "%.1f", c * 1000 / r }')"
        # Everything behind the tap: it keeps replaying and diffing after wrk stops.
        if [ "$target" = tap ]; then
            for _ in $(seq 100); do
                [ "$(metric shadowdiff_store_rows_total)" -ge "$(metric shadowdiff_capture_exchanges_total)" ] && break
                sleep 0.1
            done
            cpu_us="$(awk -v c=$(( $(cpu_ms "${procs[@]}") - c0 )) -v r="$REQS" 'BEGIN { printf "%.1f", c * 1000 / r }')"
        fi
        if [ "$target" = tap ]; then
            sleep 1
            cap=$(( $(metric shadowdiff_capture_exchanges_total) - cap0 ))
            drop=$(( $(metric shadowdiff_capture_dropped_total) - drop0 ))
            TAP_REQS="$REQS"
            # CPU per exchange the tap carried through every stage: the serving threads' cost per
            # client request, plus everything behind them per captured exchange (exchanges
            # dropped at a full queue cost the serving threads only, so CPU over all client
            # requests would flatter the tap when it sheds).
            PER_EXCHANGE="$(awk -v cpu="$cpu_us" -v s="$serving_us" -v r="$REQS" -v c="$cap" \
                'BEGIN { if (c > 0) printf "%.1f", s + (cpu - s) * r / c; else print "0" }')"
            add_to SUM_PER_EXCHANGE tap "$PER_EXCHANGE"
            # Where the CPU behind the serving threads goes, per captured exchange.
            BEHIND=""
            for group in shadowdiff-repl shadowdiff-diff shadowdiff-writ; do
                BEHIND+="$(awk -v g="${group#shadowdiff-}" -v c=$(( $(thread_cpu_ms "${procs[0]}" "$group") - behind0[$group] )) -v n="$cap" \
                    'BEGIN { if (n > 0) printf " %s %.1f", g, c * 1000 / n }')"
            done
        fi
        case "$target" in proxy|tap) serving="   serving threads $serving_us us/req" ;; *) serving="" ;; esac
        printf 'round %d %-7s %10.0f req/s   p50 %7.3f ms   p99 %7.3f ms   cpu %6.1f us/req%s  %s\n' \
            "$round" "$target" "$RPS" "$P50_MS" "$P99_MS" "$cpu_us" "$serving" "$ERRS"
        add_to SUM_SERVING "$target" "${serving_us:-0}"
        add_to SUM_RPS "$target" "$RPS"
        add_to SUM_P99 "$target" "$P99_MS"
        add_to SUM_CPU "$target" "$cpu_us"
        add_to SUM_P50 "$target" "$P50_MS"
    done
    echo "round $round tap: $TAP_REQS client requests, $cap captured (queued for replay), $drop dropped; $PER_EXCHANGE us CPU per captured exchange (threads, us per exchange:$BEHIND)"
done
avg() { awk -v a="$1" -v n="$ROUNDS" 'BEGIN { printf "%.3f", a / n }'; }
D_RPS="$(avg "${SUM_RPS[direct]}")"; N_RPS="$(avg "${SUM_RPS[nginx]}")"; T_RPS="$(avg "${SUM_RPS[tap]}")"
D_P99="$(avg "${SUM_P99[direct]}")"; N_P99="$(avg "${SUM_P99[nginx]}")"; T_P99="$(avg "${SUM_P99[tap]}")"
P_RPS="$(avg "${SUM_RPS[proxy]}")"; P_P99="$(avg "${SUM_P99[proxy]}")"
echo
echo "summary over $ROUNDS round(s):"
printf '  direct %10.0f req/s  p99 %.3f ms   control cpu %s us/req\n' "$D_RPS" "$D_P99" "$(avg "${SUM_CPU[direct]}")"
printf '  nginx  %10.0f req/s  p99 %.3f ms   nginx cpu %s us/req\n' "$N_RPS" "$N_P99" "$(avg "${SUM_CPU[nginx]}")"
printf '  proxy  %10.0f req/s  p99 %.3f ms   shadowdiff cpu %s us/req (tap at 0%% sampling: proxy path only)\n' "$P_RPS" "$P_P99" "$(avg "${SUM_CPU[proxy]}")"
printf '  tap    %10.0f req/s  p99 %.3f ms   shadowdiff cpu %s us/req (tap + replay + diff + store)\n' "$T_RPS" "$T_P99" "$(avg "${SUM_CPU[tap]}")"
N_CPU="$(avg "${SUM_CPU[nginx]}")"; T_SERVING="$(avg "${SUM_SERVING[tap]}")"; P_SERVING="$(avg "${SUM_SERVING[proxy]}")"
echo "  tap serving threads    $T_SERVING us/req (client path + the copy of every exchange; replay and diff run on other threads)"
echo "  proxy serving threads  $P_SERVING us/req"
echo "  tap CPU per exchange   $(avg "${SUM_PER_EXCHANGE[tap]}") us (serving threads per request + replay, diff and store per captured exchange; issue 20 goal <= 30)"
# The same figure in units of nginx's CPU per proxied request, measured in the same run: comparable
# across machines and noisy neighbours (issue 20's 30 us was set where nginx took 15.4 us: 1.95x).
echo "  tap exchange / nginx   $(ratio "$(avg "${SUM_PER_EXCHANGE[tap]}")" "$N_CPU")x   (tap CPU per captured exchange / nginx CPU per proxied request, same run; 30 us was 1.95x where the goal was set)"
echo "  tap/nginx throughput   $(ratio "$T_RPS" "$N_RPS")   (goal >= 1; wrk, control, candidate, replay and diff share the same $(nproc) cores)"
echo "  capture capacity/nginx $(ratio "$N_CPU" "$T_SERVING")   (nginx CPU per request / tap serving-thread CPU per request: requests per core-second, capturing every request)"
echo "  tap/direct throughput  $(ratio "$T_RPS" "$D_RPS")"
echo "  tap p99 - direct p99   $(minus "$T_P99" "$D_P99") ms   (goal <= 1 ms)"
echo "  proxy/nginx throughput $(ratio "$P_RPS" "$N_RPS")"
echo "  proxy p99 - direct p99 $(minus "$P_P99" "$D_P99") ms"
echo "  nginx p99 - direct p99 $(minus "$N_P99" "$D_P99") ms"
stop_tap
echo "  tap run summary: $(grep -o 'captured.*' "$WORK/tap-tap.log" | tail -1)"
