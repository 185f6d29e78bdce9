#!/usr/bin/env bash
# Issue 5, side by side in one run: the criterion peers bench (shadowdiff vs scientisto and
# thesis) then Python `laboratory` for scale, with every figure as a ratio to shadowdiff enabled.
#
#   library/benches/peers.sh                   # criterion with --warm-up-time 1 --measurement-time 3
#   library/benches/peers.sh --measurement-time 5   # extra arguments go to criterion instead
#
# laboratory is installed into a venv under /tmp if missing (see laboratory_bench.py).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

crit_args=("$@")
if [ ${#crit_args[@]} -eq 0 ]; then
  crit_args=(--warm-up-time 1 --measurement-time 3)
fi

echo "== load before: $(uptime)"
bench_out="$(mktemp)"
trap 'rm -f "$bench_out"' EXIT
cargo bench -p shadowdiff --bench peers -- "${crit_args[@]}" | tee "$bench_out"

echo
echo "== Python laboratory (for scale)"
lab_out="$(python3 "$here/laboratory_bench.py")"
echo "$lab_out"
echo "== load after: $(uptime)"

python3 - "$bench_out" <<EOF
import re, sys
ours = {}
for line in open(sys.argv[1]):
    m = re.match(r"PEERS_NS (\S+)/shadowdiff_enabled ([0-9.]+)", line)
    if m:
        ours[m.group(1)] = float(m.group(2))
lab = {}
for line in """$lab_out""".splitlines():
    m = re.match(r"LAB_NS (\S+) ([0-9.]+)", line)
    if m:
        lab[m.group(1)] = float(m.group(2))
ref = ours.get("peers")
print()
print("== laboratory / shadowdiff enabled (sync, %s ns):" % (ref,))
for name in ("laboratory_enabled", "laboratory_disabled", "direct"):
    if ref and name in lab:
        print("  %-20s %10.1f ns  ratio %.1f" % (name, lab[name], lab[name] / ref))
EOF
