"""What a report shows beside the metrics: question types in their natural order, and a few wrong
answers per type for a person to read.

Both are computed from the result rows and stored in report.json, so that every renderer (and
`tourney compare`) shows the same thing, and both are deterministic: the same rows in any line order
give the same lists (results.jsonl is written in completion order, not question order).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

from tourney.harness.synthetic import TYPE_STEPS
from tourney.harness.tournament import ARITHMETIC_TYPES, KNOWLEDGE_TYPES
from tourney.harness.types import SampleResult

# Type orders of the generators this project knows: the arithmetic set's (easy to hard), the mixed
# miniature tournament's (knowledge by tier, then arithmetic) and the one derived from GSM8K's
# calculator steps (harness.questions.gsm8k_type).
KNOWN_ORDERS: tuple[tuple[str, ...], ...] = (
    tuple(TYPE_STEPS),
    KNOWLEDGE_TYPES + ARITHMETIC_TYPES,
    ("short", "medium", "long", "very_long"),
)
FAILURES_PER_TYPE = 3
# A failure example keeps this much of the model's text (and of the question): enough to see what
# went wrong, small enough that report.json stays a summary.
TEXT_CHARS = 1200

_DIGITS = re.compile(r"(\d+)")
# C0 controls but tab and newline, DEL, C1 controls: what a terminal would act on (ANSI colours,
# OSC titles and links, cursor moves). Text from files reaches the terminal with them made visible.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Text safe to print to a terminal: every control character shown as its escape ("\\x1b")."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders "q2" before "q10" (ids are question file positions more often than not)."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in _DIGITS.split(text) if part)


def natural_order(types_seen: Iterable[str]) -> list[str]:
    """Types in their natural order, given in order of first appearance: when every type belongs
    to one known generator, that generator's order (one_step before long_chain, short before
    very_long); otherwise the order of first appearance."""
    seen = list(dict.fromkeys(types_seen))
    for order in KNOWN_ORDERS:
        if set(seen) <= set(order):
            return [t for t in order if t in seen]
    return seen


def type_order(rows: Sequence[SampleResult]) -> list[str]:
    """The run's question types in their natural order (natural_order), first appearance taken with
    questions in natural id order (`test-00002` before `test-00010`), which is the question file's
    order for the ids the loader gives and for most hand-written ones."""
    return natural_order(r.type for r in sorted(rows, key=lambda r: (natural_key(r.id), r.id, r.sample)))


@dataclass(frozen=True)
class FailureExample:
    """One wrong answer as the report shows it; texts are model output and data: hostile, escape them."""

    id: str
    type: str
    question: str
    gold: str
    prediction: str | None
    output: str
    error: str | None
    truncated: bool  # output longer than TEXT_CHARS and cut

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cut(text: str) -> tuple[str, bool]:
    return (text, False) if len(text) <= TEXT_CHARS else (text[:TEXT_CHARS], True)


def failure_examples(rows: Sequence[SampleResult], per_type: int = FAILURES_PER_TYPE) -> list[FailureExample]:
    """Up to `per_type` wrong samples per type (errored ones included), the first by natural id, in
    type order; a question sampled K times shows once (its first wrong sample)."""
    by_type: dict[str, list[FailureExample]] = {}
    seen: set[str] = set()
    for r in sorted(rows, key=lambda r: (natural_key(r.id), r.id, r.sample)):
        if (r.error is None and r.correct) or r.id in seen:
            continue
        picked = by_type.setdefault(r.type, [])
        if len(picked) >= per_type:
            continue
        seen.add(r.id)
        output, truncated = _cut(r.output)
        picked.append(FailureExample(id=r.id, type=r.type, question=_cut(r.question)[0], gold=r.gold,
                                     prediction=r.prediction, output=output, error=r.error,
                                     truncated=truncated))
    return [f for t in type_order(rows) for f in by_type.get(t, [])]


def ordered_types(report: dict[str, Any]) -> list[str]:
    """The report's types in natural order: its `type_order` (older report.json files have none:
    then sorted), with any type it misses appended."""
    order = [t for t in report.get("type_order") or [] if t in report["by_type"]]
    return order + sorted(t for t in report["by_type"] if t not in order)


def type_share(report: dict[str, Any], qtype: str) -> float | None:
    """The share of the run's questions that are of this type."""
    total = report["overall"]["n_questions"]
    group = report["by_type"].get(qtype)
    return group["n_questions"] / total if group and total else None
