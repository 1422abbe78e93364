"""Schemas by pydantic, errors in one line.

Files and options a user gives (result rows, run.json, ROUTER.json, submission logs, configs)
are parsed into pydantic v2 models whose fields carry their constraints. `parse` turns the first
validation failure into one DataError that names the file (and line) and the field:

    runs/x/results.jsonl:12: field 'latency_s': Input should be a valid number (got 'fast')

`Strict` is the base for file schemas: unknown fields are an error, NaN and infinities are
refused, nothing is coerced silently from a string to a number. Like every module here at the
root, this one imports nothing from the layers.
"""
from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from tourney.errors import ConfigError, DataError

M = TypeVar("M")


class Strict(BaseModel):
    """Base of the file schemas: no unknown fields, finite numbers, strict types."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True, frozen=True)


class Lenient(BaseModel):
    """Base of schemas that accept fields from newer versions (ignored), still with finite numbers."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True)


def describe(err: ValidationError) -> str:
    """The first error of a ValidationError as `field 'a.b': message (got ...)`."""
    errors = err.errors(include_url=False)
    first = errors[0]
    loc = ".".join(str(part) for part in first["loc"])
    msg = first["msg"]
    if first["type"] == "value_error" and "error" in first.get("ctx", {}):
        msg = str(first["ctx"]["error"])  # a validator's own sentence, without pydantic's "Value error, "
    shown = repr(first.get("input"))
    if len(shown) > 60:
        shown = shown[:57] + "..."
    # A check across fields (empty loc) has the whole input as its input: nothing useful to show.
    got = f" (got {shown})" if loc else ""
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    field = f"field {loc!r}: " if loc else ""
    return f"{field}{msg}{got}{more}"


def parse(model: type[M], data: Any, where: str, error: type[Exception] = DataError) -> M:
    """Validate `data` as `model` (a BaseModel, a pydantic dataclass, or any type TypeAdapter
    takes); a failure raises `error` (DataError by default) as `where: field 'x': ...`."""
    try:
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model.model_validate(data)
        return TypeAdapter(model).validate_python(data)
    except ValidationError as e:
        raise error(f"{where}: {describe(e)}") from None


def parse_option(model: type[M], data: Any, where: str) -> M:
    """`parse` for command-line options and config files: raises ConfigError."""
    return parse(model, data, where, error=ConfigError)


def read_mapping(path: Any, what: str) -> dict[str, Any]:
    """The top-level mapping of a .yaml/.yml, .toml or .json file a user wrote (a recipe, a prompt
    template); every failure is one ConfigError naming the file, `what` saying what it should be.
    YAML is read with safe_load: a file builds no Python objects."""
    import json
    import tomllib
    from pathlib import Path

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the {what} file ({getattr(exc, 'strerror', None) or exc})") from None
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text)
        elif suffix == ".toml":
            raw = tomllib.loads(text)
        elif suffix == ".json":
            raw = json.loads(text)
        else:
            raise ConfigError(f"{path}: a {what} is .yaml, .yml, .toml or .json, not {suffix or 'no suffix'!r}")
    except ConfigError:
        raise
    except Exception as exc:  # yaml.YAMLError, TOMLDecodeError, JSONDecodeError: the parser's own words
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: not valid {suffix.lstrip('.').upper()}: {first}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of field: value at the top, got {type(raw).__name__}")
    return raw
