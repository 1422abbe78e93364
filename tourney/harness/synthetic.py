"""Synthetic word problems for the miniature pair.

Each question is a short story about a running count (shells, coins, ...) changed by a chain of
events; the worked solution writes one arithmetic step per line and ends with `#### N`, exactly
the GSM8K format, so every harness path (loading, scoring, type metrics) is exercised for real.

The types mirror a tournament's mix, from common and short to rare and long:

| type        | share | steps | operations                          |
|-------------|-------|-------|-------------------------------------|
| one_step    | 40%   | 1     | + or -                              |
| two_step    | 30%   | 2     | +, -, and doubling                  |
| three_step  | 20%   | 3     | +, -, doubling                      |
| long_chain  | 10%   | 5     | +, -, doubling                      |

Counts stay in 1..99 and each change is a single digit (or a doubling), so one arithmetic step is
easy to learn; what separates a strong model from a weak one is carrying the count through a
chain of steps, reading each step's number from the right sentence.

These are the open-ended half of the miniature tournament (harness.tournament), which ships the
splits and regenerates the training data.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

TYPE_STEPS: dict[str, int] = {"one_step": 1, "two_step": 2, "three_step": 3, "long_chain": 5}
TYPE_SHARES: dict[str, float] = {"one_step": 0.4, "two_step": 0.3, "three_step": 0.2, "long_chain": 0.1}
MAX_VALUE = 99

NAMES = ["Ava", "Ben", "Mia", "Leo", "Zoe", "Sam", "Ivy", "Max", "Eli", "Amy", "Tom", "Kim", "Noah", "Lily", "Omar", "Rosa"]
ITEMS = ["shells", "coins", "stamps", "apples", "books", "cards", "marbles", "pens", "stickers", "beads", "rocks", "eggs"]

# Each event is one operation on the running count; the phrasing names the operand once.
ADD = ["{n} finds {a} more {item}.", "{n} gets {a} {item} from a friend.", "{n} buys {a} more {item}."]
SUB = ["{n} gives away {a} {item}.", "{n} loses {a} {item}.", "{n} sells {a} {item}."]
MUL = ["{n} doubles the {item}.", "The number of {item} doubles."]


@dataclass(frozen=True)
class SynthConfig:
    n: int = 1000  # questions to write
    seed: int = 0
    types: tuple[str, ...] = tuple(TYPE_STEPS)  # which types to draw from, by TYPE_SHARES

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        unknown = set(self.types) - set(TYPE_STEPS)
        if unknown:
            raise ValueError(f"unknown question types {sorted(unknown)}; known: {sorted(TYPE_STEPS)}")


def _step(rng: random.Random, value: int, allow_mul: bool) -> tuple[str, int]:
    """Pick one operation that keeps the count in [0, MAX_VALUE]; return (op, operand)."""
    ops = (["+"] if value < MAX_VALUE else []) + (["-"] if value > 1 else [])
    ops += ["*"] if allow_mul and 1 < value <= MAX_VALUE // 2 else []
    op = rng.choice(ops)
    if op == "+":
        return op, rng.randint(1, min(9, MAX_VALUE - value))
    if op == "-":
        return op, rng.randint(1, min(9, value - 1))
    return op, 2


def make_question(rng: random.Random, qtype: str, index: int) -> dict:
    """One question as a JSONL row in the harness's generic format."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    value = rng.randint(10, 60)
    sentences = [f"{name} has {value} {item}."]
    lines = []
    for _ in range(TYPE_STEPS[qtype]):
        op, a = _step(rng, value, allow_mul=qtype != "one_step")
        pool = {"+": ADD, "-": SUB, "*": MUL}[op]
        sentences.append(rng.choice(pool).format(n=name, a=a, item=item))
        new = value + a if op == "+" else value - a if op == "-" else value * a
        lines.append(f"{value} {op} {a} = {new}")
        value = new
    sentences.append(f"How many {item} does {name} have now?")
    solution = "\n".join(lines) + f"\n#### {value}"
    return {
        "id": f"mini-{index:05d}",
        "question": " ".join(sentences),
        "answer": str(value),
        "solution": solution,
        "type": qtype,
    }


def generate(cfg: SynthConfig) -> list[dict]:
    rng = random.Random(cfg.seed)
    shares = [TYPE_SHARES[t] for t in cfg.types]
    types = rng.choices(list(cfg.types), weights=shares, k=cfg.n)
    return [make_question(rng, t, i) for i, t in enumerate(types)]


def write_jsonl(rows: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path
