"""routers.runtime.cascade with scripted backends: who answers, what is asked, how latency adds up."""
from __future__ import annotations

import math

import pytest

from tourney.harness.types import Question
from tourney.routers.runtime.bundle import ModelSettings
from tourney.routers.policies.calibrate import CalibratedRouter
from tourney.routers.runtime.cascade import Cascade, compose
from tourney.routers.evaluation.metrics import CascadeFigures

from tests.routers.fakes import ScriptedBackend

QS = [Question(id=k, question=f"{k} apples?", answer=a) for k, a in
      (("alpha", "3"), ("beta", "4"), ("gamma", "5"), ("delta", "6"))]


def router(signal="mean_logprob", threshold=-1.0) -> CalibratedRouter:
    return CalibratedRouter(target_kind="teacher_share", target_value=0.5, threshold=threshold, signals=[signal],
                            model=signal, dev=CascadeFigures(n=4, teacher_share=0.5, accuracy=0.5))


def pair():
    student = ScriptedBackend(
        spec="fake:student", latency_s=0.1,
        outputs={"alpha": ["#### 3"], "beta": ["#### 9"], "gamma": ["#### 5"], "delta": ["#### 6"]},
        logprobs={"alpha": [-0.1, -0.2], "beta": [-2.0, -3.0], "gamma": [-0.5], "delta": [-0.2]},
        fail={"delta"})
    teacher = ScriptedBackend(spec="fake:teacher", latency_s=0.5,
                              outputs={k.id: [f"so #### {k.answer}"] for k in QS})
    return student, teacher


def test_balanced_escalates_under_threshold_and_failed_requests():
    student, teacher = pair()
    recs = Cascade(student, teacher, router(), "balanced").answer(QS)
    assert teacher.asked() == ["beta", "delta"]  # beta: mean logprob -2.5 < -1; delta: the request failed
    assert [r.routed_to for r in recs] == ["student", "teacher", "student", "teacher"]
    assert [r.answer for r in recs] == ["3", "4", "5", "6"]
    assert recs[0].confidence == pytest.approx(-0.15) and recs[1].confidence == pytest.approx(-2.5)
    assert [r.escalated for r in recs] == [False, True, False, True]
    # the student always runs; the teacher's latency is added when escalated
    assert [r.total_latency_s for r in recs] == pytest.approx([0.1, 0.6, 0.1, 0.6])
    assert [r.teacher_latency_s for r in recs] == [0.0, 0.5, 0.0, 0.5]
    assert recs[3].error == "student: HTTP 503" and recs[1].student_prediction == "9"
    # the router reads logprobs: they are asked for even though the settings record none
    (_, cfg), = student.calls
    assert cfg.logprobs == 0 and cfg.n == 1


def test_speed_mode_never_calls_the_teacher():
    student, teacher = pair()
    recs = Cascade(student, None, router(), "speed").answer(QS)
    assert teacher.calls == []
    (_, cfg), = student.calls
    assert cfg.n == 1 and cfg.logprobs is None
    assert [r.routed_to for r in recs] == ["student", "student", "student", "fallback"]
    assert [r.answer for r in recs] == ["3", "9", "5", "0"]  # delta failed: the documented fallback
    assert all(r.confidence is None and not r.escalated for r in recs)


def test_accuracy_mode_never_calls_the_student():
    student, teacher = pair()
    recs = Cascade(None, teacher, None, "accuracy").answer(QS)
    assert student.calls == [] and teacher.asked() == [q.id for q in QS]
    assert [r.answer for r in recs] == ["3", "4", "5", "6"]
    assert [r.total_latency_s for r in recs] == [0.5] * 4 and all(r.student_latency_s == 0 for r in recs)


def test_self_consistency_draws_k_samples_together_and_waits_for_the_slowest():
    student = ScriptedBackend(spec="fake:s", latency_s=0.1, outputs={
        "alpha": ["#### 3", "#### 3", "#### 3"], "beta": ["#### 1", "#### 2", "#### 3"]})
    teacher = ScriptedBackend(spec="fake:t", latency_s=0.5, outputs={"alpha": ["#### 3"], "beta": ["#### 4"]})
    settings = ModelSettings(spec="fake:s", samples=3, temperature=0.7)
    c = Cascade(student, teacher, router("self_consistency", 0.5), "balanced", student_settings=settings)
    recs = c.answer(QS[:2])
    (_, cfg), = student.calls
    assert cfg.n == 3 and cfg.temperature == 0.7
    assert [r.confidence for r in recs] == pytest.approx([1.0, 1 / 3])
    assert teacher.asked() == ["beta"]
    assert [r.student_latency_s for r in recs] == pytest.approx([0.1, 0.1])  # one call: the samples' shared wait
    assert recs[1].total_latency_s == pytest.approx(0.6)


def test_a_sampling_router_needs_several_samples():
    student, teacher = pair()
    with pytest.raises(ValueError, match="several student samples"):
        Cascade(student, teacher, router("self_consistency", 0.5), "balanced")


def test_modes_need_their_models():
    student, teacher = pair()
    with pytest.raises(ValueError, match="mode"):
        Cascade(student, teacher, router(), "fast")
    with pytest.raises(ValueError, match="teacher"):
        Cascade(student, None, router(), "balanced")
    with pytest.raises(ValueError, match="router"):
        Cascade(student, teacher, None, "balanced")


def test_fallback_never_leaves_an_empty_answer():
    mc = Question(id="m", question="pick one", answer="B", choices=("x", "y"))
    num = Question(id="n", question="how many", answer="2")
    rec = compose(num, None, None, escalated=False, student_latency_s=0, teacher_latency_s=0, total_latency_s=0)
    assert rec.answer == "0" and rec.routed_to == "fallback"
    rec = compose(mc, None, None, escalated=False, student_latency_s=0, teacher_latency_s=0, total_latency_s=0)
    assert rec.answer == "A"


def test_teacher_without_an_answer_leaves_the_student_s():
    student, _ = pair()
    teacher = ScriptedBackend(spec="fake:t", outputs={q.id: ["I cannot say."] for q in QS})
    recs = Cascade(student, teacher, router(), "balanced").answer(QS[:2])
    assert recs[1].escalated and recs[1].routed_to == "student" and recs[1].answer == "9"


def test_an_option_router_scores_the_students_options_and_escalates_the_doubtful_ones():
    mc = [Question(id="sure", question="sure: which city is in France?", answer="A", choices=("Paris", "Rome")),
          Question(id="doubtful", question="doubtful: which river is longest?", answer="B", choices=("Po", "Nile"))]
    student = ScriptedBackend(spec="fake:s", outputs={"sure": [" Paris."], "doubtful": [" Po."]},
                              choice_scores={"sure": [-0.1, -6.0], "doubtful": [-1.0, -1.1]})
    teacher = ScriptedBackend(spec="fake:t", outputs={"sure": [" Paris."], "doubtful": [" Nile."]})
    recs = Cascade(student, teacher, router("mc_probability", 0.9), "balanced").answer(mc)
    assert len(student.score_calls) == 1 and len(student.score_calls[0]) == 2  # both answers' options, one call
    assert recs[0].confidence == pytest.approx(1 / (1 + math.exp(-5.9)))
    assert recs[1].confidence == pytest.approx(1 / (1 + math.exp(-0.1)))
    assert teacher.asked() == ["doubtful"]
    assert [(r.routed_to, r.answer) for r in recs] == [("student", "A"), ("teacher", "B")]
    assert all(r.error is None for r in recs)


def test_a_submission_s_servers_have_room_for_the_requests_abandoned_at_a_deadline():
    """A request abandoned at its question's deadline holds its connection until its own timeout;
    the next question's request must not wait behind it while its deadline runs, so a
    submission's server backends take twice the questions in flight (per sample); without a
    deadline (route eval, serve's own clients) they keep the plain count."""
    from tourney.routers.runtime.bundle import RouterBundle
    from tourney.routers.runtime.cascade import ABANDONED_ROOM, load_cascade

    router = CalibratedRouter("teacher_share", 0.5, 0.0, ["length"], "length", CascadeFigures(4, 0.5, 1.0))
    bundle = RouterBundle(router, ModelSettings(spec="openai:s@http://127.0.0.1:9/v1", samples=3, temperature=0.7),
                          ModelSettings(spec="openai:t@http://127.0.0.1:9/v1"), target="share=0.5")
    timed = load_cascade(bundle, "balanced", concurrency=5, request_timeout_s=2.0)
    plain = load_cascade(bundle, "balanced", concurrency=5)
    try:
        assert ABANDONED_ROOM == 2
        assert (timed.student.concurrency, timed.teacher.concurrency) == (2 * 5 * 3, 2 * 5)
        assert (timed.student.timeout_s, timed.teacher.max_retries) == (2.0, 0)
        assert (plain.student.concurrency, plain.teacher.concurrency) == (5 * 3, 5)
    finally:
        for c in (timed, plain):
            for b in (c.student, c.teacher):
                b.close()
