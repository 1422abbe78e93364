"""Helpers shared by the command modules: one-line errors, backend options, the progress bar."""
from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable

import click

from tourney.harness.types import DataError
from tourney.models.types import BackendError


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def friendly_errors(fn: Callable) -> Callable:
    """Turn the project's own error types into one-line messages."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (DataError, BackendError, ValueError, FileNotFoundError) as exc:
            _fail(str(exc))

    return wrapper


class SectionedCommand(click.Command):
    """A command whose --help lists its options in titled sections (click has none of its own).

    `sections` maps a title to option names (the parameter names); options in no section are
    listed last, under "Other options"."""

    def __init__(self, *args: Any, sections: dict[str, tuple[str, ...]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sections = sections or {}

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: dict[str, list[tuple[str, str]]] = {title: [] for title in self.sections}
        where = {name: title for title, names in self.sections.items() for name in names}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                rows.setdefault(where.get(param.name or "", "Other options"), []).append(record)
        for title, records in rows.items():
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)


def parse_model_args(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`key=value` options for the backend; values are read as JSON when they parse (numbers,
    true/false), else kept as strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-arg {pair!r}: expected key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def progress_bar(description: str):
    """A rich progress bar with ETA; returns (context manager, callback(done, total))."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), transient=False)
    task = bar.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return bar, update


def with_backend(spec: str, options: dict[str, Any], label: str, work: Callable[[Any, Callable], Any]) -> Any:
    """Load a backend, check it answers (servers), run `work(backend, progress)` under a progress
    bar, and close the backend whatever happens."""
    from tourney.models.registry import load_backend

    backend = load_backend(spec, **options)
    if hasattr(backend, "check"):
        backend.check()
    bar, update = progress_bar(label)
    try:
        with bar:
            return work(backend, update)
    finally:
        backend.close()
