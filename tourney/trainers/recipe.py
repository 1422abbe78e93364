"""Recipe files: a config dataclass's fields written down in YAML, TOML or JSON, with
command-line flags overriding them (as torchtune's and TRL's users expect).

    # kd.yaml                                  tourney distill train --config kd.yaml --epochs 1
    student: mini-student
    teacher: mini-teacher
    method: kd
    kd_temperature: 1.0
    lora_targets: [q_proj, v_proj]

Precedence: a field's default < the recipe file < a flag given on the command line. Keys are
the field names (dashes read as underscores), or the TrainingArguments name a field maps onto
(`learning_rate` for `lr`); an unknown key is an error naming the file and the key, so a typo
never trains with a default silently. Errors name where the bad value came from: the flag, or
the file and its key.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, TypeVar

from pydantic import TypeAdapter, ValidationError

from tourney.errors import ConfigError
from tourney.schema import describe, read_mapping

C = TypeVar("C")


def training_alias(name: str, info: Any) -> str | None:
    """The TrainingArguments name that is another word for this field (`learning_rate` for `lr`),
    from the field's metadata; None when it is the same word or means something else there
    (`alias: false`, as for warmup_ratio, which transformers' warmup_steps also reads as a count)."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    names = extra.get("training_arguments") or ()
    if not names or names[0] == name or extra.get("alias") is False:
        return None
    return names[0]


def field_aliases(cls: type) -> dict[str, str]:
    """Every accepted recipe key -> its field name: the names themselves and their TrainingArguments
    aliases (training_alias)."""
    out: dict[str, str] = {}
    for name, info in cls.__pydantic_fields__.items():
        out[name] = name
        alias = training_alias(name, info)
        if alias:
            out.setdefault(alias, name)
    return out


def read_recipe(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a .yaml/.yml, .toml or .json file (tourney.schema.read_mapping)."""
    return read_mapping(path, "recipe")


def recipe_values(cls: type, path: str | Path) -> dict[str, Any]:
    """The recipe's values keyed by field name; unknown or repeated keys are ConfigErrors."""
    aliases = field_aliases(cls)
    out: dict[str, Any] = {}
    came_as: dict[str, str] = {}
    for key, value in read_recipe(path).items():
        name = aliases.get(str(key).replace("-", "_"))
        if name is None:
            valid = ", ".join(cls.__pydantic_fields__)
            raise ConfigError(f"{path}: unknown key {key!r}; valid keys: {valid}")
        if name in out:
            raise ConfigError(f"{path}: {came_as[name]!r} and {key!r} both set {name}")
        out[name], came_as[name] = value, str(key)
    return out


def build_config(cls: type[C], overrides: Mapping[str, Any], recipe: str | Path | None = None,
                 flags: Mapping[str, str] | None = None) -> C:
    """cls from its defaults, the recipe file (if any) and the overrides, in rising precedence.

    `flags` maps a field name to the flag it came from, for error messages (default --field-name).
    """
    from_file = recipe_values(cls, recipe) if recipe else {}
    merged = {**from_file, **overrides}
    try:
        return TypeAdapter(cls).validate_python(merged)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        name = str(first["loc"][0]) if first["loc"] else None
        flag = (flags or {}).get(name or "", f"--{(name or '').replace('_', '-')}")
        if first["type"] == "missing":
            where = f" (or {name!r} in {recipe})" if recipe else " (or the key in a --config file)"
            raise ConfigError(f"{flag} is required{where}") from None
        if name in overrides:
            raise ConfigError(f"{flag}: {_message(exc)}") from None
        if name in from_file:
            raise ConfigError(f"{recipe}: key {name!r}: {_message(exc)}") from None
        raise ConfigError(_message(exc)) from None


def _message(exc: ValidationError) -> str:
    """describe() without the field prefix (the caller names the flag or key) for one field's
    error; a check across fields keeps its own wording."""
    text = describe(exc)
    first = exc.errors(include_url=False)[0]
    if first["loc"]:
        text = text.split(": ", 1)[-1]
    return text
