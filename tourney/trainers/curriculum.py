"""Curriculum: score each SFT example's difficulty, then decide the order the trainer sees them in.

Difficulty is a weighted mean of hardness components, each in [0, 1] (higher is harder):
- pass:       1 - teacher pass rate (the fraction of teacher samples that were right);
- confidence: -mean_logprob of the kept solution, min-max scaled over the data set (a teacher
              unsure of its own tokens marks a hard example);
- length:     solution length, min-max scaled: `tokens`, or the word count when a row has none
              (units then mix, so prefer data where every row has tokens or none does);
- type:       the question type's rank when types are sorted by mean pass rate, easiest first,
              scaled to [0, 1] (one type: 0).
    difficulty = sum_k w_k * c_k / sum_k w_k, over the components the example has.
A component an example lacks (gold data has no pass rate or logprob) is left out of both sums
rather than guessed; min-max scaling of a constant column gives 0.

Orderings (`order=`), one index list per epoch:
- `easy-to-hard`: sorted by difficulty; ties in a seeded random order, drawn afresh each epoch;
- `staged`: examples cut into `buckets` equal-count buckets by difficulty rank (quantiles), the
  buckets in order, examples shuffled within each;
- `competence`: competence-based pacing (Platanios et al., 2019). Draw t (0-based, counted over
  all epochs, one draw per example slot) picks uniformly, with replacement, among the easiest
  c(t) fraction, c(t) = min(1, sqrt(t * (1 - c0^2) / T + c0^2)), T = ramp * epochs * n draws.
  An epoch is n draws, so early epochs repeat easy examples and may miss hard ones;
- `random`: a seeded shuffle per epoch, the baseline.
Everything draws from one `random.Random(seed)`: the same seed and data give the same order.
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict
from typing import Annotated, Any, Literal, Sequence

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from tourney.errors import ConfigError, DataError

ORDERS = ("easy-to-hard", "staged", "competence", "random")
COMPONENTS = ("pass", "confidence", "length", "type")


Weight = Annotated[float, Field(ge=0)]


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid", allow_inf_nan=False))
class CurriculumConfig:
    order: Literal[ORDERS] = Field("easy-to-hard", description="easy-to-hard, staged, competence or random.")
    seed: int = Field(0, description="The only source of randomness.")
    w_pass: Weight = Field(0.4, description="Weight of 1 - pass rate (weights are >= 0 and not all 0).")
    w_confidence: Weight = Field(0.2, description="Weight of scaled -mean_logprob.")
    w_length: Weight = Field(0.2, description="Weight of scaled solution length.")
    w_type: Weight = Field(0.2, description="Weight of the type's pass-rate rank.")
    buckets: int = Field(4, ge=1, description="staged: number of difficulty buckets.")
    c0: float = Field(0.1, gt=0, le=1, description="competence: the easiest fraction available at the start.")
    ramp: float = Field(0.5, gt=0, le=1, description="competence: fraction of all draws after which everything "
                                                     "is available.")

    def __post_init__(self) -> None:
        if sum(self.weights().values()) == 0:
            raise ValueError("at least one difficulty weight must be > 0")

    def weights(self) -> dict[str, float]:
        return {"pass": self.w_pass, "confidence": self.w_confidence, "length": self.w_length, "type": self.w_type}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def competence(t: float, total: float, c0: float) -> float:
    """Platanios et al.'s square-root competence: c0 at t = 0, 1 from t = total on."""
    if total <= 0:
        return 1.0
    return min(1.0, math.sqrt(t * (1 - c0 * c0) / total + c0 * c0))


def _get(example: Any, key: str) -> Any:
    """Examples may be dicts (read_sft_jsonl) or objects with attributes (SFTExample)."""
    return example.get(key) if isinstance(example, dict) else getattr(example, key, None)


def _minmax(values: list[float | None]) -> list[float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return values
    lo, hi = min(present), max(present)
    return [None if v is None else (v - lo) / (hi - lo) if hi > lo else 0.0 for v in values]


def _length(example: Any) -> float:
    tokens = _get(example, "tokens")
    if isinstance(tokens, int) and tokens > 0:
        return float(tokens)
    return float(len(str(_get(example, "solution") or "").split()))


def _type_hardness(examples: Sequence[Any]) -> list[float | None]:
    rates: dict[str, list[float]] = {}
    for e in examples:
        rate = _get(e, "pass_rate")
        if rate is not None:
            rates.setdefault(str(_get(e, "type")), []).append(float(rate))
    # Easiest type (highest mean pass rate) first; names break ties so the rank is stable.
    ranked = sorted(rates, key=lambda t: (-sum(rates[t]) / len(rates[t]), t))
    scale = max(1, len(ranked) - 1)
    rank = {t: i / scale for i, t in enumerate(ranked)}
    return [rank.get(str(_get(e, "type"))) for e in examples]


def difficulty_components(examples: Sequence[Any]) -> dict[str, list[float | None]]:
    """Each component (see the module doc) per example; None where the example lacks it."""
    pass_rates = [_get(e, "pass_rate") for e in examples]
    logprobs = [_get(e, "mean_logprob") for e in examples]
    return {
        "pass": [None if r is None else 1.0 - float(r) for r in pass_rates],
        "confidence": _minmax([None if lp is None else -float(lp) for lp in logprobs]),
        "length": _minmax([_length(e) for e in examples]),
        "type": _type_hardness(examples),
    }


def difficulty_scores(examples: Sequence[Any], cfg: CurriculumConfig) -> list[float]:
    """The weighted mean of the components each example has; 0.0 when it has none with weight."""
    comps = difficulty_components(examples)
    weights = cfg.weights()
    scores = []
    for i in range(len(examples)):
        num = den = 0.0
        for name in COMPONENTS:
            value = comps[name][i]
            if value is not None and weights[name] > 0:
                num += weights[name] * value
                den += weights[name]
        scores.append(num / den if den else 0.0)
    return scores


def _ranked(difficulty: Sequence[float], rng: random.Random) -> list[int]:
    """Indices easiest first; a shuffle before the stable sort puts ties in a seeded order."""
    order = list(range(len(difficulty)))
    rng.shuffle(order)
    order.sort(key=lambda i: difficulty[i])
    return order


def _staged(ranked: list[int], buckets: int, rng: random.Random) -> list[int]:
    n = len(ranked)
    out: list[int] = []
    for b in range(buckets):
        bucket = ranked[b * n // buckets: (b + 1) * n // buckets]
        rng.shuffle(bucket)
        out.extend(bucket)
    return out


def _competence_order(ranked: list[int], epochs: int, cfg: CurriculumConfig, rng: random.Random) -> list[list[int]]:
    n = len(ranked)
    total = cfg.ramp * epochs * n
    out = []
    for epoch in range(epochs):
        draws = []
        for slot in range(n):
            c = competence(epoch * n + slot, total, cfg.c0)
            available = max(1, min(n, math.ceil(c * n - 1e-9)))  # 1e-9: c * n = 3.0000000004 is 3
            draws.append(ranked[rng.randrange(available)])
        out.append(draws)
    return out


def order_examples(examples: Sequence[Any], cfg: CurriculumConfig, epochs: int = 1) -> list[list[int]]:
    """The order of example indices for each of `epochs` epochs (see the module doc)."""
    if epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs}")
    if not examples:
        raise DataError("no examples to order")
    rng = random.Random(cfg.seed)
    n = len(examples)
    if cfg.order == "random":
        return [rng.sample(range(n), n) for _ in range(epochs)]
    difficulty = difficulty_scores(examples, cfg)
    if cfg.order == "competence":
        return _competence_order(_ranked(difficulty, rng), epochs, cfg, rng)
    if cfg.order == "staged":
        return [_staged(_ranked(difficulty, rng), cfg.buckets, rng) for _ in range(epochs)]
    return [_ranked(difficulty, rng) for _ in range(epochs)]
