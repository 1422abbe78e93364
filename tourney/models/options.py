"""Backend options are checked where they are declared: in the backend's constructor signature.

`@checked_options` validates a constructor's keyword arguments against its annotations (pydantic's
validate_call), so `--model-arg devcie=cpu` is an unknown option and `batch_size=0`,
`concurrency=abc`, `device=nonsense` or `extra_body=[1,2]` are bad values, each reported by
`load_backend` as one line that names the spec, the option and, for an unknown one, the valid
options. Constraints sit in the annotations (`Annotated[int, Field(ge=1)]`), so the signature is
the documentation and the check at once.
"""
from __future__ import annotations

import difflib
import inspect
import re
from typing import Annotated, Any, Callable

from pydantic import AfterValidator, ConfigDict, Field, ValidationError, validate_call

from tourney.errors import OptionError
from tourney.schema import describe

_DEVICE = re.compile(r"auto|cpu|mps|(cuda|xpu|npu)(:\d+)?")


def _device(value: str) -> str:
    if not _DEVICE.fullmatch(value):
        raise ValueError("expected auto, cpu, mps, cuda or cuda:N")
    return value


Device = Annotated[str, AfterValidator(_device)]
AtLeastOne = Annotated[int, Field(ge=1)]

# arbitrary types: the spec, and in-memory models handed over by the trainers.
checked_options = validate_call(config=ConfigDict(arbitrary_types_allowed=True, allow_inf_nan=False))


def option_names(factory: Callable) -> list[str]:
    """The options a user can set: keyword-only parameters, less objects only code can pass."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    params = inspect.signature(target).parameters.values()
    return [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.annotation not in ("Any", Any)]


def option_error(exc: ValidationError, factory: Callable, spec: str) -> OptionError:
    first = exc.errors(include_url=False)[0]
    if first["type"] == "unexpected_keyword_argument":
        valid = ", ".join(option_names(factory)) or "none"
        return OptionError(f"model spec {spec!r}: unknown option {first['loc'][-1]!r}; valid options: {valid}")
    return OptionError(f"model spec {spec!r}: option {describe(exc).removeprefix('field ')}")


def unknown_passthrough(given: dict[str, Any], valid: set[str], spec: str, library: str) -> None:
    """For options handed on to a library (llama.cpp's Llama, vLLM's engine): refuse names it
    does not take, listing a few it does, instead of a TypeError from inside it."""
    bad = sorted(set(given) - valid)
    if bad:
        close = difflib.get_close_matches(bad[0], sorted(valid), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise OptionError(f"model spec {spec!r}: unknown option {bad[0]!r} (neither ours nor {library}'s); "
                          f"{hint}{library} takes: {', '.join(sorted(valid))}")
