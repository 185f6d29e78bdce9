#!/usr/bin/env python3
"""Python `laboratory` (PyPI) on the same trivial experiment as benches/peers.rs, for scale.

Control `x*31+7`, a candidate computing the same value differently, nothing published
(laboratory's default `publish` is a no-op; its `Result` still compares the arms).

Run with any python3: if `laboratory` is not importable, the script creates a venv under
/tmp (never the system Python), installs `laboratory==1.0.2` there and re-runs itself inside it.
Prints one `LAB_NS <name> <ns per call>` line per case (best of `--repeat` timeit runs of
`--number` calls each, so the loop is bounded).
"""

import argparse
import os
import subprocess
import sys
import timeit

VENV = os.environ.get("SHADOWDIFF_LAB_VENV", "/tmp/shadowdiff-lab-venv")
PIN = "laboratory==1.0.2"


def ensure_laboratory():
    try:
        import laboratory  # noqa: F401
        return
    except ImportError:
        pass
    if os.environ.get("SHADOWDIFF_LAB_REEXEC"):
        sys.exit("laboratory still missing inside " + VENV)
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", PIN], check=True)
    env = dict(os.environ, SHADOWDIFF_LAB_REEXEC="1")
    os.execve(py, [py, os.path.abspath(__file__)] + sys.argv[1:], env)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--number", type=int, default=20_000, help="calls per timeit run")
    ap.add_argument("--repeat", type=int, default=5, help="timeit runs (best is kept)")
    args = ap.parse_args()

    ensure_laboratory()
    import laboratory

    def control(x):
        return x * 31 + 7

    def candidate(x):
        return x + 7 + x * 30

    class Disabled(laboratory.Experiment):
        def enabled(self):
            return False

    x = 3

    def direct():
        return control(x)

    def enabled():
        e = laboratory.Experiment(name="peers")
        e.control(control, args=[x])
        e.candidate(candidate, args=[x])
        return e.conduct()

    def disabled():
        e = Disabled(name="peers")
        e.control(control, args=[x])
        e.candidate(candidate, args=[x])
        return e.conduct()

    assert enabled() == disabled() == direct() == 100
    print("laboratory %s on Python %s" % (getattr(laboratory, "__version__", "1.0.2"), sys.version.split()[0]))
    for name, fn in (("direct", direct), ("laboratory_enabled", enabled), ("laboratory_disabled", disabled)):
        best = min(timeit.repeat(fn, number=args.number, repeat=args.repeat))
        print("LAB_NS %s %.1f" % (name, best / args.number * 1e9))


if __name__ == "__main__":
    main()
