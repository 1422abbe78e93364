"""routers.evaluation.metrics against curves and areas worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tourney.routers.evaluation.metrics import (
    CurvePoint, apgr, auroc, cascade_figures, cpt, oracle_curve, random_router_curve, routing_curve,
    routing_metrics, routing_report, threshold_candidates,
)

# Four questions. Escalating the lowest confidence first:
#   share 0    : student answers all          -> [0,1,0,1] = 0.5
#   share 0.25 : q0 to the teacher (right)    -> [1,1,0,1] = 0.75
#   share 0.5  : q1 too (teacher wrong there) -> [1,0,0,1] = 0.5
#   share 0.75 : q2 too (teacher right)       -> [1,0,1,1] = 0.75
#   share 1    : teacher answers all          -> [1,0,1,1] = 0.75
CONF = [0.1, 0.4, 0.6, 0.9]
S = [0, 1, 0, 1]  # student accuracy 0.5
T = [1, 0, 1, 1]  # teacher accuracy 0.75
CURVE = [(0.0, 0.5), (0.25, 0.75), (0.5, 0.5), (0.75, 0.75), (1.0, 0.75)]


def test_routing_curve_by_hand():
    assert routing_curve(CONF, S, T) == CURVE


def test_routing_curve_order_of_input_does_not_matter():
    perm = [2, 0, 3, 1]
    assert routing_curve([CONF[i] for i in perm], [S[i] for i in perm], [T[i] for i in perm]) == CURVE


def test_apgr_by_hand():
    # trapezoids of width 0.25: (0.5+0.75)/2 * 3 + (0.75+0.75)/2 = 2.625 -> AUC 0.65625
    # APGR = (0.65625 - 0.5) / (0.75 - 0.5) = 0.625
    assert apgr(routing_curve(CONF, S, T), 0.5, 0.75) == pytest.approx(0.625, abs=1e-12)


def test_cpt_by_hand():
    curve = routing_curve(CONF, S, T)
    # CPT(50%): goal 0.625, on the first segment 0.5 -> 0.75 over share 0 -> 0.25: share 0.125
    assert cpt(curve, 0.5, 0.75, 0.5) == pytest.approx(0.125)
    # CPT(80%): goal 0.7: share 0.25 * 0.2 / 0.25 = 0.2
    assert cpt(curve, 0.5, 0.75, 0.8) == pytest.approx(0.2)
    assert cpt(curve, 0.5, 0.75, 0.0) == 0.0
    assert cpt(curve, 0.5, 0.75, 1.0) == pytest.approx(0.25)  # 0.75 first reached at 0.25


def test_cpt_unreachable_is_nan_and_no_gap_is_zero():
    assert math.isnan(cpt([(0.0, 0.5), (1.0, 0.6)], 0.5, 0.9, 0.8))
    assert cpt([(0.0, 0.5), (1.0, 0.5)], 0.5, 0.5, 0.8) == 0.0
    with pytest.raises(ValueError):
        cpt(CURVE, 0.5, 0.75, 1.5)


def test_apgr_rejects_curves_not_spanning_zero_to_one():
    with pytest.raises(ValueError, match="from 0 to 1"):
        apgr([(0.0, 0.5), (0.5, 0.6)], 0.5, 0.75)
    assert math.isnan(apgr(CURVE, 0.75, 0.75))


def test_ties_move_together():
    # q0 and q1 tie, as do q2 and q3: only shares 0, 0.5, 1 are reachable.
    conf, s, t = [0.2, 0.2, 0.7, 0.7], [0, 1, 1, 0], [1, 1, 1, 1]
    assert routing_curve(conf, s, t) == [(0.0, 0.5), (0.5, 0.75), (1.0, 1.0)]
    order, counts, thresholds = threshold_candidates(conf)
    assert counts.tolist() == [0, 2, 4]
    assert thresholds.tolist() == [0.2, 0.7, math.inf]


def test_auroc_by_hand():
    # right answers have conf 0.4, 0.9; wrong ones 0.1, 0.6: 3 of 4 pairs ordered -> 0.75
    assert auroc(CONF, S) == pytest.approx(0.75)
    # pairs (0.2 vs 0.2) and (0.7 vs 0.7) tie: 0.5 + 0 + 1 + 0.5 over 4
    assert auroc([0.2, 0.2, 0.7, 0.7], [0, 1, 1, 0]) == pytest.approx(0.5)
    assert auroc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    assert auroc([1, 2, 3, 4], [1, 1, 0, 0]) == 0.0
    assert math.isnan(auroc([1, 2], [1, 1]))


def test_auroc_matches_pair_count_with_ties():
    rng = np.random.default_rng(0)
    conf = rng.integers(0, 5, 40).astype(float)  # many ties
    s = rng.integers(0, 2, 40)
    pos, neg = conf[s == 1], conf[s == 0]
    pairs = [(1.0 if p > q else 0.5 if p == q else 0.0) for p in pos for q in neg]
    assert auroc(conf, s) == pytest.approx(sum(pairs) / len(pairs))


def test_random_router_scores_one_half_exactly():
    curve = random_router_curve(S, T)
    assert curve == [(0.0, 0.5), (0.25, 0.5625), (0.5, 0.625), (0.75, 0.6875), (1.0, 0.75)]
    assert apgr(curve, 0.5, 0.75) == 0.5  # dyadic values: exact in binary floating point
    s, t = [1, 0, 0, 1, 1, 0, 0], [1, 1, 1, 0, 1, 1, 0]
    assert apgr(random_router_curve(s, t), 3 / 7, 5 / 7) == pytest.approx(0.5, abs=1e-12)


def test_oracle_curve_by_hand():
    # gains t - s = [1, -1, 1, 0]: escalate the two +1 first, then the 0, the -1 last
    assert oracle_curve(S, T) == [(0.0, 0.5), (0.25, 0.75), (0.5, 1.0), (0.75, 1.0), (1.0, 0.75)]
    # AUC 0.25 * (0.625 + 0.875 + 1 + 0.875) = 0.84375 -> APGR 1.375
    assert apgr(oracle_curve(S, T), 0.5, 0.75) == pytest.approx(1.375)


@pytest.mark.parametrize("seed", range(5))
def test_oracle_bounds_any_router(seed):
    rng = np.random.default_rng(seed)
    s, t = rng.integers(0, 2, 30), rng.integers(0, 2, 30)
    conf = rng.integers(0, 8, 30).astype(float)
    oracle = oracle_curve(s, t)
    oracle_at = dict((round(x, 9), y) for x, y in oracle)
    for share, acc in routing_curve(conf, s, t):
        assert acc <= oracle_at[round(share, 9)] + 1e-12
    # apgr with accuracies (0, 1) is the plain area under the curve
    assert apgr(oracle, 0.0, 1.0) >= apgr(routing_curve(conf, s, t), 0.0, 1.0) - 1e-12


def test_routing_metrics_and_report():
    m = routing_metrics(CONF, S, T, [1, 1, 1, 1], [4, 2, 2, 8])
    assert (m.apgr, m.cpt50, m.cpt80, m.auroc) == pytest.approx((0.625, 0.125, 0.2, 0.75))
    assert m.random_apgr == pytest.approx(0.5) and m.oracle_apgr == pytest.approx(1.375)
    # mean latency curve at shares 0 and 0.25 is 1 and 2; CPT(50%) = 0.125 lies half way
    assert m.latency_mean_at_cpt50_s == pytest.approx(1.5)
    report = routing_report(CONF, S, T, ["b", "b", "a", "a"])
    assert list(report.by_type) == ["a", "b"] and report.by_type["a"].n == 2
    d = report.to_dict()
    # type a: S [0,1], T [1,1], curve 0.5, 1, 1: AUC 0.875, APGR (0.875 - 0.5) / 0.5
    assert d["by_type"]["a"]["apgr"] == pytest.approx(0.75)
    assert d["by_type"]["b"]["apgr"] is None  # type b: student and teacher both 0.5 -> no gap
    assert d["overall"]["latency_mean_at_cpt50_s"] is None


def test_cascade_figures():
    fig = cascade_figures(CONF, 0.5, S, T, [1, 1, 1, 1], [4, 2, 2, 8])
    assert fig.teacher_share == 0.5 and fig.accuracy == 0.5
    assert fig.latency_mean_s == pytest.approx(2.5)  # (5 + 3 + 1 + 1) / 4
    with pytest.raises(ValueError, match="NaN"):
        cascade_figures([0.1, math.nan], 0.5, [1, 1], [1, 1])
    with pytest.raises(ValueError, match="shape"):
        routing_curve([0.1, 0.2], [1], [1, 0])


def test_curve_points_are_named():
    p = routing_curve(CONF, S, T)[1]
    assert isinstance(p, CurvePoint) and p.teacher_share == 0.25 and p.accuracy == 0.75
