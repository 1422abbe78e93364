"""Read SFT data: question + solution text, with the teacher's difficulty signals when known.

Three line shapes are accepted, so a student can be trained on teacher CoT or on gold data alike:
- sft.jsonl from `tourney distill select`: id, question, type, solution, answer, pass_rate,
  mean_logprob, tokens (the last three may be null);
- gold-style rows: `question` and `solution` (the miniature splits, hand-written sets);
- GSM8K rows: `question` and `answer` holding a worked solution ending in `#### N`; the whole
  answer becomes the solution and N the answer.

Every row comes back as a dict with all of these keys (None where a value is unknown) plus
`source` ("file:line"). A bad line raises DataError naming file:line and the field; blank lines
are skipped, and no other line is dropped.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tourney.harness.jsonl import iter_objects
from tourney.harness.questions import parse_choices
from tourney.harness.types import DataError

SFT_KEYS = ("id", "question", "type", "solution", "answer", "pass_rate", "mean_logprob", "tokens", "choices")


def _err(where: str, field: str | None, problem: str, expected: str) -> DataError:
    at = f"{where}: field '{field}'" if field else where
    return DataError(f"{at}: {problem}; expected {expected}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _row(raw: Any, where: str, default_id: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _err(where, None, f"got {type(raw).__name__}", "a JSON object with 'question' and 'solution'")
    question = raw.get("question")
    if not isinstance(question, str) or not question.strip():
        raise _err(where, "question", "missing or empty" if not question else f"got {question!r:.60}",
                   "a non-empty string")
    answer = raw.get("answer")
    if answer is not None and (isinstance(answer, bool) or not isinstance(answer, (str, int, float))):
        raise _err(where, "answer", f"got {answer!r:.60}", "a string, a number or null")
    solution = raw.get("solution")
    if solution in (None, "") and isinstance(answer, str) and "####" in answer:
        # GSM8K: the worked answer is the solution; the final answer follows "####".
        solution, answer = answer, answer[answer.rindex("####") + 4:].strip()
    if not isinstance(solution, str) or not solution.strip():
        raise _err(where, "solution", "missing or empty" if not solution else f"got {solution!r:.60}",
                   "a non-empty string (or a GSM8K 'answer' ending in '#### N')")
    qid = raw.get("id")
    if qid in (None, ""):
        qid = default_id
    elif isinstance(qid, bool) or not isinstance(qid, (str, int)):
        raise _err(where, "id", f"got {qid!r:.60}", "a string or an integer")
    qtype = raw.get("type")
    if qtype in (None, ""):
        qtype = "default"
    elif not isinstance(qtype, str):
        raise _err(where, "type", f"got {qtype!r:.60}", "a string")
    pass_rate, logprob, tokens = raw.get("pass_rate"), raw.get("mean_logprob"), raw.get("tokens")
    if pass_rate is not None and not (_number(pass_rate) and 0 <= pass_rate <= 1):
        raise _err(where, "pass_rate", f"got {pass_rate!r:.60}", "a number in [0, 1] or null")
    if logprob is not None and not (_number(logprob) and logprob <= 0):
        raise _err(where, "mean_logprob", f"got {logprob!r:.60}", "a number <= 0 (a log-probability) or null")
    if tokens is not None and not (isinstance(tokens, int) and not isinstance(tokens, bool) and tokens >= 0):
        raise _err(where, "tokens", f"got {tokens!r:.60}", "an integer >= 0 or null")
    choices = raw.get("choices")
    if choices is not None:
        choices = list(parse_choices(choices, where) or ()) or None
    return {"id": str(qid), "question": question, "type": qtype, "solution": solution, "choices": choices,
            "answer": None if answer is None else str(answer),
            "pass_rate": None if pass_rate is None else float(pass_rate),
            "mean_logprob": None if logprob is None else float(logprob),
            "tokens": tokens, "source": where}


def read_sft_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All rows of an SFT JSONL file, normalised (see the module doc)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; expected a JSONL file of question/solution rows")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}); expected a UTF-8 JSONL file") from None
    rows = [_row(raw, where, f"{path.stem}-{n:05d}") for n, where, raw in iter_objects(path, "\n".join(lines))]
    if not rows:
        raise DataError(f"{path}: no rows; expected at least one question/solution line")
    return rows
