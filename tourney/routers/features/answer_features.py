"""Signals of any question form, read from the student's own text: how it states its answer,
whether it hedges or changes its mind, whether it ran out of tokens, and for multiple choice the
option it chose (where it sits, how long it is, how much of it the reasoning discusses, how many
options the reasoning weighs). The arithmetic features (routers.features.solution_features) say nothing
on a multiple-choice tournament; these do.

- `answer_statements`: explicit answer statements in the first sample ("the answer is ...",
  "Answer: ...", "\\boxed{...}"): 0 means the grader fell back on a stray letter or number.
- `answer_changes`: distinct answers among those statements, minus one (a restated answer is 0,
  a changed one 1 or more).
- `hedge_rate`: hedging words ("maybe", "however", "unclear", "assume", ...) per 100 words.
- `truncated`: 1 when the first sample stopped at its token budget (finish_reason "length").
- `options_mentioned`: multiple choice, the share of the options the reasoning refers to by
  letter ("(C)", "option C").
- `chosen_position`: multiple choice, the chosen option's place, 0 (first) to 1 (last).
- `chosen_length`: multiple choice, the chosen option's length over the options' mean length.
- `chosen_overlap`: multiple choice, the share of the chosen option's words (3+ letters) that the
  output writes.

The multiple-choice ones read the options the row recorded (SampleResult.choices) and are None
without them, as every signal here is None for a failed sample. Orientation (+1: larger = more
likely right) is a guess for a signal alone; fitted routers learn their own signs.
"""
from __future__ import annotations

import re
from typing import Sequence

from tourney.harness.types import SampleResult
from tourney.routers.features.option_checks import chosen_index

MAX_SCAN = 20_000  # characters of one output read: a runaway output stays cheap
_STATEMENT = re.compile(r"answer\s+is\s*:?\s*\(?\s*([^\s.,;)]+)|answer\s*:\s*\(?\s*([^\s.,;)]+)|\\boxed\s*\{([^{}]*)\}",
                        re.IGNORECASE)
_LETTER_REF = re.compile(r"\(([A-Z])\)|\b(?:option|choice)\s+\(?([A-Z])\b", re.IGNORECASE)
HEDGES = frozenset(
    "maybe perhaps possibly probably likely unlikely however although unclear uncertain unsure assume assuming "
    "approximately roughly guess seems seem might could alternatively wait hmm but not sure".split()
)
_WORD = re.compile(r"[A-Za-z]{3,}")


def _first(rows: Sequence[SampleResult]) -> SampleResult | None:
    if not rows:
        raise ValueError("a signal needs at least one sample of the question, got none")
    first = min(rows, key=lambda r: r.sample)
    return None if first.error is not None else first


def _statements(text: str) -> list[str]:
    return [next(g for g in m.groups() if g is not None).strip().strip("()").upper()
            for m in _STATEMENT.finditer(text[:MAX_SCAN])]


def answer_statements(rows: Sequence[SampleResult], choice_logliks=None) -> float | None:
    first = _first(rows)
    return None if first is None else float(len(_statements(first.output)))


def answer_changes(rows: Sequence[SampleResult], choice_logliks=None) -> float | None:
    first = _first(rows)
    if first is None:
        return None
    said = {s for s in _statements(first.output) if s}
    return float(max(0, len(said) - 1))


def hedge_rate(rows: Sequence[SampleResult], choice_logliks=None) -> float | None:
    first = _first(rows)
    if first is None:
        return None
    words = first.output[:MAX_SCAN].lower().split()
    if not words:
        return 0.0
    return 100.0 * sum(1 for w in words if w.strip(".,;:!?()\"'") in HEDGES) / len(words)


def truncated(rows: Sequence[SampleResult], choice_logliks=None) -> float | None:
    first = _first(rows)
    return None if first is None else float(first.finish_reason == "length")


def _chosen(rows: Sequence[SampleResult]) -> tuple[SampleResult, list[str], int] | None:
    """(first row, its options, the chosen option's index), for a read multiple-choice answer."""
    first = _first(rows)
    k = None if first is None else chosen_index(first)
    return None if k is None else (first, list(first.choices), k)


def options_mentioned(rows: Sequence[SampleResult], choice_logliks=None) -> float | None:
    first = _first(rows)
    if first is None or not first.choices:
        return None
    n = len(first.choices)
    named = {(a or b).upper() for a, b in _LETTER_REF.findall(first.output[:MAX_SCAN])}
    return len({x for x in named if ord(x) - ord("A") < n}) / n


def chosen_position(rows: Sequence[SampleResult], choice_logliks=None) -> float | None:
    got = _chosen(rows)
    if got is None:
        return None
    _, choices, k = got
    return k / (len(choices) - 1) if len(choices) > 1 else 0.0


def chosen_length(rows: Sequence[SampleResult], choice_logliks=None) -> float | None:
    got = _chosen(rows)
    if got is None:
        return None
    _, choices, k = got
    mean = sum(len(c) for c in choices) / len(choices)
    return len(choices[k]) / mean if mean > 0 else 1.0


def chosen_overlap(rows: Sequence[SampleResult], choice_logliks=None) -> float | None:
    got = _chosen(rows)
    if got is None:
        return None
    first, choices, k = got
    words = {w.lower() for w in _WORD.findall(choices[k])}
    if not words:
        return None
    said = {w.lower() for w in _WORD.findall(first.output[:MAX_SCAN])}
    return len(words & said) / len(words)


ANSWER_SIGNALS = {
    "answer_statements": answer_statements,
    "answer_changes": answer_changes,
    "hedge_rate": hedge_rate,
    "truncated": truncated,
    "options_mentioned": options_mentioned,
    "chosen_position": chosen_position,
    "chosen_length": chosen_length,
    "chosen_overlap": chosen_overlap,
}
ANSWER_ORIENTATION = {
    "answer_statements": 1, "answer_changes": -1, "hedge_rate": -1, "truncated": -1,
    "options_mentioned": -1, "chosen_position": -1, "chosen_length": 1, "chosen_overlap": 1,
}
