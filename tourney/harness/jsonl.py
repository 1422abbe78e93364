"""JSON in and out: JSONL files whose every line must be an object (errors name file:line), and
the one cleaner that makes any result strict, stable JSON."""
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
        text = path.read_text(encoding="utf-8")
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON ({e.msg} at column {e.colno}); "
                            "expected one JSON object per line") from None
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
        yield lineno, where, row


def append_objects(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append rows in one write and fsync, so a kill leaves whole lines and at most one torn tail."""
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    with path.open("a", encoding="utf-8") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())


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
