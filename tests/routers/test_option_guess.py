"""routers.features.option_guess: a guesser of multiple-choice answers from the options alone,
learnt from dev gold letters, whose agreement with the student's choice the words router reads;
out of fold on dev, kept in the router file for new questions."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tourney.errors import DataError
from tourney.harness.types import SampleResult
from tourney.routers.evaluation.rundata import routing_data
from tourney.routers.features.documents import FULL_DOCUMENT
from tourney.routers.features.option_guess import (
    GUESS_MIN_QUESTIONS, OptionGuesser, option_documents, out_of_fold_tokens,
)
from tourney.routers.policies.calibrate import CalibratedRouter

from tests.routers.fakes import saved_words_router, write_run

LETTERS = "ABCDE"


def mc_row(i: int, gold: int, chosen: int | None, *, n: int = 5) -> SampleResult:
    """Question i with n options; the gold one (index `gold`) is much the longest: a pattern the
    options alone give away, as generated distractors often do."""
    choices = [f"short {i} {k}" for k in range(n)]
    choices[gold] = f"a much longer and more specific answer {i} for this one"
    return SampleResult(id=f"q{i}", question=f"question {i} on topic {i % 7}?", type=f"t{i % 3}", sample=0,
                        output=f"The answer is ({LETTERS[chosen]})." if chosen is not None else "Not sure.",
                        prediction=LETTERS[chosen] if chosen is not None else None, gold=LETTERS[gold],
                        correct=chosen == gold, latency_s=0.0, ttft_s=None, prompt_tokens=0, completion_tokens=0,
                        choices=choices)


def rows(count: int, seed: int = 0) -> list[SampleResult]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        gold = int(rng.integers(5))
        chosen = gold if rng.random() < 0.5 else int(rng.integers(5))
        out.append(mc_row(i, gold, chosen))
    return out


def test_option_documents_say_where_each_option_lies():
    docs = option_documents("What is 3 + 0.5?", "Math", ["1.5", "20", "3.5", "3.5", "none of these"])
    assert "zpos0" in docs[0] and "zn5" in docs[0] and "ty_math" in docs[0]
    assert "znmin" in docs[0] and "znmax" in docs[1] and "zninner" in docs[2]
    assert "zdup" in docs[2] and "zdup" in docs[3] and "zdup" not in docs[0]
    assert "zlr0" in docs[4] and "o_none" in docs[4] and "zn" not in docs[4].replace("zn5", "")  # not a number


def test_the_guesser_learns_what_the_options_give_away_and_tokens_meet_the_choice():
    guesser = OptionGuesser.fit(rows(200))
    assert guesser is not None and guesser.questions == 200
    agree, other, none = mc_row(1000, 2, 2), mc_row(1001, 2, 0), mc_row(1002, 2, None)
    p = guesser.probabilities([agree])[0]
    assert p is not None and int(np.argmax(p)) == 2 and p[2] > 0.5 and abs(p.sum() - 1) < 1e-12
    assert "g_agree" in guesser.tokens(agree) and "g_rank0" in guesser.tokens(agree)
    assert "g_agree" not in guesser.tokens(other) and "g_rank1" in guesser.tokens(other)
    assert guesser.tokens(none) == ["g_nochoice"]
    open_question = agree.model_copy(update={"choices": None})
    failed = agree.model_copy(update={"error": "HTTP 500"})
    assert guesser.tokens(open_question) == [] and guesser.tokens(failed) == []
    assert guesser.tokens_of([agree, open_question]) == [guesser.tokens(agree), []]


def test_too_few_multiple_choice_questions_fit_no_guesser():
    assert OptionGuesser.fit(rows(GUESS_MIN_QUESTIONS - 1)) is None
    assert out_of_fold_tokens(rows(GUESS_MIN_QUESTIONS - 1)) == [[]] * (GUESS_MIN_QUESTIONS - 1)
    open_questions = [r.model_copy(update={"choices": None}) for r in rows(200)]
    assert OptionGuesser.fit(open_questions) is None


def test_a_question_s_own_gold_letter_does_not_change_its_tokens():
    data = rows(200)
    base = out_of_fold_tokens(data)
    for i in (0, 57, 199):
        r = data[i]
        other = LETTERS[(LETTERS.index(r.gold) + 1) % 5]
        flipped = list(data)
        flipped[i] = r.model_copy(update={"gold": other, "correct": r.prediction == other})
        assert out_of_fold_tokens(flipped)[i] == base[i]  # its fold's guesser never saw its gold
    assert OptionGuesser.fit(flipped) != OptionGuesser.fit(data)  # a guesser fitted on it does


def run_dirs(tmp_path, count: int):
    s_rows, t_rows = [], []
    rng = np.random.default_rng(1)
    for r in rows(count, seed=1):
        s_rows.append(json.loads(r.model_dump_json()))
        t_rows.append({"id": r.id, "question": r.question, "correct": bool(rng.random() < 0.6)})
    return write_run(tmp_path / "s", "s", s_rows), write_run(tmp_path / "t", "t", t_rows)


def test_a_router_keeps_its_guesser_in_its_file_and_scores_alike_offline_and_live(tmp_path):
    s, t = run_dirs(tmp_path, 240)
    data = routing_data(s, t)
    assert not any("g_" in d for d in data.documents_as(FULL_DOCUMENT))  # no guesser given: no tokens
    assert all(" g_" in d for d in data.calibration_documents(FULL_DOCUMENT))  # out of fold on dev
    model, saved = saved_words_router(tmp_path / "r.json", data)
    assert model.guesser == data.option_guesser and model.guesser is not None
    assert saved["model"]["student"]["text"]["reads_guess"] is True and saved["model"]["guesser"]["questions"] == 240
    loaded = CalibratedRouter.load(tmp_path / "r.json")
    assert loaded.model.guesser == model.guesser and loaded.model.document_form == FULL_DOCUMENT
    assert loaded.model.to_dict() == saved["model"]
    assert loaded.describe_model() == ("expected gain over the words of type, question and answer "
                                       "(with the option guesser's tokens)")
    offline = data.router_confidence(loaded)
    live = [loaded.confidence(r) for r in data.student_rows]
    assert np.allclose(offline, live)
    assert np.allclose(offline, loaded.model.predict(data.features, data.documents_as(FULL_DOCUMENT, model.guesser)))


def test_a_bad_guesser_in_a_router_file_names_the_field(tmp_path):
    s, t = run_dirs(tmp_path, 240)
    _, saved = saved_words_router(tmp_path / "r.json", routing_data(s, t))
    for change in ({"buckets": [saved["model"]["guesser"]["n_features"]], "weights": [1.0]},
                   {"weights": saved["model"]["guesser"]["weights"][:-1]}, {"questions": -1}, {"code": "x"}):
        raw = json.loads(json.dumps(saved))
        raw["model"]["guesser"].update(change)
        (tmp_path / "r.json").write_text(json.dumps(raw))
        with pytest.raises(DataError, match="r.json.*guesser"):
            CalibratedRouter.load(tmp_path / "r.json")
