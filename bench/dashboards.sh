#!/usr/bin/env bash
# Dashboard queries over many rows on the real ClickHouse: fills a scratch database with
# --rows synthetic result rows spread over --days days (through the schema `shadowdiff migrate`
# creates, so the per-minute view aggregates them as the sink's inserts would be), then times
# every query of deploy/clickhouse/queries/minutes/ (the per-minute aggregates, what dashboards
# over weeks should use; goal: under 1 s each) and, for comparison, the exact queries of
# deploy/clickhouse/queries/ (deduplicated per exchange like the report; --exact-runs 0 skips).
#
#   bench/dashboards.sh [--rows N] [--days N] [--runs N] [--exact-runs N] [--keep]
#
# Needs the ClickHouse of `scripts/services.sh start` (SHADOWDIFF_TEST_CLICKHOUSE, read from
# .services/env when unset). Exits 1 when a per-minute query takes 1 s or more (median).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROWS=10000000; DAYS=14; RUNS=5; EXACT_RUNS=1; KEEP=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rows) ROWS="$2"; shift 2 ;;
        --days) DAYS="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        --exact-runs) EXACT_RUNS="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ -z "${SHADOWDIFF_TEST_CLICKHOUSE:-}" ] && [ -f "$ROOT/.services/env" ]; then
    # shellcheck disable=SC1091
    source "$ROOT/.services/env"
fi
CH="${SHADOWDIFF_TEST_CLICKHOUSE:?start ClickHouse first: scripts/services.sh start}"
DB="sd_bench_dashboards"
(cd "$ROOT" && cargo build -q -p shadowdiff-cli)
SD="$ROOT/target/debug/shadowdiff"

sql() { curl -sS --fail-with-body "$CH/" --data-binary "$1"; }
cleanup() { [ -n "$KEEP" ] || sql "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; }
trap cleanup EXIT

sql "DROP DATABASE IF EXISTS $DB"
"$SD" migrate --clickhouse "$CH" --database "$DB" >/dev/null
NOW=$(date +%s)
START=$(( NOW - DAYS * 86400 ))
STEP=$(python3 -c "print(repr($DAYS * 86400 * 3 / $ROWS))")
t0=$(date +%s.%N)
sed "s/DB\./$DB./; s/START/$START/g; s/STEP/$STEP/g; s/ROWS/$ROWS/" "$ROOT/bench/dashboards-rows.sql" \
    | grep -v '^--' | curl -sS --fail-with-body "$CH/" --data-binary @-
t1=$(date +%s.%N)
sql "OPTIMIZE TABLE $DB.diff_minutes FINAL" >/dev/null || true
echo "ClickHouse $(sql 'SELECT version()'): $(sql "SELECT count() FROM $DB.diff_records") rows in diff_records, $(sql "SELECT count() FROM $DB.diff_minutes") in diff_minutes, over $DAYS days; inserted in $(python3 -c "print(round($t1 - $t0, 1))") s"

since=$(date -u -d "@$START" '+%F %T'); until=$(date -u -d "@$(( NOW + 60 ))" '+%F %T')
# ClickHouse 18.16 has no query parameters: the values go into the text.
render() {
    sed "s/shadowdiff\./$DB./g; s/{experiment:String}/'bench'/g; \
         s/{since:DateTime}/toDateTime('$since')/g; s/{until:DateTime}/toDateTime('$until')/g; \
         s/{bucket_seconds:UInt32}/3600/g" "$1"
}
# time_query FILE RUNS: prints the median wall time in seconds and the rows returned.
time_query() {
    local file="$1" runs="$2" times=() rows=0 i
    local q; q="$(render "$file")"
    for i in $(seq "$runs"); do
        local out
        out=$(curl -sS --fail-with-body -o /tmp/sd-dash-out.$$ -w '%{time_total}' "$CH/?max_memory_usage=8000000000" --data-binary "$q")
        times+=("$out")
        rows=$(wc -l < /tmp/sd-dash-out.$$)
    done
    rm -f /tmp/sd-dash-out.$$
    printf '%s\n' "${times[@]}" | sort -n | awk -v r="$rows" '{a[NR]=$1} END {printf "%.3f %d\n", a[int((NR+1)/2)], r}'
}

printf '%-28s %12s %8s %12s %8s %8s\n' query "minutes (s)" rows "exact (s)" rows "ratio"
fail=0
for f in "$ROOT"/deploy/clickhouse/queries/minutes/*.sql; do
    name=$(basename "$f" .sql)
    read -r fast fast_rows < <(time_query "$f" "$RUNS")
    if [ "$EXACT_RUNS" -gt 0 ]; then
        read -r exact exact_rows < <(time_query "$ROOT/deploy/clickhouse/queries/$name.sql" "$EXACT_RUNS")
        ratio=$(python3 -c "print(f'{$exact / max($fast, 0.001):.0f}x')")
    else
        exact="-"; exact_rows="-"; ratio="-"
    fi
    printf '%-28s %12s %8s %12s %8s %8s\n' "$name" "$fast" "$fast_rows" "$exact" "$exact_rows" "$ratio"
    if python3 -c "import sys; sys.exit(0 if $fast < 1.0 else 1)"; then :; else fail=1; fi
done
if [ "$fail" -ne 0 ]; then
    echo "FAIL: a per-minute dashboard query took 1 s or more" >&2
    exit 1
fi
echo "PASS: every per-minute dashboard query answered in under 1 s over $ROWS rows"
