"""Fuzz every parser of untrusted text with N generated inputs each (default 10,000) and report
the count, failures and time per parser. Run from the repository root:

    python benchmarks/fuzz_parsers.py [--examples 10000] [--only NAME]

A failure is any exception other than the project's own one-line errors, or an input that takes
longer than --per-input-s; hypothesis shrinks it and the script exits 1 printing the input.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, given, settings  # noqa: E402

from tests.hostile.fuzz_targets import TARGETS  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=10_000)
    ap.add_argument("--per-input-s", type=float, default=10.0, help="hypothesis deadline per input")
    ap.add_argument("--only", default=None, help="one target name")
    args = ap.parse_args()
    failed = False
    print("| parser | inputs | failures | time |\n|---|---|---|---|")
    for name, (target, strategy) in TARGETS.items():
        if args.only and args.only != name:
            continue
        count = 0

        @settings(max_examples=args.examples, deadline=args.per_input_s * 1000, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def run(text):
            nonlocal count
            count += 1
            target(text)

        t0 = time.perf_counter()
        try:
            run()
            failures = 0
        except Exception as e:  # noqa: BLE001 -- reported, with hypothesis's shrunk example above it
            failures, failed = 1, True
            print(f"{name}: {type(e).__name__}: {e}", file=sys.stderr)
        print(f"| {name} | {count:,} | {failures} | {time.perf_counter() - t0:.1f} s |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
