"""harness.scoring: answer extraction on the formats models write, comparison, and GSM8K golds."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tourney.harness.scoring import (Score, extract_answer, extract_choice, normalize_number,
                             numbers_equal, score)
from tourney.harness.types import Question

GSM8K_DIR = Path(__file__).resolve().parents[2] / "../shared/data/gsm8k"


@pytest.mark.parametrize("output, expected", [
    ("She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18", "18"),
    ("#### 1,080", "1080"),
    ("The total is \\boxed{18}.", "18"),
    ("The answer is 18.", "18"),
    ("So the final answer is $18", "18"),
    ("Answer: 18", "18"),
    ("A: 18", "18"),
    ("Q: how many?\nA: 18 apples, from 3 trees", "18"),
    ("plan a: 5 trees, total 7", "7"),  # a lower-case "a:" is not an answer label
    ("**Answer:** 18", "18"),
    ("The answer is **18**.", "18"),
    ("The answer is $18.00", "18"),
    ("It costs 18 dollars.", "18"),
    ("The answer is $1,000.00", "1000"),
    ("The answer is -3.", "-3"),
    ("The temperature drops to -$3 overall", "-3"),
    ("so 5-3=2", "2"),
    ("The answer is 0.5", "0.5"),
    ("The answer is .5", "0.5"),
    ("The answer is 3/4.", "0.75"),
    ("The answer is 50%.", "50"),
    ("\\boxed{\\frac{3}{4}}", "0.75"),
    ("The answer is $\\frac{1}{3}$", "1/3"),
    ("\\boxed{1{,}000}", "1000"),
    ("\\boxed{x = 5}", "5"),
    ("\\boxed{18 \\text{ dollars}}", "18"),
    ("The answer is $5 \\times 3 = 15$.", "15"),
    ("A man buys 3 apples and 4 pears, 7 fruits in all", "7"),
    # thinking blocks that mention a wrong number do not count
    ("<think>Maybe the answer is 17. #### 17</think>\nThe answer is 18.", "18"),
    ("<think>17 + 1 = 17?</think>18", "18"),
    ("<think>still thinking about 17 when the tokens ran out", None),
    ("checking 17... no.\n</think>\nThe answer is 18", "18"),
    # priority: #### beats a later "answer is"; a base model's invented next question is ignored
    ("The answer is 5\n#### 6", "6"),
    ("x = 2\n#### 2\n\nQuestion: Another one?\nAnswer: 3 + 4 = 7\n#### 7", "2"),
    ("I first thought the answer is 4, but the answer is 5.", "5"),
    ("#### Step 1: add\n3 + 4 = 7\n#### Step 2: answer\nThe answer is 7", "7"),  # markdown headings
    ("####  $1,234", "1234"),
    ("I have no idea.", None),
    ("", None),
])
def test_extract_answer(output: str, expected: str | None) -> None:
    assert extract_answer(output) == expected


@pytest.mark.parametrize("text, expected", [
    ("18", "18"), ("18.00", "18"), ("$1,000", "1000"), ("-3", "-3"), (".5", "0.5"), ("6/8", "0.75"),
    ("2/6", "1/3"), ("50%", "50"), ("18.", "18"), ("-0", "0"), ("eighteen", None), ("18 dollars", None),
    ("1,00", None), ("", None),
])
def test_normalize_number(text: str, expected: str | None) -> None:
    assert normalize_number(text) == expected


@pytest.mark.parametrize("pred, gold, equal", [
    ("18", "18", True), ("18.0", "18", True), ("1000", "1,000", True), ("3/4", "0.75", True),
    ("0.3333333", "1/3", True), ("0.33", "1/3", False), ("1000001", "1000000", False),
    ("-3", "3", False), ("\\sqrt{2}", "\\sqrt{2}", True), ("\\frac{\\sqrt{8}}{2}", "\\sqrt{2}", True),
    ("\\sqrt{3}", "\\sqrt{2}", False), (None, "18", False),
])
def test_numbers_equal(pred: str | None, gold: str, equal: bool) -> None:
    assert numbers_equal(pred, gold) is equal


def test_math_verify_outside_the_main_thread() -> None:
    # math-verify's timeout uses SIGALRM, which a worker thread may not set; we must still answer.
    out: list[bool] = []
    t = threading.Thread(target=lambda: out.append(numbers_equal("\\frac{\\sqrt{8}}{2}", "\\sqrt{2}")))
    t.start()
    t.join()
    assert out == [True]


@pytest.mark.parametrize("output, expected", [
    ("The answer is (B)", "B"),
    ("Answer: B", "B"),
    ("Answer: **C**", "C"),
    ("**B**", "B"),
    ("B. Because the sky is blue.", "B"),
    ("I pick (b)", "B"),
    ("The answer is $\\boxed{D}$", "D"),
    ("The correct option is D", "D"),
    ("The answer is A.", "A"),
    ("A man buys 3 apples. The answer is C", "C"),
    ("A man buys 3 apples and sells them.", None),  # the article is not a choice
    ("I think B is right", "B"),
    ("The answer is E", None),  # out of range for 4 choices
    ("<think>The answer is A</think>The answer is B", "B"),
    ("Nothing here", None),
])
def test_extract_choice(output: str, expected: str | None) -> None:
    assert extract_choice(output, 4) == expected


def test_score_dispatch() -> None:
    num = Question(id="n", question="q", answer="18")
    assert score(num, "The answer is $18.00") == Score("18", True)
    assert score(num, "The answer is 17") == Score("17", False)
    assert score(num, "no number at all") == Score(None, False)
    mc = Question(id="m", question="q", answer="B", choices=("x", "y", "z"))
    assert score(mc, "The answer is (B)") == Score("B", True)
    assert score(mc, "The answer is C") == Score("C", False)
    assert score(mc, "The answer is D") == Score(None, False)


@pytest.mark.skipif(not GSM8K_DIR.is_dir(), reason="GSM8K not found at ../shared/data/gsm8k")
@pytest.mark.parametrize("split", ["train", "test"])
def test_every_gsm8k_gold_solution_scores_correct(split: str) -> None:
    from tourney.harness.questions import load_questions

    questions = load_questions(str(GSM8K_DIR / f"{split}.jsonl"))
    assert len(questions) > 1000
    wrong = [(q.id, q.answer, score(q, q.solution or "").prediction)
             for q in questions if not score(q, q.solution or "").correct]
    assert wrong == []
