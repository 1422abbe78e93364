"""A calibration target as the user types it: share=F, accuracy=F, latency_mean=S, latency_p95=S."""
from __future__ import annotations

import math
from dataclasses import dataclass

from tourney.errors import ConfigError

TARGET_NAMES = {"share": "teacher_share", "teacher_share": "teacher_share", "accuracy": "accuracy",
                "latency_mean": "latency", "latency_p95": "latency"}


@dataclass(frozen=True)
class Target:
    kind: str  # "teacher_share" | "accuracy" | "latency"
    value: float
    relative: bool = False  # accuracy as a fraction of the teacher's
    stat: str = "mean"  # latency statistic

    @classmethod
    def parse(cls, text: str, absolute: bool = False) -> "Target":
        name, sep, value = text.partition("=")
        name = name.strip()
        if not sep or name not in TARGET_NAMES:
            raise ConfigError(f"--target {text!r}: expected share=F, accuracy=F, latency_mean=S or latency_p95=S")
        try:
            v = float(value)
        except ValueError:
            raise ConfigError(f"--target {text!r}: {value!r} is not a number") from None
        if not math.isfinite(v):
            raise ConfigError(f"--target {text!r}: the value must be finite")
        kind = TARGET_NAMES[name]
        if kind == "latency" and v <= 0:
            raise ConfigError(f"--target {text!r}: a latency budget must be > 0 seconds")
        if kind == "teacher_share" and not 0 <= v <= 1:
            raise ConfigError(f"--target {text!r}: a teacher share must be in [0, 1]")
        return cls(kind=kind, value=v, relative=kind == "accuracy" and not absolute,
                   stat="p95" if name == "latency_p95" else "mean")
