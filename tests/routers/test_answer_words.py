"""routers.features.answer_features and routers.features.documents: signals of any question form read from the
student's text, and the gain router over the words of type, question and answer (offered from
1,000 dev questions, saved and scored alike offline and at run time)."""
from __future__ import annotations

import numpy as np
import pytest

from tourney.harness.types import SampleResult
from tourney.routers.features.answer_features import ANSWER_SIGNALS
from tourney.routers.policies.calibrate import CalibratedRouter, calibrate
from tourney.routers.features.documents import FULL_DOCUMENT, DocumentForm, routing_document
from tourney.routers.evaluation.rundata import routing_data
from tourney.routers.fitting.select import ANSWER_MIN_QUESTIONS, GAIN, Candidate, candidate_scores, candidates

from tests.routers.fakes import saved_words_router, write_run


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
    assert loaded.model.document_form == FULL_DOCUMENT
    live = [loaded.confidence(rows) for rows in data.student_rows[:20]]
    assert np.allclose(data.router_confidence(loaded)[:20], live)


def test_documents_hold_the_chosen_options_words():
    from tourney.routers.features.documents import chosen_option, rows_document

    r = row("The answer is (B).")
    assert chosen_option(r) == "a big dog"
    d = rows_document([r])
    assert d.endswith("c_big c_dog k_nonnumeric k_longest") and "c_cat" not in d  # chosen option only
    assert "c_" not in rows_document([r], form=DocumentForm(answer=True, checks=True))  # as files written before
    assert rows_document([r], form=DocumentForm(answer=True, choice=True)).endswith("c_big c_dog")
    for unread in (row("C or D?", prediction=None), row("(Z)", prediction="Z"), row("", prediction=None, error="x"),
                   row("The answer is 12.", prediction="12", choices=None)):
        assert chosen_option(unread) is None and "c_" not in rows_document([unread])


def test_a_document_form_holds_the_option_and_the_checks_only_with_the_answer():
    from tourney.routers.features.documents import QUESTION_TEXT

    assert DocumentForm(choice=True, checks=True, guess=True) == QUESTION_TEXT  # what the fit did with three flags
    assert DocumentForm.widest([QUESTION_TEXT, DocumentForm(True, choice=True), DocumentForm(True, checks=True),
                                DocumentForm(True, guess=True)]) == FULL_DOCUMENT


def test_a_router_file_from_before_the_chosen_option_reads_its_documents_as_fitted(tmp_path):
    import json

    s, t = runs(tmp_path, 40)
    for run in (s,):  # the questions get options; the student's prediction names B
        lines = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]
        for i, x in enumerate(lines):
            x["choices"] = ["cat", f"dog {i % 5}", "fish"]
        (run / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    data = routing_data(s, t)
    assert data.documents != data.plain_documents
    c = Candidate((), kind=GAIN, text=True, answer=True, l2=1.0)
    model = c.fit(data)
    assert model.document_form == FULL_DOCUMENT
    router = calibrate(candidate_scores(c, data, np.arange(data.n), model), data.student_correct,
                       data.teacher_correct, kind="teacher_share", value=0.5, model=model)
    router.save(tmp_path / "new.json")
    saved = json.loads((tmp_path / "new.json").read_text())
    # as files written before the length weighting, the check tokens and the chosen option were recorded
    weighted = json.dumps(saved)
    texts = [saved["model"][m]["text"] for m in ("student", "teacher", "discord", "winner")]
    assert all((x.pop("length_power"), x.pop("length_pivot")) == (0.25, 25.0) for x in texts)  # all read documents
    unit = json.dumps(saved)
    # too few questions for an option guesser: the documents have no guess tokens, and a file
    # from before the guesser (no reads_guess) reads them alike
    assert "guesser" not in saved["model"] and ', "reads_guess": true' in unit
    no_checks = unit.replace(', "reads_guess": true', "").replace(', "reads_checks": true', "")
    old = no_checks.replace(', "reads_choice": true', "")
    assert old != no_checks != unit != weighted
    (tmp_path / "unit.json").write_text(unit)
    (tmp_path / "no_checks.json").write_text(no_checks)
    (tmp_path / "old.json").write_text(old)
    no_checks_form = DocumentForm(answer=True, choice=True)
    assert data.documents != data.documents_as(no_checks_form)
    scores = {}
    for name, docs, form in (("new.json", data.documents, FULL_DOCUMENT), ("unit.json", data.documents, FULL_DOCUMENT),
                             ("no_checks.json", data.documents_as(no_checks_form), no_checks_form),
                             ("old.json", data.plain_documents, DocumentForm(answer=True))):
        loaded = CalibratedRouter.load(tmp_path / name)
        assert loaded.model.document_form == form
        assert loaded.model.to_dict() == json.loads((tmp_path / name).read_text())["model"]  # written back as read
        assert all(m.text.unit_length == (name != "new.json") for m in loaded.model.models)
        offline = data.router_confidence(loaded)
        live = [loaded.confidence(rows) for rows in data.student_rows]
        assert np.allclose(offline, live)
        assert np.allclose(offline, loaded.model.predict(data.features, docs))
        scores[name] = offline
    assert not np.allclose(scores["new.json"], scores["unit.json"])  # the weighting is read from the file


def test_answer_documents_weigh_their_words_by_length_and_question_texts_stay_unit_length():
    from scipy.sparse import linalg

    from tourney.routers.fitting.linear import HashedText, LinearModel

    texts = [" ".join(f"w{i}" for i in range(n)) for n in (3, 13, 200)]  # 5, 25 and 399 distinct 1-2 grams
    unit = HashedText().matrix(texts)
    weighted = HashedText(length_power=0.25, length_pivot=25.0).matrix(texts)
    assert np.allclose([linalg.norm(unit[i]) for i in range(3)], 1.0)
    # a row's length is (n / 25) ** 0.25: a text of 25 n-grams as at unit length, a longer one more
    assert np.allclose([linalg.norm(weighted[i]) for i in range(3)], [(n / 25) ** 0.25 for n in (5, 25, 399)])
    assert ((weighted > 0) != (unit > 0)).nnz == 0 and HashedText(length_pivot=7.0).unit_length  # same n-grams
    y = np.array([0, 1] * 20, dtype=float)
    docs = [f"{t} q{i % 4} right{int(v)}" for i, (t, v) in enumerate(zip(texts * 14, y))]
    answer = LinearModel.fit([{}] * 40, y, [], texts=docs, document=DocumentForm(answer=True)).text
    question = LinearModel.fit([{}] * 40, y, [], texts=docs).text
    assert (answer.length_power, answer.length_pivot) == (0.25, 25.0) and question.unit_length
    for bad in ({"length_power": 1.5}, {"length_pivot": 0.0}, {"length_power": float("nan")}):
        with pytest.raises(ValueError, match="length_p"):
            HashedText(**bad)


def test_a_router_file_with_a_bad_length_weighting_names_the_field(tmp_path):
    import json

    from tourney.errors import DataError

    s, t = runs(tmp_path, 40)
    _, saved = saved_words_router(tmp_path / "r.json", routing_data(s, t))
    for field, bad in (("length_power", 7), ("length_pivot", -1), ("length_pivot", "nan")):
        raw = json.loads(json.dumps(saved))
        raw["model"]["teacher"]["text"][field] = bad
        (tmp_path / "r.json").write_text(json.dumps(raw))
        with pytest.raises(DataError, match=f"r.json.*teacher.*{field}"):
            CalibratedRouter.load(tmp_path / "r.json")
