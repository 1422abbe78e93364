"""routers.policies.calibrate: thresholds for a teacher share, an accuracy and a latency budget."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tourney.harness.types import DataError
from tourney.routers.policies.calibrate import (
    CalibratedRouter, calibrate, threshold_for_accuracy, threshold_for_latency,
    threshold_for_teacher_share,
)
from tourney.routers.fitting.combined import CombinedRouter
from tourney.routers.evaluation.metrics import cascade_figures

# The four questions of test_metrics: cascade accuracy by share 0.5, 0.75, 0.5, 0.75, 0.75.
CONF = [0.1, 0.4, 0.6, 0.9]
S = [0, 1, 0, 1]
T = [1, 0, 1, 1]
S_LAT = [1.0, 1.0, 1.0, 1.0]
T_LAT = [4.0, 2.0, 2.0, 8.0]


def share(conf, threshold):
    return float(np.mean(np.asarray(conf) < threshold))


def test_teacher_share_of_30_percent_on_100_points():
    conf = np.random.default_rng(0).uniform(size=100)
    thr = threshold_for_teacher_share(conf, 0.30)
    assert int(np.sum(conf < thr)) == 30
    assert share(conf, threshold_for_teacher_share(conf, 0.0)) == 0.0
    assert share(conf, threshold_for_teacher_share(conf, 1.0)) == 1.0


def test_teacher_share_with_ties_is_nearest_then_smaller():
    conf = [0.1, 0.5, 0.5, 0.5, 0.9]  # reachable shares 0, 0.2, 0.8, 1
    assert share(conf, threshold_for_teacher_share(conf, 0.4)) == 0.2
    assert share(conf, threshold_for_teacher_share(conf, 0.5)) == 0.2  # 0.2 and 0.8 equally near
    assert share(conf, threshold_for_teacher_share(conf, 0.6)) == 0.8
    with pytest.raises(ValueError):
        threshold_for_teacher_share(conf, 1.2)


def test_accuracy_target_picks_the_smallest_share():
    assert threshold_for_accuracy(CONF, S, T, 0.75) == 0.4  # share 0.25, not 0.75 or 1
    assert threshold_for_accuracy(CONF, S, T, 0.5) == 0.1  # the student alone: share 0
    assert threshold_for_accuracy(CONF, S, T, 0.7) == 0.4
    # 100% of the teacher's 0.75, and 0.9 of it (0.675): share 0.25 either way
    assert threshold_for_accuracy(CONF, S, T, 1.0, relative=True) == 0.4
    assert threshold_for_accuracy(CONF, S, T, 0.9, relative=True) == 0.4
    with pytest.raises(ValueError, match="best accuracy is 0.7500"):
        threshold_for_accuracy(CONF, S, T, 0.8)


def test_latency_budget_mean():
    # escalation order q0, q1, q2, q3 adds 4, 2, 2, 8: mean latency 1, 2, 2.5, 3, 5 by share
    thr = threshold_for_latency(CONF, S_LAT, T_LAT, 2.6)
    assert thr == 0.6 and share(CONF, thr) == 0.5
    assert threshold_for_latency(CONF, S_LAT, T_LAT, 5.0) == math.inf
    assert threshold_for_latency(CONF, S_LAT, T_LAT, 1.0) == 0.1
    with pytest.raises(ValueError, match="below the smallest mean latency"):
        threshold_for_latency(CONF, S_LAT, T_LAT, 0.5)


def test_latency_budget_p95():
    # per-question latencies by share: p95 (linear, position 2.85 of 0..3) is
    # [1,1,1,1] -> 1; [5,1,1,1] -> 4.4; [5,3,1,1] -> 4.7; [5,3,3,1] -> 4.7; [5,3,3,9] -> 8.4
    thr = threshold_for_latency(CONF, S_LAT, T_LAT, 4.7, stat="p95")
    assert share(CONF, thr) == 0.75
    fig = cascade_figures(CONF, thr, S, T, S_LAT, T_LAT)
    assert fig.latency_p95_s == pytest.approx(4.7) and fig.latency_p95_s <= 4.7 + 1e-9
    assert share(CONF, threshold_for_latency(CONF, S_LAT, T_LAT, 4.69, stat="p95")) == 0.25


@pytest.mark.parametrize("budget", [1.3, 2.0, 2.9, 3.5])
def test_latency_budget_is_respected_on_random_data(budget):
    rng = np.random.default_rng(3)
    conf, sl, tl = rng.uniform(size=50), rng.uniform(0.5, 1.5, 50), rng.uniform(1, 4, 50)
    for stat in ("mean", "p95"):
        try:
            thr = threshold_for_latency(conf, sl, tl, budget, stat=stat)
        except ValueError:
            continue
        fig = cascade_figures(conf, thr, np.ones(50), np.ones(50), sl, tl)
        value = fig.latency_mean_s if stat == "mean" else fig.latency_p95_s
        assert value <= budget + 1e-9


def test_calibrated_router_round_trips_through_json(tmp_path):
    model = CombinedRouter.fit([{"mean_logprob": c} for c in CONF], S, ["mean_logprob"])
    conf = model.predict([{"mean_logprob": c} for c in CONF])
    router = calibrate(conf, S, T, kind="accuracy", value=0.99, relative=True, model=model,
                       student_latency=S_LAT, teacher_latency=T_LAT)
    assert router.signals == ["mean_logprob"] and router.dev.accuracy >= 0.99 * 0.75
    router.evaluate(conf, S, T)
    path = tmp_path / "router.json"
    router.save(path)
    back = CalibratedRouter.load(path)
    assert back == router and back.heldout == router.heldout
    assert back.to_teacher(None) and back.to_teacher(back.threshold - 1) and not back.to_teacher(back.threshold)


def test_single_signal_router_and_infinite_threshold(tmp_path):
    router = calibrate([-5, -3, -1], [0, 1, 1], [1, 1, 1], kind="teacher_share", value=1.0, model="length")
    assert router.threshold == math.inf and router.dev.teacher_share == 1.0
    router.save(tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["threshold"] == "inf"
    assert CalibratedRouter.load(tmp_path / "r.json").threshold == math.inf


def test_load_errors_name_the_file_and_field(tmp_path):
    path = tmp_path / "router.json"
    path.write_text("{not json")
    with pytest.raises(DataError, match=r"router.json: not valid JSON \(Expecting property name"):
        CalibratedRouter.load(path)
    router = calibrate(CONF, S, T, kind="teacher_share", value=0.5, model="mean_logprob")
    good = router.to_dict()
    for field, bad, match in [
        ("threshold", "big", "'threshold'"),
        ("target_kind", "speed", "'target_kind'"),
        ("dev", {"n": 4, "teacher_share": "x", "accuracy": 1}, "'dev.teacher_share'"),
        ("model", {"kind": "logistic_regression"}, "'model.logistic_regression.features'"),
        ("signals", ["vibes"], "'signals'"),
    ]:
        path.write_text(json.dumps({**good, field: bad}))
        with pytest.raises(DataError, match=match) as e:
            CalibratedRouter.load(path)
        assert "router.json" in str(e.value)
    path.write_text(json.dumps({k: v for k, v in good.items() if k != "dev"}))
    with pytest.raises(DataError, match="'dev'"):
        CalibratedRouter.load(path)
    with pytest.raises(DataError, match="not found"):
        CalibratedRouter.load(tmp_path / "missing.json")


def test_split_ties_reaches_a_share_inside_a_tie_and_the_router_reproduces_it():
    from tests.routers.test_signals import row

    # 10 questions, one signal value for all: without splitting, 0% or 100% are the only shares
    questions = [f"question {i}" for i in range(10)]
    rows = [[row(0, question=q), row(1, question=q)] for q in questions]  # both samples agree: sc 1.0
    conf = [1.0] * 10
    plain = calibrate(conf, [1] * 10, [1] * 10, kind="teacher_share", value=0.3, model="self_consistency")
    assert plain.dev.teacher_share == 0.0 and not plain.split_ties
    split = calibrate(conf, [1] * 10, [1] * 10, kind="teacher_share", value=0.3, model="self_consistency",
                      questions=questions)
    assert split.dev.teacher_share == pytest.approx(0.3) and split.split_ties
    # the saved router nudges each question exactly as calibration did: the same 3 escalate
    back = CalibratedRouter.from_dict(json.loads(json.dumps(split.to_dict())))
    sent = [back.to_teacher(back.confidence(r)) for r in rows]
    assert sum(sent) == 3 and sent == [split.to_teacher(split.confidence(r)) for r in rows]
    # the nudge never reorders confidences that differ by more than TIE_EPS
    from tourney.routers.policies.calibrate import split_ties
    nudged = split_ties([0.5, 0.5 + 2e-9, -math.inf], ["a", "b", "c"])
    assert nudged[0] < nudged[1] and nudged[2] == -math.inf
