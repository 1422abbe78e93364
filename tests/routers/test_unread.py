"""A student answer the grader cannot read is escalated while time is left, whatever the score:
in the cascade (submit, serve), in a first stage's kept questions, and in the offline figures."""
from __future__ import annotations

import json
import math

import numpy as np

from tourney.harness.types import Question
from tourney.routers.policies.calibrate import CalibratedRouter
from tourney.routers.runtime.cascade import Cascade, unreadable
from tourney.routers.evaluation.metrics import CascadeFigures
from tourney.routers.policies.policy import CASCADE, ROUTE_CASCADE, ROUTE_KEEP, TWO_STAGE, policy_view
from tourney.routers.evaluation.rundata import routing_data
from tourney.routers.runtime.submit import SubmitConfig, run_submission

from tests.routers.fakes import ScriptedBackend, write_run

IDS = ["q1", "q2", "q3", "q4"]


def router():
    return CalibratedRouter(target_kind="teacher_share", target_value=0.5, threshold=-1.0,
                            signals=["mean_logprob"], model="mean_logprob",
                            dev=CascadeFigures(n=4, teacher_share=0.5, accuracy=0.5))


def models():
    # q2 and q4 are confident (mean logprob -0.1) but their answers cannot be read
    outputs = {"q1": ["#### 1"], "q2": [""], "q3": ["#### 3"], "q4": ["I am not sure, maybe."]}
    student = ScriptedBackend(spec="fake:s", outputs=outputs, logprobs={i: [-0.1] for i in IDS})
    teacher = ScriptedBackend(spec="fake:t", outputs={i: [f"#### {100 + n}"] for n, i in enumerate(IDS, 1)})
    return student, teacher


def test_the_cascade_escalates_an_unread_answer_however_confident():
    student, teacher = models()
    records = Cascade(student, teacher, router(), "balanced").answer(
        [Question(id=i, question=f"{i} how many?", answer="") for i in IDS])
    got = {r.id: (r.routed_to, r.answer) for r in records}
    assert got == {"q1": ("student", "1"), "q2": ("teacher", "102"), "q3": ("student", "3"), "q4": ("teacher", "104")}
    assert sorted(teacher.asked()) == ["q2", "q4"]


def test_submit_asks_the_teacher_instead_of_the_fallback(tmp_path):
    student, teacher = models()
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps({"id": i, "question": f"{i} how many?"}) + "\n" for i in IDS))
    cfg = SubmitConfig(questions=str(path), out=str(tmp_path / "sub"), mode="balanced", deadline_ms=30000,
                       warmup=False)
    summary = run_submission(cfg, Cascade(student, teacher, router(), "balanced"))
    rows = {r["id"]: r for r in map(json.loads, (tmp_path / "sub" / "log.jsonl").read_text().splitlines())}
    assert [rows[i]["routed_to"] for i in IDS] == ["student", "teacher", "student", "teacher"]
    assert summary.fallbacks == 0 and rows["q2"]["teacher_latency_s"] > 0


def test_offline_figures_escalate_unread_answers_first(tmp_path):
    s = write_run(tmp_path / "s", "student", [
        {"id": "a", "output": "#### 1", "prediction": "1", "correct": True, "token_logprobs": [-0.1]},
        {"id": "b", "output": "", "prediction": None, "token_logprobs": [-0.01]},
        {"id": "c", "output": "#### 2", "prediction": "2", "token_logprobs": [-2.0]},
        {"id": "d", "output": "", "prediction": None, "error": "HTTP 503", "token_logprobs": None},
    ], logprobs=0)
    t = write_run(tmp_path / "t", "teacher", [{"id": i, "correct": True, "prediction": "1"} for i in "abcd"])
    data = routing_data(s, t)
    assert data.unread.tolist() == [False, True, False, True]
    conf = data.signal_confidence("mean_logprob")
    assert conf[1] == -math.inf and conf[3] == -math.inf and conf[0] > conf[2]
    assert data.router_confidence(router())[1] == -math.inf


def test_a_kept_unread_question_is_escalated_after_its_student_sample():
    lat = dict(student_first=np.ones(3), student_used=np.ones(3), teacher=np.full(3, 10.0))
    unread = np.array([False, True, False])
    view = policy_view(TWO_STAGE, np.zeros(3), pre_score=np.array([5.0, 5.0, 0.0]), teacher_below=-np.inf,
                       student_from=1.0, unread=unread, **lat)
    assert view.route.tolist() == [ROUTE_KEEP, ROUTE_CASCADE, ROUTE_CASCADE]
    assert view.score[1] == -np.inf and view.up[1] == 11.0 and view.sent(0.0).tolist() == [False, True, False]
    cascade = policy_view(CASCADE, np.zeros(3), unread=unread, **lat)
    assert cascade.sent(-1.0).tolist() == [False, True, False]


def test_unreadable_rows():
    from tourney.harness.types import SampleResult

    def row(**kw):
        base = dict(id="x", question="q", type="default", sample=0, output="o", prediction="1", gold="",
                    correct=False, latency_s=0.0, ttft_s=None, prompt_tokens=0, completion_tokens=0)
        return SampleResult(**{**base, **kw})

    assert unreadable([]) and unreadable([row(prediction=None)]) and unreadable([row(error="HTTP 500")])
    assert not unreadable([row()])
