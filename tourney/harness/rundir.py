"""A run directory as a data type: its rows, its metadata, and its identity, in one place.

    RUN/run.json        RunMeta: model, data and its SHA-256, generation settings, versions, and
                        `identity`, everything that must be equal for a resumed run to continue it
    RUN/results.jsonl   one SampleResult per line (question, sample); appended as answers arrive,
                        rewritten in question order when the run ends
    RUN/report.*        rendered from the two above by harness.report

Everything that reads a run (reports, regressions, routing, teacher CoT, per-epoch evaluation)
reads it through `RunDir`; everything that resumes work in a folder (eval, CoT generation,
submissions, distillation training) compares identities with `check_same_run`, the one
"is this the same run" rule: the recorded identity and the new one must agree on every key.

Text. results.jsonl is written with ensure_ascii=False (readable) and read by "\\n" only
(harness.jsonl): U+2028 and friends inside a model's output are not line ends.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tourney.harness.jsonl import append_lines, cut_torn_tail, dumps_line, iter_objects, loads
from tourney.harness.types import DataError, SampleResult
from tourney.schema import describe

RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"
REPORT_FILES = ("report.json", "report.md", "report.html")


# -- small JSON files ---------------------------------------------------------------------------

def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON file holding one object; every failure is a DataError naming the file. `what`
    says what the file should be ("an evaluation run's metadata")."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: not found; expected {what}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e}); expected {what}") from None
    obj = loads(text, str(path), what)  # bounded depth and digits; errors name the file (and line)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a JSON object ({what}), got {type(obj).__name__}")
    return obj


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write through a temporary file and a rename, so a kill never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        raise DataError(f"{path}: cannot write ({e.strerror or e})") from None


def make_dir(path: Path, what: str) -> Path:
    """Create `path` (and its parents); a file in the way or a missing permission is one line."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{path}: cannot create {what} ({e.strerror or e})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise DataError(f"{path}: cannot write into {what} (permission denied)")
    return path


# -- identity -----------------------------------------------------------------------------------

def canonical(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists, keys strings), so that a recorded
    identity and a new one compare equal exactly when they mean the same."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 70 else text[:67] + "..."


def _differences(recorded: Any, now: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, recorded, now) for every leaf that differs; objects on both sides are
    compared key by key, so a message names `student.spec`, not the whole student."""
    if isinstance(recorded, dict) and isinstance(now, dict):
        out = []
        for k in sorted(set(recorded) | set(now)):
            out += _differences(recorded.get(k), now.get(k), f"{prefix}{k}.")
        return out
    return [] if recorded == now else [(prefix.rstrip("."), recorded, now)]


def check_same_run(where: Path, recorded: Mapping[str, Any], now: Mapping[str, Any], *,
                   remedy: str = "use another --out or pass --overwrite",
                   error: type[Exception] = DataError) -> None:
    """The one "is this the same run" rule: raise `error` (DataError: the directory does not
    fit; distill train says ConfigError, its options being what differs) naming every key on
    which the identity recorded at `where` and the new one differ (a key only one of them has
    differs)."""
    differ = _differences(dict(recorded), canonical(dict(now)))
    if differ:
        shown = "; ".join(f"{k}: recorded {_shown(old)}, now {_shown(new)}" for k, old, new in differ)
        raise error(f"{where}: this directory holds a different run ({shown}); {remedy}")


# -- run.json -----------------------------------------------------------------------------------

class GenerationMeta(BaseModel):
    """run.json's `generation`: the sampling settings. Unknown keys are kept (hand-made and older
    files carry others, and the report shows them as they are)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, frozen=True)

    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    samples: int | None = Field(None, ge=1)
    seed: int | None = None
    logprobs: int | None = Field(None, ge=0, le=20)


class RunMeta(BaseModel):
    """run.json. `identity` is what check_same_run compares; the rest describes the run."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, frozen=True)

    model: str = Field(min_length=1)  # the model spec as given
    data: str | None = None  # question file or hf: dataset
    data_sha256: str | None = None  # "n/a" when the data is not a local file
    generation: GenerationMeta = Field(default_factory=GenerationMeta)
    template: str | None = None  # a template name, or "auto" / "auto-chat"
    package_version: str | None = None
    started_at: str | None = None
    n_questions: int | None = Field(None, ge=0)  # questions the run is to answer
    identity: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=False)


def package_version() -> str:
    """The installed distribution's version (pyproject.toml is its one source)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tourney")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def now_stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# -- results.jsonl ------------------------------------------------------------------------------

def read_results(path: str | Path) -> list[SampleResult]:
    """Read results.jsonl into SampleResults.

    A malformed line (bad JSON, missing field, wrong type) raises DataError naming `file:line`
    and the field. Blank lines are skipped; unknown fields are ignored (forward compatibility).
    When the same (id, sample) appears more than once the LAST row wins: a resumed run appends a
    retried row after the failed one. The kept row takes the first occurrence's position.
    """
    path = Path(path)
    rows: dict[tuple[str, int], SampleResult] = {}
    for _, where, raw in iter_objects(path):
        try:
            row = SampleResult.from_dict(raw)
        except ValidationError as e:
            raise DataError(f"{where}: {describe(e)}") from None
        rows[(row.id, row.sample)] = row
    return list(rows.values())


class RunDir:
    """One evaluation run directory (module doc)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS_FILE

    @property
    def meta_path(self) -> Path:
        return self.path / RUN_FILE

    # -- reading --------------------------------------------------------------------------------
    def meta(self) -> RunMeta:
        if not self.meta_path.is_file():
            raise DataError(f"{self.meta_path}: not found; is {self.path} an evaluation run directory?")
        raw = read_json_object(self.meta_path, "an evaluation run's metadata (run.json)")
        try:
            return RunMeta.model_validate(raw)
        except ValidationError as e:
            raise DataError(f"{self.meta_path}: {describe(e)}") from None

    def rows(self) -> list[SampleResult]:
        """Every row, last per (id, sample); DataError when the run has written none."""
        if not self.results_path.is_file():
            raise DataError(f"{self.results_path}: not found; the run has written no results")
        return read_results(self.results_path)

    def rows_by_question(self) -> dict[str, list[SampleResult]]:
        """id -> that question's rows sorted by sample, in the file's (question) order."""
        self.meta()  # a clear error when this is not a run directory
        by_id: dict[str, list[SampleResult]] = {}
        for row in self.rows():
            by_id.setdefault(row.id, []).append(row)
        if not by_id:
            raise DataError(f"{self.results_path}: no results; expected at least one answered question")
        return {k: sorted(v, key=lambda r: r.sample) for k, v in by_id.items()}

    def finished(self) -> set[tuple[str, int]]:
        """(id, sample) of every row that holds an answer (a failed request is not finished)."""
        if not self.results_path.exists():
            return set()
        return {(r.id, r.sample) for r in read_results(self.results_path) if r.error is None}

    # -- writing --------------------------------------------------------------------------------
    @classmethod
    def start(cls, path: str | Path, meta: RunMeta, *, overwrite: bool = False) -> "RunDir":
        """Create the run, or resume it when `path` holds the same run (check_same_run on the
        identities; the first run.json stays, with its start time). `overwrite` discards what the
        directory holds. A torn last line from a kill is cut off."""
        run = cls(make_dir(Path(path), "the run directory"))
        if run.meta_path.exists() and not overwrite:
            check_same_run(run.meta_path, run.meta().identity, meta.identity)
        else:
            if overwrite:
                for name in (RESULTS_FILE, *REPORT_FILES):
                    (run.path / name).unlink(missing_ok=True)
            write_json_atomic(run.meta_path, meta.to_json())
        cut_torn_tail(run.results_path)
        return run

    def append(self, rows: Iterable[SampleResult]) -> None:
        """Append rows in one write, fsynced (a kill leaves whole lines and at most a torn tail)."""
        try:
            append_lines(self.results_path, (dumps_line(r.to_dict()) for r in rows))
        except OSError as e:
            raise DataError(f"{self.results_path}: cannot write ({e.strerror or e})") from None

    def compact(self, question_ids: Sequence[str]) -> None:
        """Rewrite results.jsonl in question order, one row per (id, sample), the last one;
        atomic via rename, so a resumed run ends with the bytes of an uninterrupted one."""
        by_id: dict[str, list[SampleResult]] = {}
        for r in read_results(self.results_path) if self.results_path.exists() else []:
            by_id.setdefault(r.id, []).append(r)
        order = [r for i in question_ids for r in sorted(by_id.get(i, []), key=lambda r: r.sample)]
        tmp = self.results_path.with_name(RESULTS_FILE + ".tmp")
        try:
            tmp.write_text("".join(dumps_line(r.to_dict()) for r in order), encoding="utf-8")
            os.replace(tmp, self.results_path)
        except OSError as e:
            raise DataError(f"{self.results_path}: cannot write ({e.strerror or e})") from None
