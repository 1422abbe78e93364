"""The reference distillation recipe (models/configs/reference_distill.toml, DistillTrainConfig
fields by name) and its launcher config, read through trainers.recipe like any `--config` file."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tourney.trainers.distill_config import DistillTrainConfig

REFERENCE_DISTILL = Path(__file__).resolve().parents[1] / "models" / "configs" / "reference_distill.toml"
REFERENCE_ACCELERATE = REFERENCE_DISTILL.with_name("reference_distill_fsdp.yaml")


def load_recipe(path: str | Path = REFERENCE_DISTILL, **overrides: Any) -> DistillTrainConfig:
    """DistillTrainConfig from the recipe with `overrides` on top (what flags would change), exactly
    as `distill train --config PATH` builds it; a bad key or value is a ConfigError naming the file."""
    from tourney.trainers.recipe import build_config

    return build_config(DistillTrainConfig, overrides, path)
