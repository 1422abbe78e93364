"""benchmarks/router_share_by_type.py: per-type shares and the mix-predicted held-out share."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks import router_share_by_type as script


def test_a_held_out_mix_with_fewer_easy_questions_predicts_a_larger_share():
    # dev: half easy (1 of 4 escalated), half hard (3 of 4); held-out: 1 easy, 3 hard, rates kept
    dev = script.by_type(["easy"] * 4 + ["hard"] * 4, np.array([1, 0, 0, 0, 1, 1, 1, 0], dtype=bool))
    held = script.by_type(["easy", "hard", "hard", "hard"], np.array([0, 1, 1, 0], dtype=bool))
    assert dev == {"easy": (0.5, 0.25), "hard": (0.5, 0.75)}
    assert held["easy"] == (0.25, 0.0) and held["hard"][0] == 0.75
    assert script.predicted_share(dev, held) == pytest.approx(0.25 * 0.25 + 0.75 * 0.75)  # 0.625, dev's share is 0.5
    assert script.predicted_share(dev, {"new": (1.0, 1.0)}) == 0.0  # a type dev never saw: no rate to apply
