"""Load questions from a file (.jsonl, .json, .csv, .parquet) or a Hugging Face dataset (`hf:`).

Every record needs `question` and `answer`; `id`, `type`, `choices` and `solution` are optional.

- GSM8K lines work as they are: an `answer` whose last line is `#### N` is a worked solution; the
  gold answer is N normalised ("1,080" -> "1080", see `harness.scoring.normalize_number`) and the
  whole text becomes `solution`. Otherwise `answer` must be a plain number.
- Multiple choice: `choices` is a list of strings (in CSV, a JSON list or `a|b|c`). The gold may
  be a letter ("B"), a 0-based integer index (JSON numbers only), or the exact text of a choice; it
  is stored as the letter. A CSV cell such as "2" is first matched against the choice texts and
  only then read as an index, since CSV has no numbers.
- Without an `id`, a question is named `<file stem>-<NNNNN>` from its 1-based line (JSONL), item
  (JSON), data row (CSV, Parquet) or split row (hf), e.g. `test-00001`, so ids are stable.
- Without a `type`, a GSM8K-style question (answer ending in `####`) gets one from the number of
  calculation steps in its solution (`gsm8k_type`), others get "default":

      steps   1-2     3-4      5-6    7+
      type    short   medium   long   very_long

  Steps are the `<<expr=value>>` calculator annotations; a solution without any counts its
  non-empty lines before `####` that contain "=". A solution with no step at all is "short".

Bad input raises `DataError` with one line naming `file:line`, the field, and what was expected.
Blank lines are skipped; no other line is ever dropped.
"""
from __future__ import annotations

from dataclasses import replace

import csv
import hashlib
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from tourney.errors import ConfigError
from tourney.harness.jsonl import loads, split_lines
from tourney.harness.prompts import LETTERS
from tourney.harness.scoring import normalize_number
from tourney.harness.types import DataError, Question

SUPPORTED = (".jsonl", ".json", ".csv", ".parquet")
HF_SPLITS = ("train", "test", "validation", "dev", "val")  # tells "hf:NAME:SPLIT" from a CONFIG

_ANNOTATION = re.compile(r"<<[^<>]*>>")
_TYPE_BINS = ((2, "short"), (4, "medium"), (6, "long"))  # upper bound of steps -> type

Record = tuple[str, int, Any]  # ("file:line" for messages, 1-based index for ids, raw record)


def gsm8k_type(solution: str) -> str:
    """short / medium / long / very_long from the number of calculation steps (see module doc)."""
    steps = len(_ANNOTATION.findall(solution))
    if steps == 0:
        body = solution.split("####")[0]
        steps = sum(1 for line in body.splitlines() if line.strip() and "=" in line)
    for upper, name in _TYPE_BINS:
        if steps <= upper:
            return name
    return "very_long"


def data_sha256(spec: str, questions: Sequence[Question]) -> str:
    """The identity of a data set, recorded in run.json so that resuming against changed data is
    refused: a file's bytes for a file; for `hf:` (no file to hash, and a dataset can change
    under its name) the SHA-256 of the questions as loaded, every field in a canonical form."""
    if not spec.startswith("hf:") and Path(spec).is_file():
        return file_sha256(spec)
    h = hashlib.sha256()
    for q in questions:
        fields = [q.id, q.question, q.answer, q.type, list(q.choices or ()), q.solution]
        h.update(json.dumps(fields, ensure_ascii=True, separators=(",", ":")).encode() + b"\n")
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks; the report records it next to the results."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror}); expected a readable data file") from None
    return h.hexdigest()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _err(loc: str, field: str | None, problem: str, expected: str) -> DataError:
    where = f"{loc}: field '{field}'" if field else loc
    return DataError(" ".join(f"{where}: {problem}; expected {expected}".split()))


# -- readers: each yields (location, index, raw record) and skips only blank lines --------------


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # -sig: tolerate a BOM from spreadsheet tools
    except UnicodeDecodeError as e:
        raise _err(f"{path}", None, f"not UTF-8 text (byte {e.start})", "a UTF-8 text file") from None


def _jsonl(path: Path) -> Iterator[Record]:
    for n, line in enumerate(split_lines(_read_text(path)), start=1):
        if not line.strip():
            continue
        yield f"{path}:{n}", n, loads(line, f"{path}:{n}", "one JSON object per line")


def _json(path: Path) -> Iterator[Record]:
    data = loads(_read_text(path), f"{path}", "a JSON list of question objects")
    if not isinstance(data, list):
        raise _err(f"{path}", None, f"top level is {type(data).__name__}", "a JSON list of question objects")
    for n, item in enumerate(data, start=1):
        yield f"{path}:item {n}", n, item


def _csv(path: Path) -> Iterator[Record]:
    reader = csv.reader(_read_text(path).splitlines(keepends=True))
    header: list[str] | None = None
    row_index, start = 0, 1
    for cells in reader:
        line, start = start, reader.line_num + 1  # a quoted cell may span lines: report the first
        if not any(c.strip() for c in cells):
            continue
        if header is None:
            header = [c.strip() for c in cells]
            for needed in ("question", "answer"):
                if needed not in header:
                    raise _err(f"{path}:{line}", needed, "column missing from the CSV header",
                               "a header row naming at least 'question' and 'answer'")
            continue
        if len(cells) > len(header):
            raise _err(f"{path}:{line}", None, f"{len(cells)} cells but the header has {len(header)}",
                       "one cell per header column (quote cells that contain commas)")
        row_index += 1
        # Empty cells mean "not given", as a missing key would in JSON.
        row: dict[str, Any] = {k: v for k, v in zip(header, cells) if v.strip()}
        if "choices" in row:
            row["choices"] = _csv_choices(row["choices"], f"{path}:{line}")
        yield f"{path}:{line}", row_index, row


def _csv_choices(cell: str, loc: str) -> Any:
    """A CSV choices cell, written as a JSON list or as `a|b|c`."""
    if not cell.lstrip().startswith("["):
        return [c.strip() for c in cell.split("|")]
    return loads(cell, f"{loc}: field 'choices'", "a JSON list of strings or a|b|c")


def _parquet(path: Path) -> Iterator[Record]:
    try:
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    except ImportError:
        raise _err(f"{path}", None, "pyarrow is not installed", "`pip install pyarrow` to read Parquet") from None
    except Exception as e:  # noqa: BLE001 -- any pyarrow failure means the file is not usable
        raise _err(f"{path}", None, f"cannot read Parquet ({e})", "a Parquet file") from None
    for n, row in enumerate(rows, start=1):
        yield f"{path}:row {n}", n, {k: v for k, v in row.items() if v is not None}


def _parse_hf(spec: str) -> tuple[str, str | None, str, str | None]:
    """`hf:NAME[:CONFIG][:SPLIT][@REVISION]` -> (name, config, split, revision); a lone second
    part that is a usual split name ("hf:gsm8k:test") is the split, otherwise it is the config;
    the split defaults to test. REVISION (a commit, tag or branch) pins the dataset's version."""
    body, at, revision = spec[3:].partition("@")
    if at and not revision:
        raise DataError(f"{spec}: nothing after '@'; expected a dataset revision (commit, tag or branch)")
    parts = body.split(":")
    if not parts[0] or len(parts) > 3 or any(not p for p in parts):
        raise DataError(f"{spec}: bad dataset spec; expected hf:NAME[:CONFIG][:SPLIT][@REVISION], "
                        "e.g. hf:openai/gsm8k:main:test")
    rev = revision or None
    if len(parts) == 1:
        return parts[0], None, "test", rev
    if len(parts) == 2:
        return (parts[0], None, parts[1], rev) if parts[1] in HF_SPLITS else (parts[0], parts[1], "test", rev)
    return parts[0], parts[1], parts[2], rev


def _hf(spec: str) -> Iterator[Record]:
    name, config, split, revision = _parse_hf(spec)
    try:
        import datasets  # optional extra: imported only for hf: specs
    except ImportError:
        raise DataError(f"{spec}: the 'datasets' package is not installed; expected "
                        "`pip install tourney[datasets]`, or a local .jsonl file") from None
    try:
        rows = datasets.load_dataset(name, config, split=split, revision=revision)
    except Exception as e:  # noqa: BLE001 -- network, auth, unknown name: all reported the same way
        detail = " ".join(str(e).split())[:200]
        raise DataError(f"{spec}: could not load dataset {name!r} (config {config!r}, split {split!r}): "
                        f"{type(e).__name__}: {detail}; expected a reachable Hugging Face dataset "
                        "(no network? download it and pass the local file)") from None
    for n, row in enumerate(rows, start=1):
        yield f"{spec}:row {n}", n, row


# -- one record to one Question -------------------------------------------------------------------


def _opt_str(rec: dict[str, Any], field: str, loc: str) -> str | None:
    value = rec.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _err(loc, field, f"got {type(value).__name__} {_short(value)}", "a string")
    return value


def parse_choices(value: Any, loc: str) -> tuple[str, ...] | None:
    """A question's options as every reader takes them (question files, cot.jsonl, sft.jsonl)."""
    if value is None or value == []:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(c, str) for c in value):
        raise _err(loc, "choices", f"got {_short(value)}", "a list of strings")
    if not 2 <= len(value) <= len(LETTERS) or not all(c.strip() for c in value):
        raise _err(loc, "choices", f"{len(value)} choices {_short(value)}",
                   f"2 to {len(LETTERS)} non-empty strings")
    return tuple(value)


def _choice_gold(value: Any, choices: tuple[str, ...], loc: str) -> str:
    valid = LETTERS[: len(choices)]
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < len(choices):
            return LETTERS[value]
        raise _err(loc, "answer", f"index {value} out of range",
                   f"a 0-based index below {len(choices)}, a letter {valid[0]}-{valid[-1]}, or a choice's text")
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 1 and text.upper() in LETTERS:
            if text.upper() in valid:
                return text.upper()
            raise _err(loc, "answer", f"letter {text!r} is out of range for {len(choices)} choices",
                       f"a letter {valid[0]}-{valid[-1]}")
        if text in choices:
            return LETTERS[choices.index(text)]
        if text.isdigit() and int(text) < len(choices):
            return LETTERS[int(text)]
    raise _err(loc, "answer", f"got {_short(value)}",
               f"a letter {valid[0]}-{valid[-1]}, a 0-based index, or the exact text of a choice")


MAX_QUESTION_CHARS = 200_000  # about 50,000 tokens: beyond any context; a 50 MB "question" is an accident
MAX_FIELD_CHARS = 200  # id and type are names, printed in tables and terminals
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # includes ESC: a type must not drive the terminal


def _check_text(value: str, loc: str, field: str, limit: int, name_like: bool = False) -> None:
    if len(value) > limit:
        raise _err(loc, field, f"{len(value):,} characters", f"at most {limit:,}")
    bad = _SURROGATE.search(value)
    if bad:
        raise _err(loc, field, f"a lone surrogate {bad.group()!r} at character {bad.start()}",
                   "valid Unicode text")
    if name_like and _CONTROL.search(value):
        raise _err(loc, field, f"a control character in {_short(value)}", "printable text")


def _to_question(raw: Any, loc: str, default_id: str) -> Question:
    if not isinstance(raw, dict):
        raise _err(loc, None, f"got {type(raw).__name__} {_short(raw)}", "an object with 'question' and 'answer'")
    question = raw.get("question")
    if question is None:
        raise _err(loc, "question", "missing", "a non-empty string")
    if not isinstance(question, str):
        raise _err(loc, "question", f"got {type(question).__name__} {_short(question)}", "a string")
    if not question.strip():
        raise _err(loc, "question", "empty", "a non-empty string")
    _check_text(question, loc, "question", MAX_QUESTION_CHARS)

    answer = raw.get("answer")
    if answer is None or (isinstance(answer, str) and not answer.strip()):
        raise _err(loc, "answer", "missing", "a number, a choice, or a worked solution ending in '#### N'")
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise _err(loc, "answer", f"got {type(answer).__name__} {_short(answer)}", "a string or a number")

    qid = raw.get("id")
    if qid is None or qid == "":
        qid = default_id
    elif isinstance(qid, bool) or not isinstance(qid, (str, int)):
        raise _err(loc, "id", f"got {type(qid).__name__} {_short(qid)}", "a string or an integer")
    qid = str(qid)

    _check_text(qid, loc, "id", MAX_FIELD_CHARS, name_like=True)
    solution = _opt_str(raw, "solution", loc)
    qtype = _opt_str(raw, "type", loc)
    if qtype is not None:
        _check_text(qtype, loc, "type", MAX_FIELD_CHARS, name_like=True)
    if solution is not None:
        _check_text(solution, loc, "solution", MAX_QUESTION_CHARS)
    choices = parse_choices(raw.get("choices"), loc)
    for i, choice in enumerate(choices or ()):
        _check_text(choice, loc, f"choices[{i}]", MAX_QUESTION_CHARS)

    gold_raw: Any = answer
    worked = isinstance(answer, str) and "####" in answer
    if worked:
        # GSM8K: the worked solution ends with "#### N"; keep it whole as the solution.
        tail = answer[answer.rindex("####") + 4:].strip().splitlines()
        gold_raw = tail[0].strip() if tail else ""
        solution = solution or answer
        qtype = qtype or gsm8k_type(answer)
        if not gold_raw:
            raise _err(loc, "answer", "nothing after '####'", "'#### N' with the final answer N")

    if choices:
        gold = _choice_gold(gold_raw, choices, loc)
    else:
        if isinstance(gold_raw, float):  # repr gives "1e+20"; spell it out as digits (NaN stays bad)
            gold_raw = format(Decimal(repr(gold_raw)), "f")
        gold_norm = normalize_number(str(gold_raw))
        if gold_norm is None:
            what = "value after '####'" if worked else "answer"
            raise _err(loc, "answer", f"{what} {_short(gold_raw)} is not a plain number",
                       "a number such as 18, -3, 0.5 or 3/4, or a worked solution ending in '#### N'")
        gold = gold_norm
    return Question(id=qid, question=question, answer=gold, type=qtype or "default",
                    choices=choices, solution=solution, source=loc)


def _records(path: str) -> tuple[str, Iterator[Record]]:
    """The id stem and a record iterator for a path or hf: spec."""
    if path.startswith("hf:"):
        return _parse_hf(path)[2], _hf(path)
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: file not found; expected an existing {'/'.join(SUPPORTED)} file or hf:NAME")
    suffix = p.suffix.lower()
    readers = {".jsonl": _jsonl, ".json": _json, ".csv": _csv, ".parquet": _parquet}
    if suffix not in readers:
        raise DataError(f"{path}: unsupported extension {suffix or '(none)'!r}; expected one of {', '.join(SUPPORTED)}")
    if p.stat().st_size == 0:
        raise DataError(f"{path}: file is empty; expected at least one question")
    return p.stem, readers[suffix](p)


def load_questions(path: str, limit: int | None = None, allow_unlabeled: bool = False,
                   adapt: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> list[Question]:
    """All questions in `path` (or the first `limit`), in file order. See the module doc.
    `adapt` rewrites each record (an object) before it is read: another dataset's field names.

    With `allow_unlabeled`, a record with no `answer` (or an empty one) is kept with `answer=""`:
    a teacher can reason about unlabeled questions, and a tournament's questions have no gold.
    (A CSV still needs an `answer` column, which may be empty.)"""
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be >= 0 or None, got {limit}")
    path = str(path)
    stem, records = _records(path)
    out: list[Question] = []
    first_seen: dict[str, str] = {}
    seen_any = False
    for loc, index, raw in records:
        seen_any = True
        if limit is not None and len(out) >= limit:
            break
        unlabeled = allow_unlabeled and isinstance(raw, dict) and raw.get("answer") in (None, "")
        if unlabeled:  # a placeholder satisfies the parser's checks, then is removed
            raw = {**raw, "answer": "A" if raw.get("choices") else "0"}
        if adapt is not None and isinstance(raw, dict):
            raw = adapt(raw)
        q = _to_question(raw, loc, f"{stem}-{index:05d}")
        if unlabeled:
            q = replace(q, answer="")
        if q.id in first_seen:
            raise _err(loc, "id", f"duplicate id {q.id!r}, first used at {first_seen[q.id]}", "unique ids")
        first_seen[q.id] = loc
        out.append(q)
    if not seen_any:
        raise DataError(f"{path}: no questions (only blank lines or an empty list); expected at least one question")
    return out
