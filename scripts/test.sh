#!/usr/bin/env bash
# The one command that installs what the tests need and runs them all (README, .ci/run).
#
#   scripts/test.sh            install missing packages, start Kafka (tansu) and ClickHouse on
#                              loopback, run every test of the workspace, stop the servers
#   SKIP_DEPS=1 scripts/test.sh   the same without the install step (servers still started)
#
# Each phase runs under its own time limit (install 45 min, servers 5, build 30, fuzz 20,
# tests TEST_MINUTES, default 40) and names itself when it overruns; every test binary runs
# even after one fails (--no-fail-fast), and the last line totals them all.
#
# Nothing is skipped: tests that need a server fail when it is not there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

log() { printf '[test] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_deps() {
    # Debian packages the tests drive for real: nginx (mirror source), chromium (HTML report),
    # wrk (benchmarks), curl; ClickHouse, tansu and the C toolchain come from services.sh.
    local missing=()
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
    command -v chromium >/dev/null || missing+=(chromium)
    command -v curl >/dev/null || missing+=(curl)
    if [ ${#missing[@]} -gt 0 ]; then
        log "Installing ${missing[*]} from Debian."
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
    scripts/services.sh deps
    install_chdb
}

# chdb-core: a current ClickHouse (26.x) in-process, for the current-release schema and the
# dashboard queries with real query parameters (clickhouse/tests/dashboards.rs). Debian's
# server is 18.16 and no current server package installs here.
CHDB_VENV="${SHADOWDIFF_CHDB_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/shadowdiff/chdb-venv}"
install_chdb() {
    if "$CHDB_VENV/bin/python" -c 'import chdb' 2>/dev/null; then
        return
    fi
    if ! python3 -c 'import ensurepip' 2>/dev/null; then
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    fi
    log "Installing chdb-core (about 180 MB) into $CHDB_VENV."
    mkdir -p "$(dirname "$CHDB_VENV")"
    python3 -m venv "$CHDB_VENV"
    "$CHDB_VENV/bin/pip" install -q "chdb-core==26.9.0"
}

# phase NAME LIMIT COMMAND…: runs one phase under its own time limit, so a hang names the phase
# that hung instead of stalling the whole run until CI's limit (.ci/run bounds the total).
phase() {
    local name="$1" limit="$2"; shift 2
    log "$name (at most $limit)."
    local status=0
    timeout --kill-after=30 "$limit" "$@" || status=$?
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        log "phase '$name' did not finish within $limit; stopping."
    fi
    return "$status"
}
export CHDB_VENV
export -f install_deps install_chdb log as_root

if [ "${SKIP_DEPS:-0}" != 1 ]; then
    phase "Installing what the tests need" 45m bash -c 'set -euo pipefail; install_deps'
fi

phase "Starting Kafka-protocol broker and ClickHouse on loopback" 5m scripts/services.sh start --fresh
trap 'scripts/services.sh stop || true' EXIT
# shellcheck disable=SC1091
source .services/env

export SHADOWDIFF_TEST_CHDB_PYTHON="$CHDB_VENV/bin/python"

# A one-shot build gains nothing from incremental state, which costs gigabytes of disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
log "Disk free for target/: $(df -h --output=avail "$ROOT" | tail -1 | tr -d ' ') (a clean build needs about ${DISK_NEEDED_GB:-8} GB)."
phase "Building" 30m cargo build --workspace --all-targets --locked

phase "Fuzzing each target for a bounded time (cargo-fuzz on stable, --sanitizer none)" 20m \
    scripts/fuzz.sh "${FUZZ_SECONDS:-20}"

log "Running every test (at most ${TEST_MINUTES:-40}m; every test binary, even after a failure)."
results="$(mktemp)"
set +e
timeout --kill-after=30 "${TEST_MINUTES:-40}m" \
    cargo test --workspace --locked --no-fail-fast -- --test-threads="${TEST_THREADS:-2}" 2>&1 \
    | tee "$results"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    log "phase 'Running every test' did not finish within ${TEST_MINUTES:-40}m; stopping."
fi
# One closing line with the totals of every test binary (cargo prints one line per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$results"
rm -f "$results"
exit "$status"
