"""routers.features.answer_features and routers.features.documents: signals of any question form read from the
student's text, and the gain router over the words of type, question and answer (offered from
1,000 dev questions, saved and scored alike offline and at run time)."""
from __future__ import annotations

import numpy as np

from tourney.harness.types import SampleResult
from tourney.routers.features.answer_features import ANSWER_SIGNALS
from tourney.routers.policies.calibrate import CalibratedRouter, calibrate
from tourney.routers.features.documents import routing_document
from tourney.routers.evaluation.rundata import routing_data
from tourney.routers.fitting.select import ANSWER_MIN_QUESTIONS, GAIN, Candidate, candidate_scores, candidates

from tests.routers.fakes import write_run


def row(output: str, prediction: str | None = "B", choices=("cat", "a big dog", "fish"), **kw) -> SampleResult:
    base = dict(id="x", question="Which animal barks?", type="biology", sample=0, output=output, prediction=prediction,
                gold="B", correct=True, latency_s=0.0, ttft_s=None, prompt_tokens=0, completion_tokens=0,
                finish_reason="stop", choices=list(choices) if choices else None)
    return SampleResult(**{**base, **kw})


def values(r: SampleResult) -> dict:
    return {k: f([r]) for k, f in ANSWER_SIGNALS.items()}


def test_answer_signals_on_hand_made_outputs():
    v = values(row("Maybe (A)? However a big dog barks. The answer is (A). Wait, the answer is (B)."))
    assert v["answer_statements"] == 2 and v["answer_changes"] == 1 and v["options_mentioned"] == 2 / 3
    assert v["chosen_position"] == 0.5 and v["chosen_overlap"] == 1.0 and v["truncated"] == 0.0
    assert abs(v["chosen_length"] - len("a big dog") / ((3 + 9 + 4) / 3)) < 1e-12
    assert abs(v["hedge_rate"] - 100 * 3 / 16) < 1e-12  # maybe, however, wait of 16 words
    plain = values(row("B", choices=None, finish_reason="length"))
    assert plain["answer_statements"] == 0 and plain["truncated"] == 1.0
    assert plain["chosen_position"] is None and plain["options_mentioned"] is None  # no options recorded
    failed = values(row("", prediction=None, error="HTTP 500"))
    assert all(x is None for x in failed.values())


def test_documents_keep_type_question_and_answer_words_apart():
    d = routing_document("Why however?", "Computer Science", "However, it is (B).")
    assert d.startswith("qtype_computer_science Why however?") and "a_however" in d and "a_it" in d


def runs(tmp_path, n: int):
    rng = np.random.default_rng(0)
    s_rows, t_rows = [], []
    for i in range(n):
        sure = i % 2 == 0
        right = bool(rng.random() < (0.8 if sure else 0.3))
        s_rows.append({"id": f"q{i}", "question": f"question {i} on topic {i % 7}?", "type": f"t{i % 3}",
                       "output": "The answer is (B)." if sure else "Perhaps (A), but maybe (B).",
                       "prediction": "B", "gold": "B" if right else "C", "correct": right, "completion_tokens": 9})
        t_rows.append({"id": f"q{i}", "question": f"question {i} on topic {i % 7}?", "correct": bool(rng.random() < 0.7)})
    return write_run(tmp_path / "s", "s", s_rows), write_run(tmp_path / "t", "t", t_rows)


def test_words_routers_are_offered_from_enough_questions_and_score_alike(tmp_path):
    s, t = runs(tmp_path, ANSWER_MIN_QUESTIONS)
    data = routing_data(s, t)
    words = [c for c in candidates(data) if c.answer]
    assert words and all(c.kind == GAIN for c in words)
    assert not any(c.answer for c in candidates(data.subset(range(ANSWER_MIN_QUESTIONS - 1))))
    c = Candidate((), kind=GAIN, text=True, answer=True, l2=10.0)
    model = c.fit(data)
    score = candidate_scores(c, data, np.arange(data.n), model)
    assert score[0] > score[1]  # the hedging answer is escalated first
    router = calibrate(score, data.student_correct, data.teacher_correct, kind="teacher_share", value=0.5, model=model)
    router.save(tmp_path / "r.json")
    loaded = CalibratedRouter.load(tmp_path / "r.json")
    assert loaded.model.reads_answer
    live = [loaded.confidence(rows) for rows in data.student_rows[:20]]
    assert np.allclose(data.router_confidence(loaded)[:20], live)
