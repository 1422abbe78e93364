"""Click options generated from a pydantic dataclass's fields, so a config is written once.

Each field becomes `--field-name` (plus the spellings its metadata lists: older flag names under
`flags`, and the TrainingArguments name under `training_arguments`, as `--learning_rate`); its
help is the field's description, its range and its default. Booleans are `--x/--no-x`, so a flag
can switch off what a recipe file switched on; Literal fields are choices; tuples and mappings
are text the field's own validator parses (`q_proj,v_proj`, `1:2,2:4`). Click itself converts
nothing but types and choices: defaults and ranges stay with pydantic, and `given_options` hands
on only what was typed, so a recipe file can sit between the defaults and the flags.
"""
from __future__ import annotations

import types
import typing
from typing import Any, Callable, Literal

import click
from click.core import ParameterSource


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the type inside Optional[...], whether None is allowed)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else annotation), True
    return annotation, False


def _click_type(tp: Any) -> Any:
    if typing.get_origin(tp) is Literal:
        return click.Choice([str(v) for v in typing.get_args(tp)])
    return {int: click.INT, float: click.FLOAT, str: click.STRING}.get(tp, click.STRING)


def _shown(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in value.items())
    return str(value)


def describe_range(metadata: list[Any]) -> str:
    """A field's numeric constraints as text: `>= 1`, `in (0, 1)`, `in [0, 1]`."""
    lo = hi = None
    for m in metadata:  # annotated_types' Ge, Gt, Le, Lt, as pydantic stores them
        if getattr(m, "ge", None) is not None:
            lo = f"[{m.ge}"
        elif getattr(m, "gt", None) is not None:
            lo = f"({m.gt}"
        elif getattr(m, "le", None) is not None:
            hi = f"{m.le}]"
        elif getattr(m, "lt", None) is not None:
            hi = f"{m.lt})"
    if lo and hi:
        return f"in {lo}, {hi}"
    if lo:
        return (">= " if lo[0] == "[" else "> ") + lo[1:]
    if hi:
        return ("<= " if hi[-1] == "]" else "< ") + hi[:-1]
    return ""


def field_help(name: str, info: Any) -> str:
    parts = [info.description or ""]
    rng = describe_range(info.metadata)
    if rng:
        parts.append(f"({rng})")
    if info.is_required():
        parts.append("[required]")
    elif isinstance(info.default, bool):
        parts.append(f"[default: --{'' if info.default else 'no-'}{name.replace('_', '-')}]")
    elif info.default is not None:
        parts.append(f"[default: {_shown(info.default)}]")
    return " ".join(p for p in parts if p)


def field_flags(name: str, info: Any) -> list[str]:
    """--field-name, the older spellings the field lists, and its TrainingArguments name when that
    is a different word for the same setting (a TRL user types `--learning_rate`)."""
    from tourney.trainers.recipe import training_alias

    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    flags = [f"--{name.replace('_', '-')}", *extra.get("flags", ())]
    alias = training_alias(name, info)
    if alias and _unwrap(info.annotation)[0] is not bool:  # a bool keeps one --x/--no-x pair
        flags.append(f"--{alias}")
    return flags


def option_for(name: str, info: Any) -> click.Option:
    tp, _ = _unwrap(info.annotation)
    flags = field_flags(name, info)
    if tp is bool:
        # --x/--no-x for every boolean: a flag must be able to undo what a recipe file set.
        long = flags[0][2:]
        decl = f"--{long}/--no-{long}"
        return click.Option([decl, *flags[1:], name], default=None, help=field_help(name, info))
    return click.Option([*flags, name], type=_click_type(tp), default=None, help=field_help(name, info),
                        metavar=None if typing.get_origin(tp) is Literal else _metavar(tp))


def _metavar(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (tuple, list):
        return "A,B,..."
    if origin is dict:
        return "K:V,..."
    return {int: "INT", float: "FLOAT"}.get(tp, "TEXT")


def config_options(cls: type, skip: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """A decorator adding one option per field of `cls`, in definition order."""

    def decorate(fn: Callable) -> Callable:
        params = getattr(fn, "__click_params__", [])
        # click applies decorators bottom-up and then reverses: append in reverse order.
        for name, info in reversed(list(cls.__pydantic_fields__.items())):
            if name not in skip:
                params.append(option_for(name, info))
        fn.__click_params__ = params
        return fn

    return decorate


def given_options(ctx: click.Context, cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """The fields of `cls` whose flags were typed (not left at their defaults)."""
    return {name: values[name] for name in cls.__pydantic_fields__
            if name in values and ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)}


def flag_names(cls: type) -> dict[str, str]:
    """Field -> the flag error messages name."""
    return {name: field_flags(name, info)[0] for name, info in cls.__pydantic_fields__.items()}
