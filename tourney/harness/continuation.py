"""Where a model's own answer ends and an exemplar it invented begins: the grader's continuation cut.

A base model prompted few-shot ("Question: ...\\nAnswer: ... The answer is (B).\\n\\nQuestion: ...")
does not stop after its answer: it writes the next question of the pattern, its options, and
often that question's answer. A chat model may go on to "summarise" other questions' answers. A
live run with the template's stop sequence ends there; a recorded output, or a server run with a
user's own prompt, is not cut, and a grader that reads the whole text reads a letter of a
question nobody asked.

The rule, one for every format the grader reads: once the output has stated an answer, a line that
opens a new exemplar (a `Question:`, `Q:`, `Problem:`, `Exercise:` header, or a new chat turn
`Human:`/`User:`, optionally numbered, bulleted or in markdown emphasis) ends the output; nothing
from that line on is read. A header before any answer is kept (a model may restate the question
before answering it), so the cut never removes the only answer there is.
"""
from __future__ import annotations

import re

EXEMPLAR_HEADER = re.compile(
    r"^[ \t>#*_-]*(?:Question|QUESTION|Q|Problem|PROBLEM|Exercise|Human|User)(?:[ \t]*\d+)?[ \t]*\**[ \t]*[:.)]",
    re.MULTILINE,
)


def continuation_start(text: str, answered_at: int | None) -> int | None:
    """Where the invented continuation starts: the first exemplar header on a line that begins
    at or after `answered_at` (the end of the output's first answer statement); None when the
    output has no answer statement or no header after it."""
    if answered_at is None:
        return None
    # `^` matches only after a newline (or at 0), never merely where the search starts.
    m = EXEMPLAR_HEADER.search(text, answered_at)
    return m.start() if m else None
