"""Adversarial model outputs: an answer the grader cannot read exactly is unparsed, never a
prefix of itself, and no output can make scoring run without bound."""
from __future__ import annotations

import threading

import pytest

from tourney.harness import mathverify
from tourney.harness.scoring import extract_answer, score
from tourney.harness.types import Question


def q(gold: str) -> Question:
    return Question(id="x", question="?", answer=gold)


# (output, gold): every one of these was once marked correct by reading a prefix.
PREFIX_TRAPS = [
    ("#### 9**9**9**9", "9999"),
    ("\\boxed{9^{9^{9^{9}}}}", "9"),
    ("#### 1e999999", "1"),
    ("#### 1e3", "1"),
    ("#### 1/0", "1"),
    ("#### 0x10", "0"),
    ("#### 0b101", "0"),
    ("#### 2^10", "2"),
    ("#### 5 * 3", "5"),
    ("\\boxed{2^{10}}", "2"),
    ("The answer is 7 + 1", "7"),
    ("#### 10/0 apples", "10"),
]


@pytest.mark.parametrize("output,gold", PREFIX_TRAPS)
def test_an_answer_read_inexactly_is_never_correct(output, gold):
    assert not score(q(gold), output).correct


@pytest.mark.parametrize("output,expected", [
    ("#### 9**9**9**9", None), ("#### 1e999999", None), ("#### 1/0", None), ("#### 0x10", None),
    ("#### 1e3", "1000"), ("#### 1.5e3", "1500"), ("#### 2.5E-1", "0.25"),
    ("**18**", "18"), ("The answer is **42**.", "42"), ("#### 5 x 3 = 15", "15"),
    ("#### 18 dollars", "18"), ("#### $1,000.00", "1000"), ("#### 3/4", "0.75"),
    ("#### Step 1\nso 4 + 4 = 8\n#### 8", "8"),  # a markdown heading is not an answer
    ("\\boxed{\\frac{3}{4}}", "0.75"),
])
def test_exact_readings(output, expected):
    assert extract_answer(output) == expected


def test_hostile_latex_is_screened_before_sympy():
    for bomb in ("9^{9^{9^{9}}}", "10^{10^{10^{10}}}\\cdot 1", "x^{1000000}", "100000!", "\\prod_{i=1}^{n} i"):
        assert not mathverify.admissible(bomb)
    assert mathverify.admissible("\\sqrt{2}") and mathverify.admissible("\\frac{\\sqrt{8}}{2}")


def _in_thread(fn):
    out: dict = {}
    t = threading.Thread(target=lambda: out.setdefault("value", fn()), daemon=True)
    t.start()
    t.join(120)  # a hang check, not a speed claim: without the bound this never returns
    assert not t.is_alive(), "scoring hung in a worker thread"
    return out["value"]


def test_math_verify_in_a_worker_thread_is_killed_at_its_limit():
    # Sent past the screen on purpose: only the helper process's time limit stands between this
    # comparison and an unbounded sympy evaluation.
    assert _in_thread(lambda: mathverify._in_helper_process("\\sqrt{2}", "\\sqrt{2}", 2)) is True
    before = mathverify.STATS.timeouts
    assert _in_thread(lambda: mathverify._in_helper_process("9^{9^{9^{9}}}", "9", 1)) is None
    assert mathverify.STATS.timeouts == before + 1
    # The killed helper is replaced: the next comparison works.
    assert _in_thread(lambda: mathverify._in_helper_process("\\frac{\\sqrt{8}}{2}", "\\sqrt{2}", 5)) is True


def test_scoring_a_bomb_in_a_worker_thread_returns():
    assert _in_thread(lambda: score(q("1"), "\\boxed{10^{10^{10^{10}}}\\cdot 1}")).correct is False
