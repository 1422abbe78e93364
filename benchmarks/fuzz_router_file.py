"""Fuzz the router-file loader at scale: the strategies of tests/routers/test_router_fuzz.py, run
`--examples` times in all (split over raw bytes, any JSON value, and a valid router with one field
replaced). Every input must load or give one DataError line naming the file; anything else is
a failure (hypothesis stops at the first and prints the smallest input that fails).

    .venv/bin/python benchmarks/fuzz_router_file.py --examples 10000
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.routers.test_router_fuzz import BASE, check, json_values, keys  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=10_000)
    args = ap.parse_args()
    per = args.examples // 3
    tmp = Path(tempfile.mkdtemp())
    path = tmp / "r.json"
    count = {"n": 0}
    opts = settings(max_examples=per, deadline=None, database=None, suppress_health_check=list(HealthCheck))

    @opts
    @given(data=st.binary(max_size=300))
    def raw(data):
        count["n"] += 1
        path.write_bytes(data)
        check(path)

    @opts
    @given(value=json_values)
    def value(value):
        count["n"] += 1
        path.write_text(json.dumps(value))
        check(path)

    @opts
    @given(key=keys, value=json_values)
    def field(key, value):
        count["n"] += 1
        path.write_text(json.dumps({**BASE, key: value}))
        check(path)

    t0 = time.perf_counter()
    for fn in (raw, value, field):
        fn()
    print(f"router file loader: {count['n']} inputs, 0 failures, {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
