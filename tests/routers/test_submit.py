"""routers.runtime.submit: every question answered, deadlines kept, budget, resumption after a kill."""
from __future__ import annotations

import csv
import json

import pytest

from tourney.errors import ConfigError
from tourney.harness.types import DataError
from tourney.routers.policies.calibrate import CalibratedRouter
from tourney.routers.runtime.cascade import Cascade
from tourney.routers.evaluation.metrics import CascadeFigures
from tourney.routers.runtime.submit import SubmitConfig, load_submit_questions, run_submission

from tests.routers.fakes import ScriptedBackend

IDS = ["q1", "q2", "q3", "q4", "q5", "q6"]


def questions_file(tmp_path):
    path = tmp_path / "questions.jsonl"
    # tournament questions carry no answer
    path.write_text("".join(json.dumps({"id": i, "question": f"{i} how many?"}) + "\n" for i in IDS))
    return path


def router(threshold=-1.0):
    return CalibratedRouter(target_kind="teacher_share", target_value=0.5, threshold=threshold,
                            signals=["mean_logprob"], model="mean_logprob",
                            dev=CascadeFigures(n=6, teacher_share=0.5, accuracy=0.5))


SLOW_S = 3.0  # a model this slow is far past every deadline below, even on a loaded machine


def models(teacher_sleep=0.0, student_sleep=0.0):
    # odd questions are confident (mean logprob -0.1), even ones are escalated (-3)
    student = ScriptedBackend(spec="fake:s", sleep_s=student_sleep,
                              outputs={i: [f"#### {n}"] for n, i in enumerate(IDS, 1)},
                              logprobs={i: [-0.1 if n % 2 else -3.0] for n, i in enumerate(IDS, 1)})
    teacher = ScriptedBackend(spec="fake:t", sleep_s=teacher_sleep,
                              outputs={i: [f"#### {100 + n}"] for n, i in enumerate(IDS, 1)})
    return student, teacher


def submit(tmp_path, cascade, **kw):
    # No warm-up unless a test asks for one: the scripted models' call lists are asserted on.
    kw.setdefault("warmup", False)
    cfg = SubmitConfig(questions=str(questions_file(tmp_path)), out=str(tmp_path / "sub"),
                       mode=cascade.mode, **kw)
    return run_submission(cfg, cascade), tmp_path / "sub"


def log_rows(out):
    return [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]


def test_every_question_answered_in_order(tmp_path):
    student, teacher = models()
    summary, out = submit(tmp_path, Cascade(student, teacher, router(), "balanced"), deadline_ms=5000, concurrency=2)
    sub = [json.loads(x) for x in (out / "submission.jsonl").read_text().splitlines()]
    assert [r["id"] for r in sub] == IDS
    assert [r["answer"] for r in sub] == ["1", "102", "3", "104", "5", "106"]
    with (out / "submission.csv").open() as f:
        assert list(csv.reader(f)) == [["id", "answer"], *[[r["id"], r["answer"]] for r in sub]]
    assert sorted(teacher.asked()) == ["q2", "q4", "q6"]
    assert summary.answered == 6 and summary.escalated == 3 and summary.escalated_share == 0.5
    assert summary.deadline_missed == 0 and summary.fallbacks == 0
    assert json.loads((out / "summary.json").read_text())["answered"] == 6
    assert {r["id"] for r in log_rows(out)} == set(IDS)


@pytest.mark.parametrize("concurrency, batch_size", [(3, 1), (1, 6)])  # one at a time; all six in one batch
def test_slow_teacher_misses_the_deadline_and_the_student_answer_stands(tmp_path, concurrency, batch_size):
    student, teacher = models(teacher_sleep=SLOW_S)
    deadline_ms = 300
    summary, out = submit(tmp_path, Cascade(student, teacher, router(), "balanced"), deadline_ms=deadline_ms,
                          concurrency=concurrency, batch_size=batch_size)
    rows = {r["id"]: r for r in log_rows(out)}
    assert [rows[i]["answer"] for i in IDS] == ["1", "2", "3", "4", "5", "6"]
    for i in ("q2", "q4", "q6"):
        assert rows[i]["escalated"] and rows[i]["deadline_missed"]
        assert rows[i]["routed_to"] == "student" and rows[i]["answer"] == i[1]
        assert "no answer within the deadline" in rows[i]["error"]
    assert summary.deadline_missed == 3
    # decided at the deadline, without waiting for the teacher (how soon after it is a figure for
    # benchmarks/, not a test: a loaded machine stretches the bookkeeping)
    decided = max(r["total_latency_s"] for r in rows.values())
    assert decided < SLOW_S, f"answers decided {decided:.3f} s after the question was sent"


def test_student_slower_than_the_deadline_leaves_the_fallback(tmp_path):
    student, teacher = models(student_sleep=SLOW_S)
    summary, out = submit(tmp_path, Cascade(student, teacher, router(), "speed"), deadline_ms=200, concurrency=6)
    assert [json.loads(x)["answer"] for x in (out / "submission.jsonl").read_text().splitlines()] == ["0"] * 6
    assert summary.fallbacks == 6 and summary.deadline_missed == 6
    assert max(r["total_latency_s"] for r in log_rows(out)) < SLOW_S  # the fallback did not wait for the student


def test_spent_budget_leaves_student_only_answers(tmp_path):
    student, teacher = models(student_sleep=0.5)
    # the first student call alone outlasts the budget: no teacher call is ever made (the budget
    # leaves a loaded machine time to start the first question within it)
    summary, out = submit(tmp_path, Cascade(student, teacher, router(), "balanced"), deadline_ms=5000,
                          budget_s=0.25, concurrency=1)
    assert teacher.calls == []
    rows = log_rows(out)
    assert all(r["routed_to"] == "student" for r in rows)
    # q1 started within the budget (and was confident); every later one started after it was spent
    assert [r["budget_exhausted"] for r in rows] == [False] + [True] * 5
    assert summary.budget_exhausted == 5 and summary.escalated == 0
    # after the first question the student runs one sample without logprobs (no confidence needed)
    assert [cfg.logprobs for _, cfg in student.calls[1:]] == [None] * 5


def test_accuracy_mode_with_budget_falls_back_to_the_student(tmp_path):
    student, teacher = models(teacher_sleep=0.05)
    summary, out = submit(tmp_path, Cascade(student, teacher, router(), "accuracy"), deadline_ms=5000,
                          budget_s=0.2, concurrency=1)
    rows = log_rows(out)
    assert rows[0]["routed_to"] == "teacher"
    assert rows[-1]["routed_to"] == "student" and rows[-1]["budget_exhausted"]
    assert summary.answered == 6


def test_resume_after_a_kill_answers_the_rest_without_duplicates(tmp_path):
    student, teacher = models()
    cascade = Cascade(student, teacher, router(), "balanced")
    _, out = submit(tmp_path, cascade, deadline_ms=5000)
    lines = (out / "log.jsonl").read_text().splitlines()
    # a kill after three questions, in the middle of writing the fourth
    (out / "log.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:25])
    (out / "submission.jsonl").unlink()
    first_answers = {json.loads(x)["id"]: json.loads(x)["answer"] for x in lines[:3]}

    student2, teacher2 = models()
    summary, out = submit(tmp_path, Cascade(student2, teacher2, router(), "balanced"), deadline_ms=5000)
    asked = student2.asked()
    assert sorted(asked) == sorted(set(IDS) - set(first_answers))  # answered ids are skipped
    rows = log_rows(out)
    assert sorted(r["id"] for r in rows) == sorted(IDS)  # no duplicate, no torn line
    sub = {json.loads(x)["id"]: json.loads(x)["answer"] for x in (out / "submission.jsonl").read_text().splitlines()}
    assert list(sub) == IDS and all(sub[i] == a for i, a in first_answers.items())
    assert summary.answered == 6


def test_resume_with_other_settings_is_refused(tmp_path):
    student, teacher = models()
    submit(tmp_path, Cascade(student, teacher, router(), "balanced"), deadline_ms=5000)
    with pytest.raises(DataError, match="deadline_ms"):
        submit(tmp_path, Cascade(student, teacher, router(), "balanced"), deadline_ms=1000)


def test_questions_without_answers_load(tmp_path):
    qs = load_submit_questions(questions_file(tmp_path))
    assert [q.id for q in qs] == IDS and all(q.answer == "" for q in qs)


def test_batches_answer_like_single_questions_with_one_call_per_model_per_batch(tmp_path):
    student, teacher = models()
    summary, out = submit(tmp_path, Cascade(student, teacher, router(), "balanced"), deadline_ms=5000, batch_size=4)
    assert [json.loads(x)["answer"] for x in (out / "submission.jsonl").read_text().splitlines()] == \
        ["1", "102", "3", "104", "5", "106"]
    assert [keys for keys, _ in student.calls] == [IDS[:4], IDS[4:]]  # one student call per batch
    assert [keys for keys, _ in teacher.calls] == [["q2", "q4"], ["q6"]]  # and one for what it escalates
    assert summary.escalated == 3 and summary.deadline_missed == 0
    rows = {r["id"]: r for r in log_rows(out)}
    # a confident question is decided when the student batch returns, before the teacher's call
    assert rows["q1"]["total_latency_s"] <= rows["q2"]["total_latency_s"]


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch_size"):
        SubmitConfig(questions="q", out="o", batch_size=0)


def test_resume_with_another_model_is_refused(tmp_path):
    """--student/--teacher overrides are part of a submission's identity: resuming with another
    model would mix two models' answers in one submission."""
    from tourney.routers.runtime.bundle import ModelSettings

    student, teacher = models()
    settings = ModelSettings(spec="fake:s")
    submit(tmp_path, Cascade(student, teacher, router(), "balanced", student_settings=settings), deadline_ms=5000)
    other = ModelSettings(spec="openai:other@http://127.0.0.1:9/v1")
    with pytest.raises(DataError, match=r"student.spec: recorded .fake:s., now .openai:other"):
        submit(tmp_path, Cascade(student, teacher, router(), "balanced", student_settings=other), deadline_ms=5000)
    args = ModelSettings(spec="fake:s", model_args={"dtype": "bfloat16"})
    with pytest.raises(DataError, match="student"):
        submit(tmp_path, Cascade(student, teacher, router(), "balanced", student_settings=args), deadline_ms=5000)


def server_models(teacher_sleep=0.0):
    from tourney.models.types import Capabilities

    student, teacher = models(teacher_sleep=teacher_sleep)
    for b in (student, teacher):
        b.capabilities = Capabilities(server=True, concurrency=8)
    return student, teacher


def test_against_servers_questions_flow_one_by_one_with_c_in_flight(tmp_path):
    student, teacher = server_models(teacher_sleep=0.2)
    summary, out = submit(tmp_path, Cascade(student, teacher, router(), "balanced"), deadline_ms=5000)
    meta = json.loads((out / "submit.json").read_text())
    assert meta["concurrency"] == 8  # every model is a server: 8 in flight by default
    assert all(len(keys) == 1 for keys, _ in student.calls + teacher.calls)  # no batches, so no barriers
    assert summary.answered == 6 and summary.escalated == 3
    with pytest.raises(ConfigError, match="batch-size 4 batches in-process models"):
        submit(tmp_path, Cascade(student, teacher, router(), "balanced"), deadline_ms=5000, batch_size=4)


def test_deadline_and_budget_must_be_finite_and_positive():
    for bad in ({"deadline_ms": float("inf")}, {"deadline_ms": 0}, {"budget_s": float("nan")}, {"budget_s": -1}):
        with pytest.raises(ValueError):
            SubmitConfig(questions="q", out="o", **bad)


def test_a_bad_log_row_names_its_line_and_field(tmp_path):
    student, teacher = models()
    _, out = submit(tmp_path, Cascade(student, teacher, router(), "balanced"), deadline_ms=5000)
    lines = (out / "log.jsonl").read_text().splitlines()
    bad = json.loads(lines[1]) | {"escalated": "yes"}
    (out / "log.jsonl").write_text("\n".join([lines[0], json.dumps(bad), *lines[2:]]) + "\n")
    with pytest.raises(DataError, match=r"log.jsonl:2: field 'escalated'"):
        submit(tmp_path, Cascade(*models(), router(), "balanced"), deadline_ms=5000)


class FirstStage:
    """A stand-in first stage (routers.policies.policy.PreRouting's interface): q2 and q4 are clearly hard,
    q1 clearly easy, the rest go through the cascade."""

    def decide(self, text):
        return {"q2": "teacher", "q4": "teacher", "q1": "student"}.get(text.split()[0])


@pytest.mark.parametrize("batch_size", [1, 6])
def test_two_stage_sends_clear_cases_before_the_student_answers(tmp_path, batch_size):
    student, teacher = models()
    teacher.fail = {"q4"}  # a pre-routed question the teacher cannot answer: the student still does
    r = router()
    r.pre = FirstStage()
    summary, out = submit(tmp_path, Cascade(student, teacher, r, "balanced"), deadline_ms=5000,
                          batch_size=batch_size)
    assert "q2" not in student.asked() and student.asked().count("q4") == 1
    rows = {row["id"]: row for row in log_rows(out)}
    assert rows["q2"]["routed_to"] == "teacher" and rows["q2"]["student_latency_s"] == 0.0
    assert rows["q4"]["routed_to"] == "student" and rows["q4"]["answer"] == "4" and rows["q4"]["escalated"]
    assert rows["q1"]["routed_to"] == "student" and not rows["q1"]["escalated"]
    assert rows["q6"]["escalated"] and not rows["q5"]["escalated"]  # the cascade decides the rest
    one_sample = [cfg.n for keys, cfg in student.calls if keys == ["q1"]]
    assert batch_size > 1 or one_sample == [1]
    assert sorted(teacher.asked()) == ["q2", "q4", "q6"]


def test_a_kept_question_whose_student_request_fails_goes_to_the_teacher(tmp_path):
    student, teacher = models()
    student.fail = {"q1"}  # the first stage keeps q1 with the student, whose request then fails
    r = router()
    r.pre = FirstStage()
    _, out = submit(tmp_path, Cascade(student, teacher, r, "balanced"), deadline_ms=5000)
    rows = {row["id"]: row for row in log_rows(out)}
    assert rows["q1"]["escalated"] and rows["q1"]["routed_to"] == "teacher"
    assert "q1" in teacher.asked()


def test_objects_made_before_the_clock_are_frozen_out_of_the_collector_while_answers_are_timed(tmp_path):
    # A full collection over a loaded model's objects pauses every worker thread at once (a
    # deadline missed by the collection's length); while the submission answers, what existed
    # before is frozen, and afterwards it is collectable again.
    import gc

    seen: list[int] = []

    class Counting(ScriptedBackend):
        def generate(self, prompts, cfg):
            seen.append(gc.get_freeze_count())
            return super().generate(prompts, cfg)

    student, teacher = models()
    counting = Counting(spec=student.spec, outputs=student.outputs, logprobs=student.logprobs)
    before = gc.get_freeze_count()
    submit(tmp_path, Cascade(counting, teacher, router(), "speed"), deadline_ms=5000)
    assert seen and min(seen) > before  # frozen during every timed call
    assert gc.get_freeze_count() == before
