"""harness.metrics against hand-computed values."""
from __future__ import annotations

import json
import math

import pytest

from tourney.harness.metrics import majority_correct, percentile, summarize_results, wilson_interval
from tourney.harness.types import SampleResult


def row(id: str, sample: int = 0, *, type: str = "arith", prediction: str | None = "1",
        gold: str = "1", correct: bool | None = None, latency_s: float = 1.0,
        ttft_s: float | None = None, completion_tokens: int = 10,
        error: str | None = None) -> SampleResult:
    return SampleResult(
        id=id, question=f"q {id}", type=type, sample=sample, output=f"answer {prediction}",
        prediction=prediction, gold=gold,
        correct=(prediction == gold) if correct is None else correct,
        latency_s=latency_s, ttft_s=ttft_s, prompt_tokens=5,
        completion_tokens=completion_tokens, error=error,
    )


# --- Wilson interval ----------------------------------------------------------------------------
# By hand, z = 1.96, z^2 = 3.8416, k = 8, n = 10: p = 0.8, denom = 1 + 0.38416 = 1.38416,
# center = (0.8 + 0.19208) / 1.38416 = 0.716739, half = 1.96/1.38416 * sqrt(0.016 + 0.009604)
# = 0.226579, so (0.490160, 0.943318).

@pytest.mark.parametrize("k, n, low, high", [
    (8, 10, 0.4902, 0.9433),
    (0, 10, 0.0, 0.2775),      # high = (z^2/n) / (1 + z^2/n) = 0.38416 / 1.38416
    (10, 10, 0.7225, 1.0),     # low = 1 / 1.38416
    (1, 2, 0.0945, 0.9055),    # symmetric about 0.5
])
def test_wilson_hand_computed(k: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson_interval(k, n)
    assert (round(lo, 4), round(hi, 4)) == (low, high)


def test_wilson_empty_is_nan_and_bad_counts_raise() -> None:
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    with pytest.raises(ValueError):
        wilson_interval(-1, 2)


# --- percentile -------------------------------------------------------------------------------

def test_percentile_linear_interpolation() -> None:
    xs = [4.0, 1.0, 3.0, 2.0]  # unsorted on purpose
    assert percentile(xs, 50) == pytest.approx(2.5)
    assert percentile(xs, 95) == pytest.approx(3.85)  # position 3 * 0.95 = 2.85 -> 3 + 0.85
    assert percentile(xs, 0) == 1.0
    assert percentile(xs, 100) == 4.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile(xs, 101)


def test_percentile_matches_numpy_default() -> None:
    np = pytest.importorskip("numpy")
    xs = [0.3, 1.7, 0.2, 9.0, 4.4, 4.4, 2.5]
    for q in (0, 10, 50, 90, 95, 99, 100):
        assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))


# --- summaries --------------------------------------------------------------------------------

def test_errors_count_as_wrong_and_are_excluded_from_speed() -> None:
    rows = [
        row("a", prediction="1", latency_s=1.0, ttft_s=0.1, completion_tokens=10),
        row("b", prediction="2", latency_s=3.0, ttft_s=0.3, completion_tokens=30),
        # a timed-out request marked correct by mistake still counts as wrong; its 60 s is ignored
        row("c", prediction=None, correct=True, latency_s=60.0, completion_tokens=0,
            error="timeout"),
    ]
    g = summarize_results(rows).overall
    assert (g.n, g.n_questions, g.errors) == (3, 3, 1)
    assert g.accuracy == pytest.approx(1 / 3)
    assert g.majority_accuracy == pytest.approx(1 / 3)
    assert g.ci95 == pytest.approx(list(wilson_interval(1, 3)))
    assert g.latency_p50_s == pytest.approx(2.0)
    assert g.latency_p95_s == pytest.approx(2.9)  # 1 + 0.95 * (3 - 1)
    assert g.latency_mean_s == pytest.approx(2.0)
    assert g.ttft_p50_s == pytest.approx(0.2)
    assert g.tokens_per_s == pytest.approx(10.0)  # 40 tokens / 4 s
    assert g.completion_tokens_mean == pytest.approx(20.0)


def test_no_ttft_and_all_errors_give_none() -> None:
    g = summarize_results([row("a", error="refused", prediction=None, latency_s=0.0)]).overall
    assert g.accuracy == 0.0 and g.errors == 1
    assert g.latency_p50_s is None and g.latency_mean_s is None and g.ttft_p50_s is None
    assert g.tokens_per_s is None and g.completion_tokens_mean is None
    assert summarize_results([row("b")]).overall.ttft_p50_s is None


def test_majority_vote_and_tie_break_by_first_sample() -> None:
    # q1: votes 5, 7, 7 -> 7, correct. Shuffled to show "first" means lowest sample index.
    q1 = [row("q1", 2, prediction="7", gold="7"), row("q1", 0, prediction="5", gold="7"),
          row("q1", 1, prediction="7", gold="7")]
    # q2: tie 3 vs 4 -> sample 0's "3" wins, wrong although sample 1 is right.
    q2 = [row("q2", 1, prediction="4", gold="4"), row("q2", 0, prediction="3", gold="4")]
    # q3: two errored samples have no answer, and "no answer" never wins (tourney.harness.votes):
    # the one answered sample is the majority.
    q3 = [row("q3", 0, prediction="9", gold="9"),
          row("q3", 1, prediction=None, error="timeout"),
          row("q3", 2, prediction=None, error="timeout")]
    assert majority_correct(q1) is True
    assert majority_correct(q2) is False
    assert majority_correct(q3) is True
    g = summarize_results(q1 + q2 + q3).overall
    assert (g.n, g.n_questions) == (8, 3)
    assert g.accuracy == pytest.approx(4 / 8)  # q1: 2, q2: 1, q3: 1
    assert g.majority_accuracy == pytest.approx(2 / 3)


def test_majority_equals_accuracy_with_one_sample() -> None:
    rows = [row("a", prediction="1"), row("b", prediction="2"), row("c", prediction="1"),
            row("d", prediction=None, error="x", correct=True)]
    g = summarize_results(rows).overall
    assert g.majority_accuracy == g.accuracy == pytest.approx(0.5)


def test_grouping_by_type_sorted() -> None:
    rows = [row("1", type="mcq", prediction="B", gold="B", latency_s=2.0),
            row("2", type="arith", prediction="3", gold="4", latency_s=1.0),
            row("3", type="mcq", prediction="A", gold="C", latency_s=4.0),
            row("4", type="arith", prediction="8", gold="8", latency_s=3.0)]
    rep = summarize_results(rows)
    assert list(rep.by_type) == ["arith", "mcq"]
    assert rep.by_type["arith"].accuracy == 0.5 and rep.by_type["arith"].n == 2
    assert rep.by_type["mcq"].latency_p50_s == pytest.approx(3.0)
    assert rep.overall.n == 4 and rep.overall.latency_p50_s == pytest.approx(2.5)


def test_empty_and_to_dict_is_valid_json() -> None:
    rep = summarize_results([])
    assert rep.overall.n == 0 and rep.by_type == {}
    assert math.isnan(rep.overall.accuracy)
    d = rep.to_dict()
    assert d["overall"]["accuracy"] is None and d["overall"]["ci95"] == [None, None]
    json.dumps(d, allow_nan=False)  # raises if a nan slipped through


def test_unparsed_answers_are_counted_beside_errors():
    from tourney.harness.metrics import summarize_group
    from tourney.harness.types import SampleResult

    def r(i, pred, error=None):
        return SampleResult(id=f"q{i}", question="?", type="t", sample=0, output="text", prediction=pred, gold="1",
                            correct=pred == "1", latency_s=0.1, ttft_s=None, prompt_tokens=1, completion_tokens=1,
                            error=error)

    g = summarize_group([r(0, "1"), r(1, None), r(2, None), r(3, None, error="timeout")])
    assert (g.errors, g.unparsed) == (1, 2)  # an errored sample is an error, not an unparsed answer
