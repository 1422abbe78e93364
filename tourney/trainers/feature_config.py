"""Feature-distillation settings and layer maps: no torch here, so the command line can build its
options (and `tourney --help` stay fast) without importing the training stack. The losses that
use these settings are in trainers.features."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

from tourney.errors import ConfigError

FEATURE_LOSSES = ("mse", "cosine")


def default_layer_map(n_student: int, n_teacher: int) -> dict[int, int]:
    """Student layer i (1-based) -> teacher layer round(i * n_teacher / n_student).

    Evenly spaced with last <-> last, e.g. (2, 4) -> {1: 2, 2: 4} and (3, 4) -> {1: 1, 2: 3, 3: 4};
    a student deeper than its teacher maps several layers onto one.
    """
    if n_student < 1 or n_teacher < 1:
        raise ValueError(f"layer counts must be >= 1, got student {n_student}, teacher {n_teacher}")
    # Integer round-half-up, so the map never depends on float rounding.
    return {i: max(1, (2 * i * n_teacher + n_student) // (2 * n_student)) for i in range(1, n_student + 1)}


LayerIndex = Annotated[int, Field(ge=0)]  # hidden_states index: 0 = embeddings, i = layer i


@dataclass(frozen=True, config=ConfigDict(extra="forbid", allow_inf_nan=False))
class FeatureKDConfig:
    layer_map: Optional[dict[LayerIndex, LayerIndex]] = Field(
        None, min_length=1, description="Student layer -> teacher layer (hidden_states indices, 0 = embeddings); "
                                        "None: default_layer_map.")
    loss: Literal[FEATURE_LOSSES] = Field("mse", description="mse (per-dimension squared error) or cosine "
                                                             "(1 - cosine similarity).")
    weight: float = Field(1.0, ge=0, description="Weight of feature_loss in the trainer's total; not applied here.")
    attention: bool = Field(False, description="Also match attention maps (needs eager attention).")
    attention_weight: float = Field(1.0, ge=0, description="Weight of attention_loss in the total; not applied here.")

    def __post_init__(self) -> None:
        if self.attention and self.layer_map and 0 in self.layer_map:
            raise ValueError("attention distillation cannot map layer 0: embeddings have no attention")

    def resolve_layer_map(self, n_student: int, n_teacher: int) -> dict[int, int]:
        """The map to use for models of these depths, checked against them."""
        if self.layer_map is None:
            return default_layer_map(n_student, n_teacher)
        over = {s: t for s, t in self.layer_map.items() if s > n_student or t > n_teacher}
        if over:
            raise ConfigError(
                f"layer_map {over} goes past the models (student has {n_student} layers, "
                f"teacher {n_teacher})"
            )
        return dict(sorted(self.layer_map.items()))


def parse_layer_map(text: str | None) -> dict[int, int] | None:
    """"1:2,2:4" -> {1: 2, 2: 4}; None or "" -> None (the default evenly spaced map)."""
    if not text:
        return None
    out: dict[int, int] = {}
    for part in text.split(","):
        s, sep, t = part.strip().partition(":")
        if not sep or not s.strip().isdigit() or not t.strip().isdigit():
            raise ValueError(f"layer map {text!r}: expected student:teacher pairs like 1:2,2:4")
        out[int(s)] = int(t)
    return out
