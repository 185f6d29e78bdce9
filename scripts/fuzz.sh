#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time (default 20 s each); fails on a crash.
#
#   scripts/fuzz.sh [SECONDS]
#
# Works on a stable toolchain: `--sanitizer none` needs no nightly-only -Z flag (libFuzzer's
# coverage instrumentation uses stable -C flags). Crash inputs land in fuzz/artifacts/<target>/;
# reproduce one with `cargo fuzz run <target> --sanitizer none fuzz/artifacts/<target>/crash-…`.
set -euo pipefail

seconds="${1:-20}"
cd "$(dirname "$0")/../fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz (about 1-2 minutes)…"
    cargo install cargo-fuzz --locked
fi

targets=(decode_body parse_node format_class diff_json compare_responses relay_head chunked_decoder sandbox_target relay_differential import_goreplay import_envoy replay_response)
cargo fuzz build --sanitizer none   # all targets, once

for target in "${targets[@]}"; do
    echo "== fuzz ${target} for ${seconds}s"
    mkdir -p "corpus/${target}"
    # Committed seed inputs (fuzz/seeds/<target>/), when a target has them, start the corpus.
    seeds=()
    if [ -d "seeds/${target}" ]; then seeds=("seeds/${target}"); fi
    cargo fuzz run "${target}" --sanitizer none "corpus/${target}" ${seeds[@]+"${seeds[@]}"} -- \
        -max_total_time="${seconds}" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10
done
echo "fuzz: all targets ran ${seconds}s without a crash"
