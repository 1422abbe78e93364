"""ROUTER.json as a schema: what a router file may hold, checked before anything is built from it.

A router file is an artefact people share, so it is read as untrusted data:
- bytes first: at most MAX_BYTES, valid UTF-8, then harness.jsonl.loads (the project's decoder
  for untrusted JSON: nesting depth and integer length bounded, syntax); each failure one line
  naming the file;
- then the schema (pydantic, tourney.schema.Strict): a supported `format`, known fields only,
  every number finite and in range (thresholds finite or the strings "inf"/"-inf",
  probabilities in [0, 1], token budgets and sample counts bounded), lists of bounded length;
- a router names models and settings but holds no authority (routers.runtime.trust): backend options
  are limited to an allow-list of safe ones; `trust_remote_code`, `api_key_env` and the like are
  refused with the reason.

Formats: `tourney-router/2` (written now) and `tourney-router/1` (what earlier versions wrote:
single signals and logistic regressions, read as they are). Nothing here is a pickle: every
model is numbers, names and hash buckets (routers.fitting.linear).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, JsonValue, PlainValidator, Tag, field_validator, model_validator

from tourney.errors import DataError
from tourney.harness.jsonl import MAX_DEPTH, loads  # noqa: F401 -- MAX_DEPTH re-exported
from tourney.routers.features.signals import FEATURE_NAMES
from tourney.routers.runtime.trust import check_model_args
from tourney.schema import Strict, parse

FORMAT_V1, FORMAT = "tourney-router/1", "tourney-router/2"
FORMATS = (FORMAT_V1, FORMAT)
MAX_BYTES = 64 * 2 ** 20  # a router with text weights is a few MB; far more is not a router
MAX_LIST = 2 ** 20  # hash-bucket weights of one model, at most
MAX_FEATURES = 256

Signal = Annotated[str, Field(max_length=64)]
Finite = float  # Strict refuses NaN and infinities in every float field
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


def _threshold(v: Any) -> float:
    """A threshold: a finite number, or "inf" / "-inf" (escalate everything / nothing)."""
    if isinstance(v, str) and v in ("inf", "-inf"):
        return float(v)
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    raise ValueError("expected a finite number, 'inf' or '-inf'")


Threshold = Annotated[float, PlainValidator(_threshold)]


def _known(names: list[str]) -> list[str]:
    bad = [n for n in names if n not in FEATURE_NAMES]
    if bad:
        raise ValueError(f"unknown signal name(s) {bad[:5]}; known: {', '.join(FEATURE_NAMES)}")
    return names


class _BucketWeights(Strict):
    """Weights on hash buckets: one per bucket, every bucket below n_features."""

    n_features: int = Field(ge=1, le=2 ** 24)
    buckets: list[Annotated[int, Field(ge=0)]] = Field(max_length=MAX_LIST)
    weights: list[Finite] = Field(max_length=MAX_LIST)

    @model_validator(mode="after")
    def _aligned(self):
        if len(self.buckets) != len(self.weights):
            raise ValueError("expected one weight per bucket")
        if self.buckets and max(self.buckets) >= self.n_features:
            raise ValueError("a bucket index is not below n_features")
        return self


class HashedTextSchema(_BucketWeights):
    ngram_max: int = Field(ge=1, le=3)
    reads_answer: bool = False  # n-grams of type + question + the student's answer (routers.features.documents.DocumentForm)
    reads_choice: bool = False  # ... and the chosen option's words (absent in files written before)
    reads_checks: bool = False  # ... and the check tokens (routers.features.option_checks; ditto)
    reads_guess: bool = False  # ... and the option guesser's tokens (routers.features.option_guess; ditto)
    length_power: float = Field(default=0.5, ge=0.0, le=1.0)  # absent: unit length (routers.fitting.linear)
    length_pivot: float = Field(default=1.0, gt=0.0, le=1e6)


class GuesserSchema(_BucketWeights):
    """routers.features.option_guess.OptionGuesser: weights over the option documents' buckets."""

    questions: int = Field(default=0, ge=0)


class LinearSchema(Strict):
    features: list[Signal] = Field(max_length=MAX_FEATURES)
    unavailable: list[Signal] = Field(default_factory=list, max_length=MAX_FEATURES)
    mean: list[Finite] = Field(max_length=MAX_FEATURES)
    scale: list[Annotated[float, Field(gt=0.0)]] = Field(max_length=MAX_FEATURES)
    weights: list[Finite] = Field(max_length=MAX_FEATURES)
    bias: Finite
    l2: Annotated[float, Field(gt=0.0)]
    text: HashedTextSchema | None = None

    _names = field_validator("features", "unavailable")(_known)

    @model_validator(mode="after")
    def _aligned(self):
        if not (len(self.mean) == len(self.scale) == len(self.weights) == len(self.features)):
            raise ValueError(f"'mean', 'scale' and 'weights' need one value per feature ({len(self.features)}); "
                             f"got {len(self.mean)}, {len(self.scale)}, {len(self.weights)}")
        return self


class _Primary(Strict):
    primary: Signal | None = None
    primary_step: Annotated[float, Field(ge=0.0)] = 0.0

    @model_validator(mode="after")
    def _primary(self):
        if self.primary is not None:
            _known([self.primary])
            if not self.primary_step > 0:
                raise ValueError("'primary_step' must be > 0 with a primary signal")
        return self


class PriorSchema(Strict):
    model: LinearSchema
    n_rows: int = Field(ge=0)
    runs: list[Annotated[str, Field(max_length=4096)]] = Field(default_factory=list, max_length=MAX_FEATURES)


class LogisticSchema(LinearSchema, _Primary):
    kind: Literal["logistic_regression"]
    prior: PriorSchema | None = None  # routers.features.prior: the difficulty prior behind `prior_accuracy`


class GainSchema(_Primary):
    kind: Literal["expected_gain"]
    student: LinearSchema
    teacher: LinearSchema
    prior: PriorSchema | None = None
    discord: LinearSchema | None = None  # routers.fitting.gain: the split estimate's two models
    winner: LinearSchema | None = None
    guesser: GuesserSchema | None = None  # the option guesser behind the documents' `g_` tokens


def _model_tag(v: Any) -> str | None:
    if isinstance(v, str):
        return "signal"
    return v.get("kind") if isinstance(v, dict) else getattr(v, "kind", None)


# A single signal's name, or a fitted model told apart by its `kind`.
ModelField = Annotated[Union[Annotated[Signal, Tag("signal")],
                             Annotated[LogisticSchema, Tag("logistic_regression")],
                             Annotated[GainSchema, Tag("expected_gain")]], Discriminator(_model_tag)]


class FiguresSchema(Strict):
    n: int = Field(ge=0)
    teacher_share: Probability
    accuracy: Probability
    latency_mean_s: Annotated[float, Field(ge=0.0)] | None = None
    latency_p95_s: Annotated[float, Field(ge=0.0)] | None = None


class IsotonicSchema(Strict):
    x: list[Finite] = Field(min_length=1, max_length=MAX_LIST)
    y: list[Annotated[float, Field(ge=-1.0, le=1.0)]] = Field(min_length=1, max_length=MAX_LIST)

    @model_validator(mode="after")
    def _increasing(self):
        if len(self.x) != len(self.y):
            raise ValueError("expected as many y values as x values")
        if any(b <= a for a, b in zip(self.x, self.x[1:])):
            raise ValueError("'x' must be strictly increasing")
        return self


class PerTypeSchema(Strict):
    all_types: IsotonicSchema
    by_type: dict[Annotated[str, Field(max_length=200)], IsotonicSchema] = Field(max_length=10_000)
    min_questions: int = Field(ge=1)
    center: Finite
    spread: Annotated[float, Field(gt=0.0)]


class PreRoutingSchema(Strict):
    model: GainSchema
    teacher_below: Threshold
    student_from: Threshold
    teacher_share: Probability  # the dev fractions the two thresholds were set at
    student_share: Probability


class ModelSettingsSchema(Strict):
    spec: str = Field(min_length=1, max_length=4096)
    samples: int = Field(default=1, ge=1, le=1024)
    temperature: float = Field(default=0.0, ge=0.0, le=100.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(default=512, ge=1, le=1_048_576)
    logprobs: int | None = Field(default=None, ge=0, le=20)
    seed: int = Field(default=0, ge=0, le=2 ** 63 - 1)
    template: str | None = Field(default=None, max_length=200)
    chat: bool = False
    model_args: dict[str, JsonValue] = Field(default_factory=dict, max_length=64)

    _args = field_validator("model_args")(check_model_args)


class RouterFileSchema(Strict):
    format: str
    target_kind: Literal["teacher_share", "accuracy", "latency"]
    target_value: Finite
    threshold: Threshold
    signals: list[Signal] = Field(max_length=MAX_FEATURES)
    model: ModelField
    dev: FiguresSchema
    heldout: FiguresSchema | None = None
    relative: bool = False
    latency_stat: Literal["mean", "p95"] = "mean"
    split_ties: bool = False
    per_type: PerTypeSchema | None = None
    pre: PreRoutingSchema | None = None
    target: str | None = Field(default=None, max_length=200)
    student: ModelSettingsSchema | None = None
    teacher: ModelSettingsSchema | None = None
    data: dict[str, JsonValue] = Field(default_factory=dict)
    # sha256 of the student's weights file at calibration (models.weights_file); absent in older files
    student_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    _names = field_validator("signals")(_known)

    @field_validator("format")
    @classmethod
    def _format(cls, v: str) -> str:
        if v not in FORMATS:
            raise ValueError(f"unsupported router format {v[:40]!r}; this version reads {' and '.join(FORMATS)}")
        return v

    @field_validator("model")
    @classmethod
    def _model(cls, v):
        if isinstance(v, str):
            _known([v])
        return v

    @model_validator(mode="after")
    def _target_fits_kind(self):
        v, kind = self.target_value, self.target_kind
        if kind == "teacher_share" and not 0.0 <= v <= 1.0:
            raise ValueError(f"field 'target_value': a teacher share is in [0, 1], got {v:g}")
        if kind == "accuracy" and not self.relative and not 0.0 <= v <= 1.0:
            raise ValueError(f"field 'target_value': an accuracy is in [0, 1], got {v:g}")
        if kind == "accuracy" and self.relative and v < 0:
            raise ValueError(f"field 'target_value': a share of the teacher's accuracy is >= 0, got {v:g}")
        if kind == "latency" and not v > 0:
            raise ValueError(f"field 'target_value': a latency budget is a positive number of seconds, got {v:g}")
        return self

    @model_validator(mode="after")
    def _version(self):
        if self.format == FORMAT_V1:
            newer = [name for name, present in (
                ("per_type", self.per_type is not None), ("pre", self.pre is not None),
                ("model.kind expected_gain", getattr(self.model, "kind", None) == "expected_gain"),
                ("model.text", getattr(self.model, "text", None) is not None)) if present]
            if newer:
                raise ValueError(f"{FORMAT_V1} has no {', '.join(newer)}; such a file must say {FORMAT}")
        return self


# -- bytes to JSON -------------------------------------------------------------------------------

def read_json(path: str | Path, what: str = "router file") -> Any:
    """The JSON value of a file given by someone else; one-line DataError naming it otherwise:
    size and UTF-8 here, nesting depth, integer length and syntax by harness.jsonl.loads."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    if len(raw) > MAX_BYTES:
        raise DataError(f"{path}: larger than {MAX_BYTES // 2 ** 20} MiB; not a {what}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})") from None
    return loads(text, str(path), f"a {what}")


def parse_router(raw: Any, where: str) -> RouterFileSchema:
    """Validate a router file's JSON value; DataError `where: field 'x': ...` otherwise."""
    if isinstance(raw, dict) and "format" not in raw:
        raise DataError(f"{where}: field 'format': missing; a router file says {FORMAT} (or {FORMAT_V1})")
    return parse(RouterFileSchema, raw, where)


def load_router_file(path: str | Path) -> RouterFileSchema:
    return parse_router(read_json(path), str(path))
