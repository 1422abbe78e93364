"""routers.runtime.submit with gold answers, a warm-up, --limit, failed requests and bounded settings:
a submission scores itself after its answers are decided, never inside a question's deadline."""
from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from tourney.cli.main import main
from tourney.routers.runtime.cascade import Cascade
from tourney.routers.runtime.submit import DEADLINE_MARGIN_S, SubmitConfig, run_submission
from tests.routers.fakes import ScriptedBackend
from tests.routers.test_submit import router

BOMB = r"The answer is \boxed{10^{10^{10^{10}}}\cdot 1}"
# (id, type, gold); the student is right on q1, q2, q4, wrong on q3, q5, q6
GOLD = [("q1", "one_step", 1), ("q2", "one_step", 2), ("q3", "one_step", 3),
        ("q4", "two_step", 4), ("q5", "two_step", 5), ("q6", "long_chain", 6)]
STUDENT_SAYS = {"q1": "1", "q2": "2", "q3": "30", "q4": "4", "q5": "50", "q6": "60"}


def gold_file(tmp_path):
    path = tmp_path / "gold.jsonl"
    path.write_text("".join(json.dumps({"id": i, "question": f"{i} how many?", "answer": g, "type": t}) + "\n"
                            for i, t, g in GOLD))
    return path


def student(**kw):
    kw.setdefault("outputs", {i: [f"#### {a}"] for i, a in STUDENT_SAYS.items()})
    kw.setdefault("logprobs", {i: [-0.1] for i in STUDENT_SAYS})  # confident: the teacher is never asked
    return ScriptedBackend(spec="fake:s", **kw)


def teacher(**kw):
    return ScriptedBackend(spec="fake:t", outputs={i: [f"#### {g}"] for i, _, g in GOLD}, **kw)


def submit(tmp_path, cascade, **kw):
    kw.setdefault("warmup", False)
    cfg = SubmitConfig(questions=str(gold_file(tmp_path)), out=str(tmp_path / "sub"), mode=cascade.mode, **kw)
    return run_submission(cfg, cascade), tmp_path / "sub"


def log_rows(out):
    return [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]


def test_gold_answers_score_the_submission_overall_and_per_type(tmp_path):
    summary, out = submit(tmp_path, Cascade(student(), teacher(), router(), "speed"), deadline_ms=5000)
    s = summary.scored
    assert s.overall.n == 6 and s.overall.correct == 3 and s.overall.accuracy == 0.5
    assert list(s.by_type) == ["one_step", "two_step", "long_chain"]  # the generator's order
    assert (s.by_type["one_step"].correct, s.by_type["two_step"].correct, s.by_type["long_chain"].correct) == (2, 1, 0)
    low, high = s.overall.ci95
    assert 0.18 < low < 0.5 < high < 0.82  # Wilson 95% for 3 of 6
    saved = json.loads((out / "summary.json").read_text())["scored"]
    assert saved["overall"]["accuracy"] == 0.5 and saved["ci_method"] == "wilson"
    assert saved["by_type"]["long_chain"]["fallbacks"] == 0
    # the cascade never saw a gold answer: nothing was graded inside a timed call
    assert all(r["student_prediction"] == STUDENT_SAYS[r["id"]] for r in log_rows(out))

    from tourney.routers.runtime.submit import render_summary

    text = render_summary(summary)
    assert "overall: accuracy 0.500 [" in text and "one_step (50%): accuracy 0.667" in text


def test_tournament_questions_without_gold_are_not_scored(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps({"id": i, "question": f"{i} how many?"}) + "\n" for i in STUDENT_SAYS))
    cfg = SubmitConfig(questions=str(path), out=str(tmp_path / "sub"), mode="speed", deadline_ms=5000, warmup=False)
    assert run_submission(cfg, Cascade(student(), teacher(), router(), "speed")).scored is None


def test_slow_grading_never_counts_against_the_deadline(tmp_path, monkeypatch):
    import tourney.harness.pipeline as pipeline
    import tourney.routers.runtime.submit_grade as grade

    slow_score, real_equal = pipeline.score, grade.numbers_equal

    def sleepy_score(*a):
        time.sleep(1.0)
        return slow_score(*a)

    def sleepy_equal(*a):
        time.sleep(0.5)
        return real_equal(*a)

    monkeypatch.setattr(pipeline, "score", sleepy_score)
    monkeypatch.setattr(grade, "numbers_equal", sleepy_equal)
    summary, out = submit(tmp_path, Cascade(student(), teacher(), router(), "speed"), deadline_ms=900)
    assert summary.deadline_missed == 0 and summary.fallbacks == 0
    # one grading call takes 1 s: inside the clock, it would have missed the 0.9 s deadline
    assert max(r["total_latency_s"] for r in log_rows(out)) < 1.0
    assert summary.scored.overall.correct == 3  # graded after, with the real verdicts


def test_a_scoring_bomb_in_the_students_answer_keeps_the_deadline(tmp_path):
    bomb = student(outputs={i: [BOMB] for i in STUDENT_SAYS})
    summary, out = submit(tmp_path, Cascade(bomb, teacher(), router(), "speed"), deadline_ms=2000)
    rows = log_rows(out)
    assert len(rows) == 6 and summary.deadline_missed == 0
    assert all(r["routed_to"] == "student" for r in rows)  # the student's (odd) answer stands, in time
    assert max(r["total_latency_s"] for r in rows) <= 2.0 + DEADLINE_MARGIN_S
    assert summary.scored.overall.correct == 0


class ColdFirstCall(ScriptedBackend):
    """A model whose first call is slow (a cold process), every later one fast."""

    def generate(self, prompts, cfg):
        if not self.calls:
            time.sleep(1.2)
        return super().generate(prompts, cfg)


def test_warm_up_takes_the_cold_start_before_the_clock(tmp_path):
    outputs = {i: [f"#### {a}"] for i, a in STUDENT_SAYS.items()}
    cold = ColdFirstCall(spec="fake:s", outputs=outputs, logprobs={i: [-0.1] for i in STUDENT_SAYS})
    summary, out = submit(tmp_path, Cascade(cold, teacher(), router(), "speed"), deadline_ms=600, batch_size=3,
                          warmup=True, budget_s=100)
    assert summary.deadline_missed == 0 and summary.fallbacks == 0
    assert summary.warmup_s >= 1.2 and summary.warmup_error is None
    assert summary.spent_s < summary.warmup_s  # the warm-up is not spent from the budget
    assert [keys for keys, _ in cold.calls] == [["q1", "q2", "q3"], ["q1", "q2", "q3"], ["q4", "q5", "q6"]]

    (tmp_path / "cold").mkdir()
    cold2 = ColdFirstCall(spec="fake:s", outputs=outputs, logprobs={i: [-0.1] for i in STUDENT_SAYS})
    summary, _ = submit(tmp_path / "cold", Cascade(cold2, teacher(), router(), "speed"), deadline_ms=600,
                        batch_size=3, warmup=False)
    # the first batch pays the cold start (and the next one waits for the abandoned call to free the model)
    assert summary.deadline_missed >= 3 and summary.warmup_s is None


def test_warm_up_calls_each_model_the_mode_uses(tmp_path):
    s, t = student(), teacher()
    submit(tmp_path, Cascade(s, t, router(), "balanced"), deadline_ms=5000, warmup=True)
    assert s.calls[0][0] == ["q1"] and t.calls[0][0] == ["q1"]  # one question each, first
    assert len(t.calls) == 1  # confident student: the teacher's only call was the warm-up


def test_limit_answers_the_first_n_and_a_larger_limit_resumes(tmp_path):
    s = student()
    summary, out = submit(tmp_path, Cascade(s, teacher(), router(), "speed"), deadline_ms=5000, limit=2)
    assert summary.n == 2 and summary.answered == 2 and summary.scored.overall.n == 2
    assert [json.loads(x)["id"] for x in (out / "submission.jsonl").read_text().splitlines()] == ["q1", "q2"]
    s2 = student()
    summary, out = submit(tmp_path, Cascade(s2, teacher(), router(), "speed"), deadline_ms=5000)
    assert s2.asked() == ["q3", "q4", "q5", "q6"] and summary.answered == 6
    with pytest.raises(ValueError, match="limit"):
        SubmitConfig(questions="q", out="o", limit=0)


def test_failed_requests_are_counted_and_asked_again_on_resume(tmp_path):
    summary, out = submit(tmp_path, Cascade(student(fail={"q2"}), teacher(), router(), "speed"), deadline_ms=5000)
    assert summary.requests_failed == 1 and summary.fallbacks == 1 and summary.deadline_missed == 0
    assert [r["id"] for r in log_rows(out) if r["request_failed"]] == ["q2"]
    s = student()
    summary, out = submit(tmp_path, Cascade(s, teacher(), router(), "speed"), deadline_ms=5000)
    assert s.asked() == ["q2"] and summary.requests_failed == 0 and summary.fallbacks == 0
    sub = [json.loads(x) for x in (out / "submission.jsonl").read_text().splitlines()]
    assert [r["answer"] for r in sub] == ["1", "2", "30", "4", "50", "60"]


def test_a_failed_student_rescued_by_the_teacher_is_not_a_failure(tmp_path):
    summary, out = submit(tmp_path, Cascade(student(fail={"q2"}), teacher(), router(), "balanced"), deadline_ms=5000)
    row = next(r for r in log_rows(out) if r["id"] == "q2")
    assert row["routed_to"] == "teacher" and not row["request_failed"] and summary.requests_failed == 0


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("flag, value", [("--deadline-ms", "inf"), ("--deadline-ms", "1e300"), ("--deadline-ms", "nan"),
                                         ("--deadline-ms", "0"), ("--budget-s", "inf"), ("--budget-s", "1e300"),
                                         ("--budget-s", "-1")])
def test_deadline_and_budget_must_be_finite_positive_and_bounded(tmp_path, flag, value):
    q = gold_file(tmp_path)
    args = ["submit", "--questions", q, "--router", q, "--out", tmp_path / "o", "--deadline-ms", "1000", flag, value]
    res = cli(*args)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and flag.strip("-").replace("-", "_") in lines[0], res.output
    assert not (tmp_path / "o").exists()  # refused before anything was written or loaded


def test_cli_exits_3_with_a_closing_line_when_requests_failed(tmp_path, monkeypatch):
    import tourney.routers.runtime.bundle as bundle
    import tourney.routers.runtime.cascade as cascade

    failing = student(fail={"q3"})
    monkeypatch.setattr(cascade, "load_cascade", lambda *a, **k: Cascade(failing, None, None, "speed"))
    monkeypatch.setattr(bundle.RouterBundle, "load", classmethod(lambda cls, p: _Bundle()))
    q = gold_file(tmp_path)
    args = ["submit", "--questions", q, "--router", q, "--mode", "speed", "--deadline-ms", "5000",
            "--out", tmp_path / "o", "--no-warmup"]
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 3, res.output
    assert "error: 1 question(s) had a request that failed for good" in res.output
    assert "run the same command again" in res.output and "overall: accuracy 0.500" in res.output
    monkeypatch.setattr(cascade, "load_cascade", lambda *a, **k: Cascade(student(), None, None, "speed"))
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 0, res.output  # resumed: q3 asked again and answered


class _Bundle:
    def with_specs(self, *_):
        return self

    def student_warning(self, where):
        return None  # no recorded weights: nothing to compare


def test_calls_abandoned_at_the_deadline_are_waited_for_before_the_end():
    from tourney.routers.runtime.deadline import call_with_timeout, wait_abandoned

    ended = []
    call = call_with_timeout(lambda: (time.sleep(0.6), ended.append(1)), 0.05)
    assert not call.done and ended == []
    assert wait_abandoned(30) == 0 and ended == [1]  # it ran to its end, and is no longer counted
    assert call_with_timeout(lambda: 1, 5).value == 1 and wait_abandoned(0) == 0
