"""The text a router's hashed n-grams read when it reads the student's answer too: the question's
type, the question, and the student's output, in one string for scikit-learn's HashingVectorizer
(routers.fitting.linear.HashedText).

Each part keeps its own n-grams: the type is one word `qtype_<type>` (a per-type offset that the
L2 penalty shrinks towards the mean, most for the types with few dev questions), the question's
words are as they are, and every word of the answer is prefixed `a_`, so "however" in the answer
and "however" in the question land in different buckets. Of a long output only its head and tail
are read (where the approach and the conclusion are), so a runaway output stays cheap.

For multiple choice the words of the option the student chose follow, each prefixed `c_`
(`with_choice`): the question's text holds no options, and which option text a student settles
on says something its reasoning does not (MMLU-Pro's added distractors read alike). Measured on
the two recorded MMLU-Pro pairs, 5 random 50/50 splits each used both ways (benchmarks/RESULTS.md,
issue 23, "After issue 22's grader"), the gain router over these documents beat the one without
them in each of the 20 evaluations: +0.002 (Qwen1.5) and +0.004 (Mistral) held-out APGR on average. A router file
records whether its documents hold the chosen option (HashedText.reads_choice): files written
before read their documents as they were fitted.

Last come the check tokens (`with_checks`, routers.features.option_checks: `k_chosen_computed`,
`k_chosen_not_computed`, `k_longest`, ...): whether the student's reasoning wrote the number of
the option it chose, and where that option lies among the others. A hashed word cannot see that
"0.016" in the reasoning is option C's "0.016", nor that C is the longest option; these tokens
say it. Recorded in a router file as HashedText.reads_checks; files written before read their
documents without them.
"""
from __future__ import annotations

import re
from typing import Sequence

from tourney.harness.types import SampleResult
from tourney.routers.features.option_checks import check_words, chosen_index

HEAD_CHARS, TAIL_CHARS = 400, 1200
_WORD = re.compile(r"\w\w+")


def routing_document(question: str, question_type: str, output: str, chosen: str | None = None,
                     checks: Sequence[str] = ()) -> str:
    """One question's document; `chosen`: the text of the option the student chose (None: no
    option read, or a document without it); `checks`: the check tokens (option_checks.check_words)."""
    kind = "_".join(_WORD.findall(question_type.lower())) or "default"
    text = output if len(output) <= HEAD_CHARS + TAIL_CHARS else output[:HEAD_CHARS] + " " + output[-TAIL_CHARS:]
    answer = " ".join("a_" + w for w in _WORD.findall(text.lower()))
    doc = f"qtype_{kind} {question} {answer}"
    if chosen:
        doc += " " + " ".join("c_" + w for w in _WORD.findall(chosen[:HEAD_CHARS].lower()))
    if checks:
        doc += " " + " ".join(checks)
    return doc


def chosen_option(row: SampleResult) -> str | None:
    """The text of the option a multiple-choice row's prediction names; None for an open
    question, a failed sample, or an answer that names no single option among the choices."""
    k = chosen_index(row)
    return None if k is None else row.choices[k]


def rows_document(rows: Sequence[SampleResult], question: str | None = None, question_type: str | None = None,
                  *, with_choice: bool = True, with_checks: bool = True) -> str:
    """The document of one question from its student samples (the first sample's output; a
    failed sample reads as no answer); with the chosen option's words and the check tokens unless
    `with_choice` / `with_checks` is False (the documents of router files written before they
    were read)."""
    first = min(rows, key=lambda r: r.sample) if rows else None
    output = "" if first is None or first.error is not None else first.output
    text = question if question is not None else (first.question if first is not None else "")
    kind = question_type if question_type is not None else (first.type if first is not None else "default")
    chosen = chosen_option(first) if with_choice and first is not None else None
    checks = check_words(first) if with_checks and first is not None else []
    return routing_document(text, kind, output, chosen, checks)
