#!/usr/bin/env bash
# The fault-injection run on the distributed deployment (cli/tests/faults.rs), long form:
#
#   scripts/fault-run.sh [--secs N] [--faults N] [--seed N] [--targets broker,clickhouse,replay,diff,capture] [--idempotence on] [--interval-ms N]
#
# Defaults: 600 s of traffic and 30 faults (the short form, 40 s and 6 faults, runs in
# scripts/test.sh), on the broker, ClickHouse, replay, diff and capture (`--targets` narrows
# it), with producers not idempotent unless `--idempotence on` (docs/reliability.md says why). The test starts its own broker and ClickHouse (it kills them), so only
# their binaries are needed: scripts/services.sh deps. It prints the schedule, every fault as
# it happens and the reconciliation table (docs/reliability.md), and fails if anything was
# lost or counted twice. The seed of a run replays its schedule.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
secs=600 faults=30 seed=""
# 25 requests/s: the test broker (tansu on sqlite, sharing 2 cores with everything else) falls
# behind on group heartbeats at the short run's 66/s sustained for 10 minutes.
export SHADOWDIFF_FAULT_INTERVAL_MS="${SHADOWDIFF_FAULT_INTERVAL_MS:-40}"
while [ $# -gt 0 ]; do
    case "$1" in
        --secs) secs="$2"; shift 2 ;;
        --faults) faults="$2"; shift 2 ;;
        --seed) seed="$2"; shift 2 ;;
        --targets) export SHADOWDIFF_FAULT_TARGETS="$2"; shift 2 ;;
        --idempotence) export SHADOWDIFF_FAULT_IDEMPOTENCE="$2"; shift 2 ;;
        --interval-ms) export SHADOWDIFF_FAULT_INTERVAL_MS="$2"; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
export SHADOWDIFF_FAULT_SECS="$secs" SHADOWDIFF_FAULTS="$faults"
[ -n "$seed" ] && export SHADOWDIFF_FAULT_SEED="$seed"
# Traffic, then up to 20 minutes for the pipeline to settle (it stops waiting after 90 s
# without progress), plus servers' start-up.
timeout --kill-after=30 "$((secs + 1500))" \
    cargo test --locked -p shadowdiff-cli --test faults -- --nocapture
