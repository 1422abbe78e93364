"""harness.scoring's numbers: an integer gold needs the exact integer, a decimal gold a tolerance
scaled to itself, closed forms go to math-verify under its bound; a base model's invented next
question is not read (harness.continuation)."""
from __future__ import annotations

import pytest

from tourney.harness import mathverify
from tourney.harness.scoring import extract_answer, hashes_answer_span, numbers_equal, score
from tourney.harness.types import Question


def q(gold: str) -> Question:
    return Question(id="x", question="?", answer=gold)


@pytest.mark.parametrize("output, gold, correct", [
    ("#### 1000000.5", "1000000", False),  # an integer gold needs the exact integer
    ("#### 1000000.0000001", "1000000", False),
    ("#### 1,000,000.00", "1000000", True),  # the same integer, written as a decimal
    ("#### 1000000", "1000000", True),
    ("#### 2.5000001", "2.5", True),  # within 1e-6 of a decimal gold's own size
    ("#### 2.51", "2.5", False),
    ("#### 0.3333333", "1/3", True),
    ("#### 0.33", "1/3", False),
    ("#### 0.0000015", "0.000001", False),  # relative to the gold: 1e-6 of 1e-6, not 1e-6 absolute
    ("\\boxed{2^{\\sqrt{4}}}", "4", True),  # a closed form math-verify decides
    ("\\boxed{\\frac{\\sqrt{8}}{2}}", "\\sqrt{2}", True),
    ("\\boxed{2^{\\sqrt{5}}}", "4", False),
    ("\\boxed{e^{0}}", "1", True),
])
def test_numbers(output, gold, correct):
    assert score(q(gold), output).correct is correct


def test_integer_gold_is_exact_even_for_math_verify():
    # math-verify rounds decimals to 6 places; the gold goes to it as an integer, so it compares exactly.
    assert not numbers_equal("1+10^{-9}", "1") and not numbers_equal("\\sqrt{4.0000000001}", "2")


def test_the_exponent_screen_admits_small_exponents_only():
    assert mathverify.admissible("2^{\\sqrt{4}}") and mathverify.admissible("x^{n+1}")
    for bomb in ("99^{99\\cdot 99}", "2^(99*99)", "x^{-1000}", "9**9**9**9", "2^{3^{4}}"):
        assert not mathverify.admissible(bomb), bomb


def test_a_base_models_invented_next_question_is_not_read():
    out = "3 + 4 = 7. The answer is 7.\n\nQuestion: Tom has 5 apples...\nAnswer: 5 - 2 = 3. The answer is 3."
    assert extract_answer(out) == "7"
    # "####" is read where it is scored, and a "####" in the invented question is not the answer's span.
    out = "The answer is 5.\n\nQ: another?\nA: 2 + 2 = 4\n#### 4"
    assert extract_answer(out) == "5" and hashes_answer_span(out) is None
    # A question restated before the answer is kept.
    assert extract_answer("Question: how many?\nAnswer: 3 + 4 = 7\n#### 7") == "7"
