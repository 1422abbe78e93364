"""Helpers shared by the command modules: one-line errors, backend options, the progress bar."""
from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any, Callable

import click

from tourney.errors import ConfigError, TourneyError

# Set by `tourney --debug` (or TOURNEY_DEBUG=1, for entry points such as `python -m
# tourney.cli.distill` under torchrun): the project's own errors keep their traceback too.
DEBUG = {"on": os.environ.get("TOURNEY_DEBUG", "") not in ("", "0")}


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def friendly_errors(fn: Callable) -> Callable:
    """The project's own error types (tourney.errors: bad data, bad options, a backend that cannot
    answer) become one line and exit status 2. Every other exception is a bug and keeps its
    traceback; `--debug` keeps the traceback of these too."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TourneyError as exc:
            if DEBUG["on"]:
                raise
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


def split_pairs(text: str) -> list[str]:
    """`a=1,b=2` -> ["a=1", "b=2"], lm-eval's comma form, except that commas inside brackets or
    quotes stay in their value (`extra_body={"a": 1, "b": 2}` is one pair)."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "{[(":
            depth += 1
        elif ch in "}])":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_key_values(pairs: tuple[str, ...] | list[str], option: str = "--model-arg") -> dict[str, Any]:
    """`key=value` options, each given alone or comma-joined (`a=1,b=2`); values are read as JSON
    when they parse (numbers, true/false, objects), else kept as strings. A key given twice is an
    error, not a silent overwrite."""
    out: dict[str, Any] = {}
    for given in pairs:
        for pair in split_pairs(given):
            key, sep, value = pair.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ConfigError(f"{option} {pair!r}: expected key=value (several as a=1,b=2)")
            if key in out:
                raise ConfigError(f"{option}: {key!r} is given twice")
            try:
                out[key] = json.loads(value)
            except json.JSONDecodeError:
                out[key] = value
    return out


def parse_model_args(pairs: tuple[str, ...]) -> dict[str, Any]:
    """Backend options from --model-arg / --model_args (see parse_key_values)."""
    return parse_key_values(pairs, "--model-arg")


def progress_bar(description: str):
    """A rich progress bar: questions done of all, requests in flight (servers), questions per
    second, elapsed time and ETA. Returns (context manager, callback(done, total, in_flight=None)),
    the callback safe to call from any thread."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            in_flight = task.fields.get("in_flight")
            shown = "" if in_flight is None else f"{in_flight} in flight, "
            return Text(shown + ("-- q/s" if speed is None else f"{speed:.1f} q/s"))

    # markup=False: a description names a model spec or a file, text a user typed; "[bold]" in it is text.
    bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), Rate(),
                   TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), transient=False)
    task = bar.add_task(description, total=None, in_flight=None)

    def update(done: int, total: int, in_flight: int | None = None) -> None:
        bar.update(task, completed=done, total=total, in_flight=in_flight)

    return bar, update


def with_backend(spec: str, options: dict[str, Any], label: str, work: Callable[[Any, Callable], Any]) -> Any:
    """Load a backend, check it answers (servers), run `work(backend, progress)` under a progress
    bar, and close the backend whatever happens."""
    from tourney.models.registry import load_backend

    backend = load_backend(spec, **options)
    try:
        backend.check()
    except BaseException:
        backend.close()
        raise
    bar, update = progress_bar(label)
    try:
        with bar:
            return work(backend, update)
    finally:
        backend.close()
