"""The text a router's hashed n-grams read when it reads the student's answer too: the question's
type, the question, and the student's output, in one string for scikit-learn's HashingVectorizer
(routers.fitting.linear.HashedText).

Each part keeps its own n-grams: the type is one word `qtype_<type>` (a per-type offset that the
L2 penalty shrinks towards the mean, most for the types with few dev questions), the question's
words are as they are, and every word of the answer is prefixed `a_`, so "however" in the answer
and "however" in the question land in different buckets. Of a long output only its head and tail
are read (where the approach and the conclusion are), so a runaway output stays cheap.
"""
from __future__ import annotations

import re
from typing import Sequence

from tourney.harness.types import SampleResult

HEAD_CHARS, TAIL_CHARS = 400, 1200
_WORD = re.compile(r"\w\w+")


def routing_document(question: str, question_type: str, output: str) -> str:
    kind = "_".join(_WORD.findall(question_type.lower())) or "default"
    text = output if len(output) <= HEAD_CHARS + TAIL_CHARS else output[:HEAD_CHARS] + " " + output[-TAIL_CHARS:]
    answer = " ".join("a_" + w for w in _WORD.findall(text.lower()))
    return f"qtype_{kind} {question} {answer}"


def rows_document(rows: Sequence[SampleResult], question: str | None = None, question_type: str | None = None) -> str:
    """The document of one question from its student samples (the first sample's output; a
    failed sample reads as no answer)."""
    first = min(rows, key=lambda r: r.sample) if rows else None
    output = "" if first is None or first.error is not None else first.output
    text = question if question is not None else (first.question if first is not None else "")
    kind = question_type if question_type is not None else (first.type if first is not None else "default")
    return routing_document(text, kind, output)
