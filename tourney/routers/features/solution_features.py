"""What the student's written solution says about itself: which of the question's numbers it used,
what form its answer takes, how many steps it wrote. Known at routing time (the student has
answered), read from text only, and meaningful for any question set with numbers in it:

- `question_number_coverage`: the share of the question's distinct numbers that the first
  sample's solution mentions. A solution that ignores a given quantity has usually dropped a
  step. `mean_question_number_coverage` is the same over every sample that did not fail.
- `answer_in_question`: 1 when the first sample's final answer is one of the question's own
  numbers (a copied quantity rather than a computed one), else 0.
- `answer_is_integer`, `answer_magnitude` (log10(1 + |answer|)), `answer_negative`: the form of
  the first sample's numeric answer. Counts come out whole and positive; a fraction, a huge or a
  negative result often marks a slip.
- `solution_steps`: non-empty lines in the first sample's output; `solution_new_numbers`: the
  distinct numbers it writes that the question does not hold (the intermediate results).

Each is None where it has nothing to read: a failed sample, a question without numbers, an
answer that is not a number (multiple choice, LaTeX the grader keeps as written). None is never
replaced by a made-up value here (routers.fitting.linear imputes the training mean, which moves nothing).
Numbers are read with the grader's own parser (harness.scoring.normalize_number), so "1,000",
"$1000" and "1000.00" are one number.
"""
from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Sequence

from tourney.harness.scoring import normalize_number
from tourney.harness.types import SampleResult

# Digit runs with thousands separators or decimals; signs and units are the grader's business.
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
MAX_SCAN = 20_000  # characters of one text scanned for numbers: a runaway output stays cheap


def numbers_in(text: str) -> set[str]:
    """The distinct numbers of a text, each in the grader's normalised spelling."""
    out = set()
    for m in _NUMBER.findall(text[:MAX_SCAN]):
        v = normalize_number(m)
        if v is not None:
            out.add(v)
    return out


def first_sample(rows: Sequence[SampleResult]) -> SampleResult:
    """A question's first sample (the lowest `sample`)."""
    if not rows:
        raise ValueError("a signal needs at least one sample of the question, got none")
    return min(rows, key=lambda r: r.sample)


def _coverage(question: str, output: str) -> float | None:
    asked = numbers_in(question)
    if not asked:
        return None
    return len(asked & numbers_in(output)) / len(asked)


def _answer_value(rows: Sequence[SampleResult]) -> Fraction | None:
    first = first_sample(rows)
    if first.error is not None or first.prediction is None:
        return None
    try:
        return Fraction(first.prediction)  # the normalised spelling: "12", "-0.5", "1/3"
    except (ValueError, ZeroDivisionError):
        return None  # not a plain number (a letter, LaTeX kept as written)


def question_number_coverage(rows: Sequence[SampleResult], choice_logliks=None) -> float | None:
    first = first_sample(rows)
    return None if first.error is not None else _coverage(first.question, first.output)


def mean_question_number_coverage(rows: Sequence[SampleResult], choice_logliks=None) -> float | None:
    if len(rows) < 2:
        return None
    values = [c for r in rows if r.error is None for c in [_coverage(r.question, r.output)] if c is not None]
    return math.fsum(values) / len(values) if values else None


def answer_in_question(rows: Sequence[SampleResult], choice_logliks=None) -> float | None:
    first = first_sample(rows)
    if _answer_value(rows) is None or not numbers_in(first.question):
        return None
    return float(first.prediction in numbers_in(first.question))


def answer_is_integer(rows: Sequence[SampleResult], choice_logliks=None) -> float | None:
    v = _answer_value(rows)
    return None if v is None else float(v.denominator == 1)


def answer_magnitude(rows: Sequence[SampleResult], choice_logliks=None) -> float | None:
    v = _answer_value(rows)
    if v is None:
        return None
    # log10 of a Fraction via its parts: exact enough, and never an overflow on a 100-digit answer
    a = abs(v)
    if a == 0:
        return 0.0
    log = math.log10(a.numerator) - math.log10(a.denominator)
    return math.log10(1.0 + 10.0 ** log) if log < 300 else log


def answer_negative(rows: Sequence[SampleResult], choice_logliks=None) -> float | None:
    v = _answer_value(rows)
    return None if v is None else float(v < 0)


def solution_steps(rows: Sequence[SampleResult], choice_logliks=None) -> float | None:
    first = first_sample(rows)
    if first.error is not None:
        return None
    return float(sum(1 for line in first.output[:MAX_SCAN].splitlines() if line.strip()))


def solution_new_numbers(rows: Sequence[SampleResult], choice_logliks=None) -> float | None:
    first = first_sample(rows)
    if first.error is not None:
        return None
    return float(len(numbers_in(first.output) - numbers_in(first.question)))


SOLUTION_SIGNALS = {
    "question_number_coverage": question_number_coverage,
    "mean_question_number_coverage": mean_question_number_coverage,
    "answer_in_question": answer_in_question,
    "answer_is_integer": answer_is_integer,
    "answer_magnitude": answer_magnitude,
    "answer_negative": answer_negative,
    "solution_steps": solution_steps,
    "solution_new_numbers": solution_new_numbers,
}
# +1: larger means the student is more likely right (as signals.ORIENTATION). These are read
# mostly inside fitted models, which learn their own signs; alone they are guesses and are scored
# by cross-validation like any other signal.
SOLUTION_ORIENTATION = {
    "question_number_coverage": 1, "mean_question_number_coverage": 1, "answer_in_question": -1,
    "answer_is_integer": 1, "answer_magnitude": -1, "answer_negative": -1,
    "solution_steps": -1, "solution_new_numbers": -1,
}
