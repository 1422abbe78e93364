"""Intervals with K samples per question: clustered by question, so they are honest about how
little K correlated samples add (issue: K x n samples were counted as independent)."""
from __future__ import annotations

import numpy as np
import pytest

from tourney.harness.metrics import CI_CLUSTERED, CI_WILSON, clustered_interval, summarize_results, wilson_interval
from tourney.harness.types import SampleResult


def _simulate(rng, m: int, k: int) -> list[list[bool]]:
    # Questions differ in difficulty (Beta(2, 1): mean 2/3), so samples of one question agree.
    p = rng.beta(2.0, 1.0, size=m)
    return [list(rng.random(k) < p_i) for p_i in p]


def test_coverage_over_simulated_clustered_runs():
    rng = np.random.default_rng(0)
    truth, runs = 2 / 3, 2000
    clustered = naive = 0
    for _ in range(runs):
        data = _simulate(rng, m=60, k=5)
        lo, hi = clustered_interval(data)
        clustered += lo <= truth <= hi
        correct = sum(sum(c) for c in data)
        lo, hi = wilson_interval(int(correct), 300)
        naive += lo <= truth <= hi
    assert 0.90 <= clustered / runs <= 0.97
    assert naive / runs < 0.85  # the old interval, for contrast: it covers far too rarely


def test_one_sample_per_question_is_exactly_wilson():
    data = [[True]] * 30 + [[False]] * 10
    assert clustered_interval(data) == wilson_interval(30, 40)


def test_all_samples_agreeing_gives_the_questions_as_the_sample_size():
    # Five identical samples per question say no more than one: n_eff = m (to the m/(m-1)
    # small-sample factor of the cluster variance).
    data = [[True] * 5] * 40 + [[False] * 5] * 10
    assert clustered_interval(data) == pytest.approx(wilson_interval(40, 50), abs=0.003)
    assert clustered_interval([[True] * 5] * 50) == wilson_interval(50, 50)


def _rows(per_question: list[list[bool]]) -> list[SampleResult]:
    return [SampleResult(id=f"q{i}", question="?", type="t", sample=s, output="", prediction="1" if ok else "2",
                         gold="1", correct=ok, latency_s=1.0, ttft_s=None, prompt_tokens=1, completion_tokens=1)
            for i, samples in enumerate(per_question) for s, ok in enumerate(samples)]


def test_a_five_sample_report_is_wider_than_independent_samples_would_be():
    rng = np.random.default_rng(1)
    data = _simulate(rng, m=100, k=5)
    g = summarize_results(_rows(data)).overall
    lo, hi = wilson_interval(sum(sum(c) for c in data), 500)
    assert g.ci_method == CI_CLUSTERED
    assert g.ci95[1] - g.ci95[0] > 1.3 * (hi - lo)
    assert summarize_results(_rows([[True], [False]])).overall.ci_method == CI_WILSON
