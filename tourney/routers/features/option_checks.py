"""Whether a multiple-choice answer follows from the student's own working: for numeric options,
did the reasoning compute the number of the option it then chose?

A small model that works a calculation out and finds no option with its result still names one
("the closest option is (C)", or a letter with no comment). On such answers it is close to a
guess: on the recorded MMLU-Pro outputs, of the questions with numeric options, Mistral-7B was
right on 0.088 of those where its reasoning (the text before its first answer statement) never
wrote the chosen option's number, and on 0.319 where it did; Mixtral, the teacher, on 0.256 and
0.371. The gap a teacher call buys is three times larger on the first kind, and neither words nor
length see it: "0.016" in the reasoning and "0.016" in option C are different hashed words.

Two readers of the same check:
- `check_words`: tokens the words router's documents end with (routers.features.documents,
  `with_checks`): `k_numeric` or `k_nonnumeric`, then for numeric options `k_chosen_computed` or
  `k_chosen_not_computed`, `k_other_computed` (another option's number was written),
  `k_none_computed`, and `k_last_match` / `k_last_miss` (the chosen number is among the last
  three numbers of the reasoning: the result, not a given).
- `chosen_computed`: the same as a signal (1 computed, 0 not; None where the options are not
  numeric or no option was read), for routers over signals.

Measured on the two recorded MMLU-Pro pairs, random 50/50 splits used both ways
(benchmarks/RESULTS.md, issue 23, "Did the student compute what it chose?"): the words router with
these tokens against without, held-out APGR +0.032 (Mistral-7B -> Mixtral) and +0.002
(Qwen1.5-7B -> 72B).

Numbers are parsed, never evaluated: "1,250", "-3.5", "2e-3", "4.2 x 10^-3", "4.2 \\times 10^{-3}"
and "4.2 × 10^-3" are read as the values they write; an option's number is its first. Two numbers
match within 0.5% of the larger (a reasoning rounds).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from tourney.harness.types import SampleResult

MAX_SCAN = 20_000  # characters of one output read (as routers.features.answer_features)
NUMERIC_SHARE = 0.8  # the options are numeric when this share of them holds a number
TOLERANCE = 0.005  # relative: 83.33 matches 83.3, not 84
LAST_NUMBERS = 3  # the reasoning's result is among its last numbers
_NUMBER = re.compile(
    r"(?<![\w.])(-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d*\.?\d+(?:[eE][-+]?\d+)?)"
    r"(?:\s*(?:x|×|\*|\\times|\\cdot|·)\s*10\s*\^\s*\{?\s*([-+−]?\d{1,3})\s*\}?)?"
)
_FIRST_STATEMENT = re.compile(r"answer\s+is|answer\s*:|\\boxed\s*\{", re.IGNORECASE)


def numbers(text: str) -> list[float]:
    """The finite numbers a text writes, in order (a scientific form as one number)."""
    out = []
    for m in _NUMBER.finditer(text[:MAX_SCAN]):
        try:
            mantissa, exponent = m.group(1).replace(",", ""), m.group(2)
            if exponent and "e" not in mantissa.lower():
                v = float(f"{mantissa}e{exponent.replace('−', '-')}")  # parsed whole: 4.2e-3, not 4.2 * 0.001
            else:
                v = float(mantissa) * (10.0 ** int(exponent.replace("−", "-")) if exponent else 1.0)
        except (ValueError, OverflowError):
            continue
        if math.isfinite(v):
            out.append(v)
    return out


def _match(a: float, b: float) -> bool:
    return abs(a - b) <= TOLERANCE * max(abs(a), abs(b)) + 1e-12


@dataclass(frozen=True)
class NumericCheck:
    """What a multiple-choice answer's reasoning computed, against its options."""

    numeric: bool  # the options are numbers (NUMERIC_SHARE)
    chosen: int | None = None  # the chosen option's index; None when no single option was read
    computed: tuple[int, ...] = ()  # the options whose number the reasoning writes
    last: bool = False  # the chosen option's number is among the reasoning's last LAST_NUMBERS


def numeric_check(row: SampleResult) -> NumericCheck | None:
    """The check of one answer; None for an open question or a failed sample."""
    if row.error is not None or not row.choices:
        return None
    option_numbers = [numbers(c) for c in row.choices]
    if sum(1 for o in option_numbers if o) < NUMERIC_SHARE * len(option_numbers):
        return NumericCheck(numeric=False)
    statement = _FIRST_STATEMENT.search(row.output[:MAX_SCAN])
    said = numbers(row.output[:statement.start()] if statement else row.output)
    computed = tuple(i for i, o in enumerate(option_numbers) if o and any(_match(o[0], v) for v in said))
    k = ord(row.prediction.upper()) - ord("A") if row.prediction and len(row.prediction) == 1 else -1
    if not 0 <= k < len(option_numbers):
        return NumericCheck(numeric=True, computed=computed)
    mine = option_numbers[k]
    last = bool(mine) and any(_match(mine[0], v) for v in said[-LAST_NUMBERS:])
    return NumericCheck(numeric=True, chosen=k, computed=computed, last=last)


def check_words(row: SampleResult) -> list[str]:
    """The check as document tokens (module doc); none for an open question or a failed sample."""
    c = numeric_check(row)
    if c is None:
        return []
    if not c.numeric:
        return ["k_nonnumeric"]
    words = ["k_numeric"]
    if c.chosen is not None:
        words.append("k_chosen_computed" if c.chosen in c.computed else "k_chosen_not_computed")
        words.append("k_last_match" if c.last else "k_last_miss")
    if any(i != c.chosen for i in c.computed):
        words.append("k_other_computed")
    if not c.computed:
        words.append("k_none_computed")
    return words


def chosen_computed(rows, choice_logliks=None) -> float | None:
    """1 when the reasoning wrote the chosen option's number, 0 when not; None unless the options
    are numeric and one was chosen."""
    if not rows:
        raise ValueError("a signal needs at least one sample of the question, got none")
    c = numeric_check(min(rows, key=lambda r: r.sample))
    if c is None or not c.numeric or c.chosen is None:
        return None
    return 1.0 if c.chosen in c.computed else 0.0
