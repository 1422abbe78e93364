"""Fuzzing the router loader (hypothesis): whatever the bytes, loading a router file either gives
a RouterBundle or one DataError naming the file; never another exception, never a hang.

The test runs a few hundred inputs per strategy; benchmarks/fuzz_router_file.py runs the same
strategies 10,000 times each (RESULTS.md has the count and the time).
"""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings, strategies as st

from tourney.errors import DataError
from tourney.routers.runtime.bundle import RouterBundle
from tourney.routers.policies.calibrate import CalibratedRouter
from tourney.routers.evaluation.metrics import CascadeFigures
from tourney.routers.fitting.router_file import load_router_file

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

BASE = RouterBundle(CalibratedRouter("teacher_share", 0.5, 0.25, ["length"], "length",
                                     CascadeFigures(4, 0.5, 1.0))).to_dict()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20)
keys = st.sampled_from(sorted({*BASE, "student", "teacher", "per_type", "pre", "model", "dev"}))


def check(path) -> None:
    try:
        load = RouterBundle.load(path)
        assert isinstance(load, RouterBundle)
    except DataError as e:
        assert str(path) in str(e) and "\n" not in str(e)


@SETTINGS
@given(data=st.binary(max_size=300))
def test_any_bytes(tmp_path, data):
    path = tmp_path / "r.json"
    path.write_bytes(data)
    check(path)


@SETTINGS
@given(value=json_values)
def test_any_json_value(tmp_path, value):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(value))
    check(path)


@SETTINGS
@given(key=keys, value=json_values)
def test_a_valid_router_with_one_field_replaced(tmp_path, key, value):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({**BASE, key: value}))
    check(path)


def test_the_base_router_loads(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(BASE))
    assert load_router_file(path).threshold == 0.25
