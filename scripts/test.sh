#!/usr/bin/env bash
# The one command that installs what the tests need and runs them all (README, .ci/run).
#
#   scripts/test.sh            install missing packages, start Kafka (tansu) and ClickHouse on
#                              loopback, run every test of the workspace, stop the servers
#   SKIP_DEPS=1 scripts/test.sh   the same without the install step (servers still started)
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
}

if [ "${SKIP_DEPS:-0}" != 1 ]; then
    install_deps
fi

log "Starting Kafka-protocol broker and ClickHouse on loopback."
scripts/services.sh start --fresh
trap 'scripts/services.sh stop || true' EXIT
# shellcheck disable=SC1091
source .services/env

log "Building."
cargo build --workspace --all-targets --locked

log "Fuzzing each target for a bounded time (cargo-fuzz on stable, --sanitizer none)."
scripts/fuzz.sh "${FUZZ_SECONDS:-20}"

log "Running every test."
results="$(mktemp)"
set +e
cargo test --workspace --locked -- --test-threads="${TEST_THREADS:-2}" 2>&1 | tee "$results"
status=${PIPESTATUS[0]}
set -e
# One closing line with the totals of every test binary (cargo prints one line per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$results"
rm -f "$results"
exit "$status"
