"""What a multiple-choice answer is among its options, and whether it follows from the student's
own working: for numeric options, did the reasoning compute the number of the option it chose?

A small model that works a calculation out and finds no option with its result still names one
("the closest option is (C)", or a letter with no comment). On such answers it is close to a
guess: on the recorded MMLU-Pro outputs, of the questions with numeric options, Mistral-7B was
right on 0.128 of those where its reasoning (the text before its answer, where the grader read
it: `reasoning`) never wrote the chosen option's number, and on 0.326 where it did; Mixtral, the
teacher, on 0.294 and 0.376. The gain a teacher call buys is three times larger on the first
kind, and neither words nor length see it: "0.016" in the reasoning and "0.016" in option C are
different hashed words. Nor can words see where the chosen option lies among the others (the
largest number, the longest text), which says how the student picked it.

- `check_words`: tokens the words router's documents end with (routers.features.documents,
  `DocumentForm.checks`):
  - `k_numeric` or `k_nonnumeric`;
  - for numeric options: `k_chosen_computed` or `k_chosen_not_computed`, `k_other_computed`
    (another option's number was written), `k_none_computed`, `k_last_match` / `k_last_miss` (the
    chosen number is among the last three numbers of the reasoning: the result, not a given),
    `k_chosen_smallest` / `k_chosen_largest` / `k_chosen_inner` (where the chosen number lies
    among the options': on MMLU-Pro, whose added distractors spread around the answer, Qwen1.5-7B
    was right on 0.099 of its picks of the largest, 0.294 of inner ones) and `k_chosen_in_question`
    (the chosen number is one of the question's own: copied, not computed);
  - for any options (3 or more): `k_longest`, `k_shortest` or `k_inner_length`, the chosen
    option's place by length (the longest option is a guesser's pick, and a teacher's gain there
    was half that on inner ones for Qwen1.5: 0.11 against 0.22).

They are tokens of the words router only, not signals of their own: offered as a signal
(`chosen_computed`, blank on word options), auto-selection on 200 MMLU-Pro dev questions chose it
tie-broken, which escalates every blank (0.67 of the held-out questions for a 0.5 target).

Measured on the two recorded MMLU-Pro pairs, random 50/50 splits used both ways
(benchmarks/RESULTS.md, issue 23, "Session 8: did the student compute what it chose?", with each
token's questions and both models' accuracy there), the words router with these tokens against
without, held-out APGR: +0.038 and +0.035 on Mistral-7B -> Mixtral (two seeds), +0.008 and +0.008
on Qwen1.5-7B -> 72B, +0.016 and +0.005 on the two crossed pairs the same outputs make.

Numbers are parsed, never evaluated: "1,250", "-3.5", "2e-3", "4.2 x 10^-3", "4.2 \\times 10^{-3}"
and "4.2 × 10^-3" are read as the values they write; an option's number is its first. Two numbers
match within 0.5% of the larger (a reasoning rounds). A scientific number of the reasoning also
offers its mantissa: MMLU-Pro writes some options as "4.950$10^{14}$" (the times sign lost), whose
first number is 4.950 (on the recorded outputs this added 12-20 matches and +0.002 held-out APGR
on Mistral-7B -> Mixtral).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from tourney.harness.grading_choice import as_read, read_choice
from tourney.harness.types import SampleResult

MAX_SCAN = 20_000  # characters of one output read (as routers.features.answer_features)
NUMERIC_SHARE = 0.8  # the options are numeric when this share of them holds a number
TOLERANCE = 0.005  # relative: 83.33 matches 83.3, not 84
LAST_NUMBERS = 3  # the reasoning's result is among its last numbers
_NUMBER = re.compile(
    r"(?<![\w.])(-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d*\.?\d+(?:[eE][-+]?\d+)?)"
    r"(?:\s*(?:x|×|\*|\\times|\\cdot|·)\s*10\s*\^\s*\{?\s*([-+−]?\d{1,3})\s*\}?)?"
)


def numbers(text: str, *, mantissas: bool = False) -> list[float]:
    """The finite numbers a text writes, in order (a scientific form as one number; with
    `mantissas`, followed by its mantissa as written)."""
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
            if mantissas and exponent:
                out.append(float(mantissa))
    return out


def _match(a: float, b: float) -> bool:
    return abs(a - b) <= TOLERANCE * max(abs(a), abs(b)) + 1e-12


def reasoning(output: str, n_choices: int) -> str:
    """The text before the answer as the grader reads it (harness.grading_choice: its first
    statement, or the option line or stray letter it fell back on): the working, not the answer
    restating its option ("The answer is (B) $83.33")."""
    text = as_read(output)
    at = read_choice(output, n_choices).at
    return text if at is None else text[:at]


def chosen_index(row: SampleResult) -> int | None:
    """The index of the option a multiple-choice row's prediction names (one ASCII letter within
    the choices); None for an open question, a failed sample or any other prediction (a replayed
    file's prediction is any text: "ß" upper-cases to two letters)."""
    p = row.prediction
    if row.error is not None or not row.choices or not p or len(p) != 1 or not (p.isascii() and p.isalpha()):
        return None
    k = ord(p.upper()) - ord("A")
    return k if k < len(row.choices) else None


@dataclass(frozen=True)
class NumericCheck:
    """What a multiple-choice answer's reasoning computed, against its options."""

    numeric: bool  # the options are numbers (NUMERIC_SHARE)
    chosen: int | None = None  # the chosen option's index; None when no single option was read
    computed: tuple[int, ...] = ()  # the options whose number the reasoning writes
    last: bool = False  # the chosen option's number is among the reasoning's last LAST_NUMBERS
    rank: str | None = None  # the chosen number among the options' (3+): "smallest", "largest" or "inner"
    in_question: bool = False  # the chosen number is one of the question's own (copied, not computed)


def numeric_check(row: SampleResult) -> NumericCheck | None:
    """The check of one answer; None for an open question or a failed sample."""
    if row.error is not None or not row.choices:
        return None
    option_numbers = [numbers(c) for c in row.choices]
    if sum(1 for o in option_numbers if o) < NUMERIC_SHARE * len(option_numbers):
        return NumericCheck(numeric=False)
    said = numbers(reasoning(row.output[:MAX_SCAN], len(row.choices)), mantissas=True)
    computed = tuple(i for i, o in enumerate(option_numbers) if o and any(_match(o[0], v) for v in said))
    k = chosen_index(row)
    if k is None:
        return NumericCheck(numeric=True, computed=computed)
    mine = option_numbers[k]
    if not mine:
        return NumericCheck(numeric=True, chosen=k, computed=computed)
    last = any(_match(mine[0], v) for v in said[-LAST_NUMBERS:])
    values = sorted(o[0] for o in option_numbers if o)
    rank = None
    if len(values) >= 3:
        rank = "smallest" if mine[0] == values[0] else "largest" if mine[0] == values[-1] else "inner"
    in_question = any(_match(mine[0], v) for v in numbers(row.question))
    return NumericCheck(numeric=True, chosen=k, computed=computed, last=last, rank=rank, in_question=in_question)


def length_rank(row: SampleResult) -> str | None:
    """The chosen option's place by length among 3 or more options: "longest", "shortest" or
    "inner_length"; None without a chosen option."""
    k = chosen_index(row)
    if k is None or len(row.choices) < 3:
        return None
    lengths = [len(c.strip()) for c in row.choices]
    mine = lengths[k]
    return "longest" if mine == max(lengths) else "shortest" if mine == min(lengths) else "inner_length"


def check_words(row: SampleResult) -> list[str]:
    """The checks as document tokens (module doc); none for an open question or a failed sample."""
    c = numeric_check(row)
    if c is None:
        return []
    rank = length_rank(row)
    by_length = [f"k_{rank}"] if rank is not None else []
    if not c.numeric:
        return ["k_nonnumeric", *by_length]
    words = ["k_numeric"]
    if c.chosen is not None:
        words.append("k_chosen_computed" if c.chosen in c.computed else "k_chosen_not_computed")
        words.append("k_last_match" if c.last else "k_last_miss")
        if c.rank is not None:
            words.append(f"k_chosen_{c.rank}")
        if c.in_question:
            words.append("k_chosen_in_question")
    if any(i != c.chosen for i in c.computed):
        words.append("k_other_computed")
    if not c.computed:
        words.append("k_none_computed")
    return words + by_length

