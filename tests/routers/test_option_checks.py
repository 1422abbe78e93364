"""routers.features.option_checks: did the student's reasoning compute the number of the option it chose?"""
from __future__ import annotations

import math

from hypothesis import given, strategies as st

from tourney.harness.types import SampleResult
from tourney.routers.features.answer_features import ANSWER_SIGNALS
from tourney.routers.features.documents import chosen_option
from tourney.routers.features.option_checks import (
    check_words, chosen_index, length_rank, numbers, numeric_check,
)

PRICES = ("$52.50", "$83.33", "$131.25", "$78.75")


def chosen_computed(rows: list[SampleResult]) -> float | None:
    """1 / 0: whether the reasoning wrote the chosen option's number; None without that check."""
    c = numeric_check(rows[0])
    return None if c is None or not c.numeric or c.chosen is None else float(c.chosen in c.computed)


def row(output: str, prediction: str | None = "B", choices=PRICES, **kw) -> SampleResult:
    base = dict(id="x", question="How much interest?", type="business", sample=0, output=output,
                prediction=prediction, gold="B", correct=True, latency_s=0.0, ttft_s=None, prompt_tokens=0,
                completion_tokens=0, finish_reason="stop", choices=list(choices) if choices else None)
    return SampleResult(**{**base, **kw})


def test_numbers_read_the_forms_outputs_write():
    assert numbers("1,250 and -3.5 then 2e-3") == [1250.0, -3.5, 0.002]
    assert numbers(r"4.2 x 10^-3, 4.2 \times 10^{-3} and 4.2 × 10^-3") == [0.0042] * 3
    assert numbers("H2O from 5-10 m") == [5.0, 10.0]  # a digit inside a word is no number; a range is two
    assert numbers("no digits here") == []
    assert numbers("4.95 x 10^{14}", mantissas=True) == [4.95e14, 4.95]


def test_a_scientific_result_matches_an_option_that_lost_its_times_sign():
    # MMLU-Pro writes some options as "4.950$10^{14}$": their first number is the mantissa
    r = row(r"f = c / lambda = 4.950 \times 10^{14} Hz. The closest option is (B).",
            choices=("5.750$10^{14}$ Hz", "4.950$10^{14}$ Hz", "3.982$10^{14}$ Hz"))
    assert chosen_computed([r]) == 1.0


@given(st.text(max_size=300))
def test_numbers_never_fail_and_are_finite(text):
    assert all(math.isfinite(v) for v in numbers(text))


def test_the_chosen_options_number_in_the_reasoning():
    c = numeric_check(row("5 / 0.06 = 83.33. The answer is (B)."))
    assert c.numeric and c.chosen == 1 and c.computed == (1,) and c.last
    assert check_words(row("5 / 0.06 = 83.33. The answer is (B).")) == [
        "k_numeric", "k_chosen_computed", "k_last_match", "k_chosen_inner", "k_shortest"]
    assert chosen_computed([row("5 / 0.06 = 83.3 (rounded). The answer is (B).")]) == 1.0  # within 0.5%


def test_an_answer_its_reasoning_did_not_compute():
    guess = row("So the interest is $61.20. None match; the closest option is (B).")
    assert check_words(guess) == ["k_numeric", "k_chosen_not_computed", "k_last_miss", "k_chosen_inner",
                                  "k_none_computed", "k_shortest"]
    assert chosen_computed([guess]) == 0.0
    other = row("Half a year at 5% gives 52.50, so 83.33 remains... The answer is (B).", prediction="C")
    assert check_words(other) == ["k_numeric", "k_chosen_not_computed", "k_last_miss", "k_chosen_largest",
                                  "k_other_computed", "k_longest"]


def test_where_the_chosen_number_lies_and_whether_the_question_gave_it():
    assert numeric_check(row("... The answer is (A).", prediction="A")).rank == "smallest"
    assert numeric_check(row("... The answer is (C).", prediction="C")).rank == "largest"
    assert numeric_check(row("... The answer is (B).", choices=("1", "2"))).rank is None  # two options: no inside
    copied = row("The answer is (A).", prediction="A", question="A loan of $52.50 at 5%: how much interest?")
    assert numeric_check(copied).in_question and "k_chosen_in_question" in check_words(copied)
    assert not numeric_check(row("The answer is (B).")).in_question


def test_only_the_reasoning_before_the_first_statement_counts():
    # the chosen number written only after the answer (restating the option) is not a computation
    r = row("Compounding twice gives 61.2. The answer is (B) $83.33.")
    assert numeric_check(r).computed == () and chosen_computed([r]) == 0.0
    # where the grader read the answer, whatever the statement's form
    assert chosen_computed([row("It gives 61.2, so the correct option is B: $83.33.")]) == 0.0
    assert chosen_computed([row("It gives 83.33, so the correct option is B.")]) == 1.0


def test_other_questions_have_no_check():
    words = row("A dog barks. The answer is (B).", choices=("cat", "dog", "fish"))
    assert check_words(words) == ["k_nonnumeric", "k_shortest"] and chosen_computed([words]) is None
    assert check_words(row("12", prediction="12", choices=None)) == []  # an open question
    assert check_words(row("", prediction=None, error="timeout")) == []  # a failed sample
    unread = row("83.33 or 52.50?", prediction=None)
    assert check_words(unread) == ["k_numeric", "k_other_computed"] and chosen_computed([unread]) is None


def test_the_chosen_options_place_by_length():
    choices = ("a dog", "a very big dog", "cat", "a fish")
    assert [length_rank(row("...", prediction=p, choices=choices)) for p in "ABCD"] == [
        "inner_length", "longest", "shortest", "inner_length"]
    assert length_rank(row("...", prediction="A", choices=("yes", "no"))) is None  # two options: no inside
    assert length_rank(row("...", prediction=None, choices=choices)) is None
    assert check_words(row("The answer is (B).", choices=choices))[-1] == "k_longest"


def test_a_prediction_that_is_not_one_option_letter_names_no_option():
    # a replayed file's prediction is any text; "ß" upper-cases to "SS" (it once raised)
    for p in ("ß", "SS", "Z", "1", "é", "ſ"):
        r = row("83.33. The answer is (B).", prediction=p)
        assert chosen_index(r) is None and length_rank(r) is None and numeric_check(r).chosen is None
        assert chosen_computed([r]) is None and chosen_option(r) is None
        assert ANSWER_SIGNALS["chosen_position"]([r]) is None
    assert chosen_index(row("...", prediction="b")) == 1

