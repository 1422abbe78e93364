"""routers.fitting.policy_select.clear_margin: a challenger chosen as the best of many must clear a
margin that grows with how many were compared (Bonferroni), never below CLEAR_SE."""
from __future__ import annotations

import pytest

from tourney.routers.fitting.policy_select import (
    CLEAR_SE, PerTypeScore, PolicyScore, best_policy, clear_margin, pick_per_type,
)


def test_the_margin_grows_with_the_challengers_compared():
    assert clear_margin(0) == clear_margin(1) == CLEAR_SE  # one challenger: the plain 2 standard errors
    assert clear_margin(9) == pytest.approx(2.54, abs=0.01)
    assert clear_margin(40) == pytest.approx(3.02, abs=0.01)
    assert all(clear_margin(k) <= clear_margin(k + 1) for k in range(1, 60))


def splits(gain_se: float, n: int = 9) -> list[PolicyScore]:
    plain = PolicyScore("cascade", objective=0.5)
    others = [PolicyScore("two-stage", 0.1, 0.0, objective=0.5, gain=0.0, se=0.01) for _ in range(n - 1)]
    return [plain, PolicyScore("two-stage", 0.1, 0.1, objective=0.504, gain=0.01 * gain_se, se=0.01), *others]


def test_a_first_stage_must_beat_the_plain_policy_by_the_margin_of_all_splits_compared():
    assert best_policy(splits(2.2)).policy == "cascade"  # 2.2 standard errors: lucky among nine
    chosen = best_policy(splits(3.0))
    assert (chosen.policy, chosen.teacher_share, chosen.student_share) == ("two-stage", 0.1, 0.1)
    assert best_policy(splits(2.2, n=1)).policy == "two-stage"  # alone, 2 standard errors are enough
    assert best_policy(splits(2.2), want="two-stage").policy == "two-stage"  # asked for: no test


def test_per_type_maps_need_the_margin_of_the_sizes_compared():
    plain = PerTypeScore(None, 0.6, 0.0, 0.0)
    assert pick_per_type([plain, PerTypeScore(200, 0.62, 0.0205, 0.01)]) == 200  # one size: 2.05 > 2
    three = [plain, PerTypeScore(200, 0.62, 0.0205, 0.01), PerTypeScore(100, 0.6, 0.0, 0.01),
             PerTypeScore(50, 0.6, 0.0, 0.01)]
    assert pick_per_type(three) is None  # 2.05 < 2.13, the margin for three sizes


def test_the_words_router_stays_unless_the_best_of_the_candidates_beats_it_by_the_margin(monkeypatch):
    import numpy as np

    import tourney.routers.fitting.policy_select as ps
    from tourney.routers.fitting.select import GAIN, Candidate

    monkeypatch.setattr(ps, "out_of_fold", lambda *a, **k: [np.zeros(3)])
    monkeypatch.setattr(ps, "paired_se", lambda *a, **k: 0.01)
    words = Candidate((), kind=GAIN, text=True, answer=True, l2=ps.WORDS_L2, apgr=0.57)
    others = [Candidate((f"s{i}",), apgr=0.55) for i in range(39)]  # names are never read here
    for lead, kept in ((0.022, words), (0.035, None)):
        best = Candidate(("chosen_length",), apgr=0.57 + lead)
        notes: list[str] = []
        got = ps.prefer_words(None, [best, words, *others], best, seed=0, l2=1.0, notes=notes)
        assert got is (kept or best)  # 2.2 standard errors among 40: luck; 3.5: clearly better
        assert bool(notes) == (kept is words) and (not notes or "3.02 standard errors" in notes[0])
