"""Expected-gain routers, per-type maps, policies (pre-routing, two-stage) and their thresholds."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tourney.errors import DataError
from tourney.harness.types import Question
from tourney.routers.policies.calibrate import CalibratedRouter, calibrate
from tourney.routers.runtime.cascade import Cascade
from tourney.routers.fitting.combined import CombinedRouter
from tourney.routers.fitting.gain import GainRouter
from tourney.routers.evaluation.metrics import apgr, routing_curve
from tourney.routers.policies.pertype import TypeCalibration
from tourney.routers.policies.policy import (
    CASCADE, PRE, ROUTE_CASCADE, ROUTE_KEEP, ROUTE_UP, TWO_STAGE, PreRouting, composite_rank, policy_view,
    thresholds_for_shares,
)
from tourney.routers.policies.thresholds import threshold_for_accuracy, threshold_for_latency, threshold_for_teacher_share
from tests.routers.fakes import ScriptedBackend


def two_model_data(n=400, seed=0):
    """The student is right when `a` > 0, the teacher when `b` > 0 (noisily): a question is worth
    escalating when a < 0 < b, which only a router that models both can see."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    s = (a + 0.3 * rng.normal(size=n) > 0).astype(float)
    t = (b + 0.3 * rng.normal(size=n) > 0).astype(float)
    rows = [{"mean_logprob": float(x), "length": float(y)} for x, y in zip(a, b)]
    return rows, s, t


def area(conf, s, t):
    return apgr(routing_curve(conf, s, t), s.mean(), t.mean())


def test_gain_is_teacher_minus_student_and_beats_student_confidence():
    rows, s, t = two_model_data()
    gain = GainRouter.fit(rows, s, t, ["mean_logprob", "length"])
    p_s, p_t = gain.student.predict(rows), gain.teacher.predict(rows)
    assert np.allclose(gain.predict(rows), -(p_t - p_s))  # the score: minus the expected gain
    assert gain.student.weights[0] > 1 and gain.teacher.weights[1] > 1  # each model found its own cause
    conf = CombinedRouter.fit(rows, s.astype(bool), ["mean_logprob", "length"]).predict(rows)
    assert area(gain.predict(rows), s, t) > area(conf, s, t) + 0.1


def test_gain_with_a_teacher_right_everywhere_ranks_as_student_confidence():
    rows, s, _ = two_model_data()
    gain = GainRouter.fit(rows, s, np.ones_like(s), ["mean_logprob", "length"])
    assert gain.teacher.features == [] and 0.99 < gain.teacher.predict(rows[:1])[0] < 1.0
    conf = CombinedRouter.fit(rows, s.astype(bool), ["mean_logprob", "length"]).predict(rows)
    assert np.array_equal(np.argsort(gain.predict(rows)), np.argsort(conf))


def test_the_split_estimate_is_the_mean_of_two_gains_and_round_trips():
    rows, s, t = two_model_data()
    g = GainRouter.fit(rows, s, t, ["mean_logprob", "length"], split_gain=True)
    p_s, p_t = g.student.predict(rows), g.teacher.predict(rows)
    p_d, p_w = g.discord.predict(rows), g.winner.predict(rows)
    assert np.allclose(g.predict(rows), -0.5 * ((p_t - p_s) + p_d * (2 * p_w - 1)))
    # the winner model learnt from the disagreeing questions only: there, teacher right = student wrong
    assert g.winner.weights[0] < -1 and g.winner.weights[1] > 1
    router = calibrate(g.predict(rows), s, t, kind="teacher_share", value=0.5, model=g)
    back = CalibratedRouter.from_dict(json.loads(json.dumps(router.to_dict())))
    assert back == router and np.allclose(back.model.predict(rows), g.predict(rows))
    # a file written before the split estimate: the marginal one alone, as it was fitted
    d = router.to_dict()
    del d["model"]["discord"], d["model"]["winner"]
    old = CalibratedRouter.from_dict(d)
    assert old.model.discord is None and np.allclose(old.model.predict(rows), -(p_t - p_s))


def test_the_split_estimate_with_no_disagreement_or_half_a_split_file():
    rows, s, _ = two_model_data()
    g = GainRouter.fit(rows, s, s.copy(), ["mean_logprob"], split_gain=True)  # the two always agree
    assert g.winner.features == [] and abs(g.winner.predict(rows[:1])[0] - 0.5) < 1e-9  # no winner known
    assert g.discord.features == [] and np.isfinite(g.predict(rows)).all()
    d = calibrate(g.predict(rows), s, s, kind="teacher_share", value=0.5, model=g).to_dict()
    del d["model"]["winner"]
    with pytest.raises(DataError, match="discord.*winner.*both or neither"):
        CalibratedRouter.from_dict(d, "r.json")


def test_question_router_reads_words_and_round_trips_as_numbers():
    texts = [f"{'hard long multi step' if i % 2 else 'easy'} question {i}" for i in range(80)]
    s = np.array([float(i % 2 == 0) for i in range(80)])
    t = np.ones(80)
    t[::4] = 0.0
    from tourney.routers.features.signals import question_features

    rows = [question_features(x) for x in texts]
    g = GainRouter.fit(rows, s, t, ["question_words"], texts=texts)
    assert g.reads_text and g.student.text is not None and all(isinstance(b, int) for b in g.student.text.buckets)
    score = g.predict(rows, texts)
    assert score[1::2].max() < score[::2].min()  # the hard ones (student wrong) lowest: escalated first
    router = calibrate(score, s, t, kind="teacher_share", value=0.5, model=g)
    assert router.question_only and router.policy == PRE
    back = CalibratedRouter.from_dict(json.loads(json.dumps(router.to_dict())))
    assert back == router and back.decide_first(texts[1]) == "teacher" and back.decide_first(texts[0]) == "student"


def test_per_type_maps_keep_order_within_a_type_and_order_types_by_gain():
    # type A: the teacher fixes every student error; type B: the teacher is wrong where the student is
    conf = np.array([0.1, 0.2, 0.3, 0.4, 0.1, 0.2, 0.3, 0.4])
    s = np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=float)
    t = np.array([1, 1, 1, 1, 0, 0, 1, 1], dtype=float)
    types = ["A"] * 4 + ["B"] * 4
    cal = TypeCalibration.fit(conf, s, t, types, min_questions=4)
    new = cal.transform(conf, types)
    assert all(np.argsort(new[:4]) == np.argsort(conf[:4])) and all(np.argsort(new[4:]) == np.argsort(conf[4:]))
    assert new[0] < new[4] and new[1] < new[5]  # an A question at 0.1 is worth more than a B one at 0.1
    assert area(new, s, t) > area(conf, s, t)
    assert cal.transform([-math.inf], ["A"])[0] == -math.inf  # no evidence stays no evidence
    small = TypeCalibration.fit(conf, s, t, types, min_questions=5)  # neither type big enough: one map
    assert small.by_type == {} and np.all(np.diff(small.transform(np.sort(conf), ["A"] * 8)) >= 0)


def test_thresholds_with_questions_decided_up_front():
    conf = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    route = [ROUTE_UP, ROUTE_CASCADE, ROUTE_CASCADE, ROUTE_CASCADE, ROUTE_CASCADE, ROUTE_KEEP]
    # one question always up, one always kept: shares 1/6 .. 5/6
    assert np.sum(np.array(conf[1:5]) < threshold_for_teacher_share(conf, 0.5, route=route)) == 2
    assert threshold_for_teacher_share(conf, 0.0, route=route) == 0.2  # the forced one alone
    s, t = [0, 0, 1, 0, 1, 1], [1, 1, 1, 1, 0, 1]
    thr = threshold_for_accuracy(conf, s, t, 5 / 6, route=route)
    assert thr == 0.3  # escalating q1 besides q0 is the first to reach 5 of 6 right
    kept, up = [1.0] * 6, [3.0] * 6
    thr = threshold_for_latency(conf, None, None, 2.0, kept=kept, up=up, route=route)
    assert thr == 0.4  # 1 forced + 2 more up: (3 * 3 + 3 * 1) / 6 = 2.0


def test_pre_routed_shares_and_policy_costs():
    pre = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    below, start = thresholds_for_shares(pre, 0.2, 0.3)
    assert np.sum(pre < below) == 2 and np.sum(pre >= start) == 3
    score = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0, -1.0, -2.0, -3.0, -4.0])
    lat = dict(student_first=np.ones(10), student_used=np.full(10, 2.0), teacher=np.full(10, 5.0))
    v = policy_view(TWO_STAGE, score, pre_score=pre, teacher_below=below, student_from=start, **lat)
    assert v.route.tolist() == [ROUTE_UP] * 2 + [ROUTE_CASCADE] * 5 + [ROUTE_KEEP] * 3
    assert v.kept.tolist() == [1, 1, 2, 2, 2, 2, 2, 1, 1, 1] and v.up.tolist() == [5, 5, 7, 7, 7, 7, 7, 5, 5, 5]
    assert v.rank.tolist()[:2] == [0, 1] and sorted(v.rank[2:7]) == [2, 3, 4, 5, 6] and v.rank[6] == 2
    assert v.sent(-0.5).tolist() == [True, True, False, False, False, False, True, False, False, False]
    c = policy_view(CASCADE, score, **lat)
    assert np.array_equal(c.rank, score) and c.up.tolist() == [7.0] * 10
    p = policy_view(PRE, pre, **lat)
    assert p.kept.tolist() == [1.0] * 10 and p.up.tolist() == [5.0] * 10
    assert composite_rank(np.array([ROUTE_KEEP, ROUTE_UP]), np.zeros(2), np.array([3.0, 9.0])).tolist() == [1.0, 0.0]


def two_stage_router() -> CalibratedRouter:
    texts = [f"{'tough' if i % 3 == 0 else 'fine'} item {i}" for i in range(60)]
    from tourney.routers.features.signals import question_features

    rows = [question_features(x) for x in texts]
    s = np.array([float(i % 3 != 0) for i in range(60)])
    first = GainRouter.fit(rows, s, np.ones(60), ["question_words"], texts=texts)
    pre_scores = first.predict(rows, texts)
    below, start = thresholds_for_shares(pre_scores, 0.2, 0.2)
    cascade_model = "mean_logprob"
    return calibrate([0.0] * 60, s, np.ones(60), kind="teacher_share", value=0.5, model=cascade_model,
                     pre=PreRouting(first, below, start, 0.2, 0.2),
                     route=[0] * 60)


def test_two_stage_router_round_trips_and_the_cascade_skips_the_student_on_hard_questions():
    router = two_stage_router()
    router.threshold = -1.0  # the cascade part: escalate when mean logprob < -1
    back = CalibratedRouter.from_dict(json.loads(json.dumps(router.to_dict())))
    assert back.policy == TWO_STAGE and back.pre.teacher_share == 0.2
    assert back.decide_first("tough item 3") == "teacher" and back.decide_first("fine item 1") in ("student", None)
    qs = [Question(id="h", question="tough item 3", answer="1"), Question(id="e", question="fine item 1", answer="2")]
    student = ScriptedBackend(spec="fake:s", outputs={"tough item 3": ["#### 0"], "fine item 1": ["#### 2"]},
                              logprobs={"fine item 1": [-3.0]})
    teacher = ScriptedBackend(spec="fake:t", outputs={"tough item 3": ["#### 1"], "fine item 1": ["#### 2"]},
                              latency_s=0.5)
    recs = Cascade(student, teacher, back, "balanced").answer(qs)
    assert "tough item 3" not in student.asked()  # decided up front: straight to the teacher
    assert recs[0].routed_to == "teacher" and recs[0].student_latency_s == 0.0 and recs[0].total_latency_s == 0.5
    easy = back.decide_first("fine item 1")
    assert recs[1].escalated == (easy is None)  # kept up front, or escalated by its low logprob
    if easy == "student":
        (_, cfg), = student.calls
        assert cfg.n == 1
