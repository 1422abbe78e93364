"""Fuzzing the parsers that read untrusted text: never a traceback, never a hang. A few hundred
examples per parser here; benchmarks/fuzz_parsers.py runs 10,000 each."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from tests.hostile.fuzz_targets import TARGETS


@pytest.mark.parametrize("name", list(TARGETS))
def test_parser_never_raises_anything_but_its_own_errors(name):
    target, strategy = TARGETS[name]

    @settings(max_examples=200, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(strategy)
    def run(text):
        target(text)

    run()
