"""JSON in and out: JSONL files whose every line must be an object (errors name file:line), and
the one cleaner that makes any result strict, stable JSON.

Lines end at "\n" only. str.splitlines() also ends a line at U+2028, U+2029, U+0085 and a few
control characters, which JSON strings may hold raw (ensure_ascii=False writes them so): one such
character in a model's output would make its row unreadable for good.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

from tourney.harness.types import DataError


def iter_objects(path: str | Path, text: str | None = None) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """Yield (line number, "file:line", object) for each non-blank line. A line that is not valid JSON, or not a
    JSON object, raises DataError naming its file and line."""
    path = Path(path)
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not valid UTF-8 (byte offset {e.start}); expected a JSONL text file") from None
    for lineno, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        row = loads(line, where, "one JSON object per line")  # bounded depth and digits
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
        yield lineno, where, row


def dumps_line(obj: dict[str, Any]) -> str:
    """One JSONL line. Readable text (ensure_ascii=False), except when `obj` holds a lone UTF-16
    surrogate that no UTF-8 file can store: that line is escaped (ensure_ascii=True) instead."""
    line = json.dumps(obj, ensure_ascii=False) + "\n"
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(obj, ensure_ascii=True) + "\n"
    return line


def append_lines(path: Path, lines: Iterable[str]) -> None:
    """Append lines in one write and fsync, so a kill leaves whole lines and at most one torn tail."""
    payload = "".join(lines)
    if not payload:
        return
    with path.open("a", encoding="utf-8") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())


def append_objects(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """append_lines for JSON objects."""
    append_lines(path, (dumps_line(r) for r in rows))


def cut_torn_tail(path: Path) -> None:
    """A kill during a write can leave a last line without its newline: drop that partial line."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def json_safe(x: Any, digits: int | None = 6, infinity: str = "null") -> Any:
    """A copy of `x` that `json.dumps(..., allow_nan=False)` accepts, with stable floats.

    Floats are rounded to `digits` (None: kept as they are) so files diff cleanly; NaN becomes
    null. Infinities become null (`infinity="null"`: a figure that does not exist) or the strings
    "inf"/"-inf" (`infinity="string"`: a value that means something, like a router threshold
    that escalates everything). Tuples become lists and dict keys strings, recursively.
    """
    if isinstance(x, bool) or x is None or isinstance(x, (int, str)):
        return x
    if isinstance(x, float):
        if math.isnan(x):
            return None
        if math.isinf(x):
            return None if infinity == "null" else ("inf" if x > 0 else "-inf")
        return round(x, digits) if digits is not None else x
    if isinstance(x, dict):
        return {str(k): json_safe(v, digits, infinity) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v, digits, infinity) for v in x]
    if hasattr(x, "item") and callable(x.item):  # a numpy scalar
        return json_safe(x.item(), digits, infinity)
    return x


MAX_DEPTH = 64  # JSON nesting no data file of ours needs more of; deeper is an attack or a bug
MAX_INT_DIGITS = 4000  # below Python's 4,300-digit int conversion limit, far above any answer


class _LongInt:
    """Stands in for an integer longer than MAX_INT_DIGITS while the decoder runs, so that the
    error can name the field that holds it (the decoder's own hook knows only the digits)."""

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _field_of(value: Any, path: tuple[str, ...] = ()) -> tuple[tuple[str, ...], _LongInt] | None:
    """The path to the first _LongInt in a decoded value (iterative: nesting is bounded anyway)."""
    stack = [(path, value)]
    while stack:
        at, v = stack.pop()
        if isinstance(v, _LongInt):
            return at, v
        if isinstance(v, dict):
            stack.extend((at + (str(k),), x) for k, x in reversed(list(v.items())))
        elif isinstance(v, list):
            stack.extend((at + (str(i),), x) for i, x in reversed(list(enumerate(v))))
    return None


def _depth_over(text: str, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than `limit` (a linear scan, no recursion)."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def loads(text: str, where: str, expected: str = "valid JSON") -> Any:
    """`json.loads` for untrusted text: nesting deeper than MAX_DEPTH, integers longer than
    MAX_INT_DIGITS and malformed JSON each raise one DataError naming `where` (a file, or
    file:line), never a RecursionError or a ValueError from deep inside the decoder."""
    if ("[" in text or "{" in text) and _depth_over(text, MAX_DEPTH):
        raise DataError(f"{where}: JSON nested deeper than {MAX_DEPTH} levels; expected {expected}")
    long_ints: list[_LongInt] = []

    def bounded_int(digits: str) -> int | _LongInt:
        if len(digits.lstrip("-")) > MAX_INT_DIGITS:
            long_ints.append(_LongInt(len(digits)))
            return long_ints[-1]
        return int(digits)

    try:
        value = json.loads(text, parse_int=bounded_int)
    except json.JSONDecodeError as e:
        loc = f"{where}:{e.lineno}" if "\n" in text else where
        raise DataError(f"{loc}: not valid JSON ({e.msg} at column {e.colno}); expected {expected}") from None
    except (ValueError, RecursionError) as e:
        raise DataError(f"{where}: not acceptable JSON ({e}); expected {expected}") from None
    if long_ints:
        path, found = _field_of(value) or ((), long_ints[0])
        field = f"field '{'.'.join(path)}': " if path else ""
        raise DataError(f"{where}: {field}an integer of {found.digits} digits (at most {MAX_INT_DIGITS}); "
                        f"expected {expected}")
    return value


def split_lines(text: str) -> list[str]:
    """JSONL lines, split on "\\n" only: str.splitlines() also splits on U+2028, U+2029, U+0085
    and other characters that may sit raw inside a JSON string."""
    lines = text.split("\n")
    return [line[:-1] if line.endswith("\r") else line for line in lines]
