"""The miniature tournament: multiple-choice knowledge questions and arithmetic word problems.

One mixed set, in the proportions a tournament of the design has: most of it multiple-choice
knowledge (types `common`, `reasoning`, `rare`, `obscure` in 70/20/8/2 among themselves, from
`harness.knowledge`), the rest open-ended arithmetic (`one_step` .. `long_chain`, from
`harness.synthetic`), which is where chain-of-thought and token-level distillation matter:

    MIX = 80% knowledge, 20% arithmetic

The held-out splits ship as package data (`tourney/harness/data/mini/{dev,test}.jsonl`); the
training data is regenerated from the seeds by `write_splits`:

- `train.jsonl`: the questions the pair is trained on: arithmetic with worked solutions, and
  knowledge questions about *common* facts and two-hop chains only, so that whatever a model
  knows about rare and obscure facts it learnt from the text;
- `facts.jsonl`: the training text, one epoch of fact sentences ({"id", "text"} rows);
- `dev.jsonl`, `test.jsonl`: the mixed set, held out (no question of them is in train.jsonl).

The test split is larger than dev because the tail is small by design (2% obscure): 6,000
knowledge questions give about 120 obscure and 450 rare ones, and a multiple-choice answer is a
few tokens. Its arithmetic half is kept at 500 questions (the size of the arithmetic-only test
set before it; worked solutions are dozens of tokens to generate), so the test split is 92%
knowledge, where dev keeps the 80/20 mix.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from tourney.harness import knowledge, synthetic

MIX: dict[str, float] = {"knowledge": 0.8, "arithmetic": 0.2}
KNOWLEDGE_TYPES = tuple(knowledge.KNOWLEDGE_SHARES)
ARITHMETIC_TYPES = tuple(synthetic.TYPE_STEPS)
WORLD = knowledge.WorldConfig(seed=0)
# Package data: the held-out splits travel in the wheel.
MINI_SPLITS = Path(__file__).resolve().parent / "data" / "mini"
MINI_DEV = MINI_SPLITS / "dev.jsonl"
MINI_TEST = MINI_SPLITS / "test.jsonl"


@dataclass(frozen=True)
class SplitSpec:
    """How many questions of each half a split holds, and the seed its questions come from."""

    knowledge: int
    arithmetic: int
    seed: int


SPLITS: dict[str, SplitSpec] = {
    "test": SplitSpec(knowledge=6000, arithmetic=500, seed=3),
    "dev": SplitSpec(knowledge=2000, arithmetic=500, seed=2),
    # Training questions; knowledge here covers only common facts and two-hop chains.
    "train": SplitSpec(knowledge=3000, arithmetic=5000, seed=1),
}
TRAIN_KNOWLEDGE_SHARES = {"common": 0.7, "reasoning": 0.3}
TEXT_SEED = 11


def _key(row: dict) -> tuple:
    return row["question"], tuple(row.get("choices") or ())


def split_rows(split: str, world: knowledge.World | None = None) -> list[dict]:
    """The questions of one split, mixed in a seeded order, ids `<split>-NNNNN`."""
    spec = SPLITS[split]
    world = world or knowledge.build_world(WORLD)
    shares = TRAIN_KNOWLEDGE_SHARES if split == "train" else None
    rows = knowledge.knowledge_questions(world, spec.knowledge, seed=spec.seed, prefix="k", shares=shares)
    rows += synthetic.generate(synthetic.SynthConfig(n=spec.arithmetic, seed=spec.seed))
    random.Random(spec.seed).shuffle(rows)
    for i, r in enumerate(rows):
        r["id"] = f"{split}-{i:05d}"
    return rows


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def write_splits(out_dir: str | Path) -> dict[str, Path]:
    """train.jsonl, facts.jsonl, dev.jsonl and test.jsonl under `out_dir` (see the module doc).

    A training question identical to a held-out one (same text and options) is dropped from
    train, so nothing of dev or test is ever trained on; dev and test may share a common
    question, as a real tournament repeats its common knowledge."""
    out = Path(out_dir)
    world = knowledge.build_world(WORLD)
    held: set[tuple] = set()
    paths: dict[str, Path] = {}
    for split in ("test", "dev"):
        rows = split_rows(split, world)
        held.update(_key(r) for r in rows)
        paths[split] = write_jsonl(rows, out / f"{split}.jsonl")
    train = [r for r in split_rows("train", world) if _key(r) not in held]
    paths["train"] = write_jsonl(train, out / "train.jsonl")
    paths["facts"] = write_jsonl(knowledge.text_rows(world, TEXT_SEED), out / "facts.jsonl")
    return paths
