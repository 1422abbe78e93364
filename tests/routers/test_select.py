"""routers.fitting.select: `--signals auto` picks signals by cross-validated APGR on dev."""
from __future__ import annotations

import numpy as np
import pytest

from tourney.routers.fitting.fit import Target, fit_router
from tourney.routers.evaluation.rundata import RoutingData
from tourney.routers.fitting.select import candidates, chosen, select_signals
from tourney.routers.features.signals import FEATURE_NAMES
from tests.routers.test_signals import row


def data(n: int = 120, seed: int = 0) -> RoutingData:
    """The student is right where a hidden score is positive: mean_logprob reads it exactly, length
    is noise, self_consistency is a coarse (three-level) view of it."""
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=n)
    right = hidden > -0.8
    feats = [{**dict.fromkeys(FEATURE_NAMES), "mean_logprob": float(h), "length": float(rng.integers(5, 50)),
              "self_consistency": float(np.clip(np.round(h + 1.5), 0, 2) / 2)} for h in hidden]
    ids = [f"q{i}" for i in range(n)]
    return RoutingData(
        ids=ids, types=["t"] * n, student_rows=[[row(0, question=f"question {i}")] for i in range(n)],
        student_correct=right.astype(float), teacher_correct=np.ones(n),
        student_latency_first=np.ones(n), student_latency_all=np.ones(n), teacher_latency=np.full(n, 2.0),
        features=feats)


def test_a_signal_that_reads_the_truth_wins():
    table = select_signals(data())
    best = chosen(table)
    assert best.signals == ("mean_logprob",) and best.primary is None
    assert best.apgr == pytest.approx(max(c.apgr for c in table), abs=1e-9)
    scores = {c.name: c.apgr for c in table}
    assert scores["mean_logprob"] > scores["length"]


def test_a_discrete_signal_alone_is_reference_only_and_is_offered_tie_broken():
    d = data()
    table = {(c.signals, c.primary): c for c in candidates(d)}
    assert not table[(("self_consistency",), None)].eligible  # three levels: ties everywhere
    assert table[(("mean_logprob",), None)].eligible
    assert (("mean_logprob", "self_consistency", "length"), "self_consistency") in table
    assert all("min_logprob" not in c.signals for c in table.values())  # unavailable on dev


def test_auto_router_hits_a_share_target_on_dev():
    d = data()
    best = chosen(select_signals(d))
    router = fit_router(d, Target.parse("share=0.25"), best.signals, primary=best.primary)
    assert router.dev.teacher_share == 0.25


def test_a_dev_set_too_small_to_fit_falls_back_to_the_best_single_signal(monkeypatch):
    import tourney.routers.fitting.select as sel

    def no_fit(*a, **k):
        raise sel.CannotFit("a fold with one class")
    monkeypatch.setattr(sel.CombinedRouter, "fit", no_fit)
    monkeypatch.setattr(sel.GainRouter, "fit", no_fit)
    monkeypatch.setattr(sel, "_FITTED", {})
    d = data()
    for f in d.features:
        f["mean_logprob"] = None  # left: length and self_consistency, both discrete (reference only)
    table = select_signals(d)
    assert all(len(c.signals) == 1 and not c.eligible for c in table)
    assert chosen(table) == table[0] and chosen(table).signals == ("self_consistency",)


def test_a_bug_in_a_fit_is_not_taken_for_an_unfittable_candidate(monkeypatch):
    import tourney.routers.fitting.select as sel

    def bug(*a, **k):
        raise ValueError("shapes (3,) and (4,) not aligned")
    monkeypatch.setattr(sel.CombinedRouter, "fit", bug)
    monkeypatch.setattr(sel, "_FITTED", {})  # fits cached by an earlier test would never call it
    with pytest.raises(ValueError, match="not aligned"):
        select_signals(data())


def _mixed(n_options: int, n_open: int) -> RoutingData:
    """Multiple-choice questions the option probability reads exactly, open ones min_logprob reads."""
    rng = np.random.default_rng(1)
    feats, right = [], []
    for i in range(n_options + n_open):
        h = float(rng.normal())
        f = dict.fromkeys(FEATURE_NAMES)
        if i < n_options:
            f.update(mc_probability=float(1 / (1 + np.exp(-h))), min_logprob=float(rng.normal()))
        else:
            f.update(min_logprob=h)
        f["option_or_token_probability"] = f["mc_probability"] if i < n_options else float(np.exp(h))
        feats.append(f)
        right.append(h > -0.5)
    n = len(feats)
    return RoutingData(
        ids=[f"q{i}" for i in range(n)], types=["mc" if i < n_options else "open" for i in range(n)],
        student_rows=[[row(0, question=f"question {i}")] for i in range(n)],
        student_correct=np.array(right, dtype=float), teacher_correct=np.ones(n),
        student_latency_first=np.ones(n), student_latency_all=np.ones(n), teacher_latency=np.full(n, 2.0),
        features=feats)


def test_the_mixed_signal_is_offered_only_where_a_set_mixes_options_and_open_questions():
    assert "option_or_token_probability" in _mixed(100, 40).available_signals()
    assert "option_or_token_probability" not in _mixed(0, 140).available_signals()  # open only
    only_options = _mixed(140, 0)
    assert "option_or_token_probability" not in only_options.available_signals()


def test_the_mixed_signal_is_a_score_of_its_own_never_a_regression_feature():
    d = _mixed(100, 40)
    table = candidates(d)
    assert any(c.signals == ("option_or_token_probability",) for c in table)
    assert all("option_or_token_probability" not in c.signals for c in table if len(c.signals) > 1)
    cv = {c.name: c.apgr for c in select_signals(d)}  # each kind read by the signal that knows it
    assert cv["option_or_token_probability"] > max(cv["mc_probability"], cv["min_logprob"]) + 0.05
