"""Reproduce the miniature pair: the tournament's splits, the tokenizer, the teacher and the student.

`tourney mini train` calls `train_mini`. Everything it writes stays under the work folder
(default runs/mini-train): data/ (train.jsonl, facts.jsonl, dev.jsonl, test.jsonl), tokenizer/,
teacher/ and student/ with a checkpoint per epoch (run the command again after a kill and it
resumes from the last finished epoch, to the same weights), and models/{teacher,student}, the
finished pair. Only `install=True` (`--install`) copies the pair into the package's checkpoint
folder and the dev/test splits into its data folder, replacing the shipped ones.

Both models learn from the same data, one epoch of which is:
- the fact text (harness.knowledge) TEXT_PASSES times, every token learnt;
- the training questions (harness.tournament): arithmetic with worked solutions, and knowledge
  questions about common facts and two-hop chains, answers learnt.
The student, as a real one, is smaller and gets a smaller budget (EPOCHS): fewer passes over the
text is what leaves rare and obscure facts beyond it, and fewer worked solutions what leaves it
behind on chains of arithmetic.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Iterable

from tourney.harness.tournament import MINI_SPLITS, write_splits
from tourney.models.mini.arch import ARCHS
from tourney.models.registry import MINI_DIR
from tourney.trainers.pretrain import PretrainConfig, pretrain, prompt_text

VOCAB_SIZE = 1024  # names and values of the knowledge world in one to three pieces
TEXT_PASSES = 4  # passes over the fact text per epoch
EPOCHS = {"teacher": 4, "student": 2}
BATCH_SIZE = 32


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def training_rows(splits: dict[str, Path]) -> list[dict]:
    """One epoch: the training questions, then the fact text TEXT_PASSES times (pretrain shuffles)."""
    return read_jsonl(splits["train"]) + read_jsonl(splits["facts"]) * TEXT_PASSES


def tokenizer_texts(rows: Iterable[dict]) -> list[str]:
    return [r["text"] if "text" in r else f"{prompt_text(r)} {r['solution']}" for r in rows]


def train_mini(
    work_dir: str | Path,
    which: Iterable[str] = ("teacher", "student"),
    epochs: dict[str, int] | None = None,
    install: bool = False,
    threads: int | None = 1,
    log: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Write the splits, train the tokenizer, train each model; return the finished models' folders."""
    from transformers import AutoTokenizer

    from tourney.models.mini.tokenizer import train_tokenizer

    work = Path(work_dir)
    splits = write_splits(work / "data")
    log(f"wrote {', '.join(str(p) for p in splits.values())}")
    rows = training_rows(splits)
    tok_dir = work / "tokenizer"
    if not (tok_dir / "tokenizer.json").exists():
        train_tokenizer(tokenizer_texts(rows), tok_dir, vocab_size=VOCAB_SIZE)
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    finals = {}
    for name in which:
        n_epochs = (epochs or EPOCHS)[name]
        log(f"training {name}: {n_epochs} epochs of {len(rows)} rows")
        cfg = PretrainConfig(out_dir=str(work / name), epochs=n_epochs, batch_size=BATCH_SIZE, seed=0, threads=threads)
        pretrain(ARCHS[name], tokenizer, rows, cfg, log=log)
        finals[name] = _copy(work / name / "final", work / "models" / name)
    if install:
        for name, path in finals.items():
            finals[name] = _copy(path, MINI_DIR / name)
        MINI_SPLITS.mkdir(parents=True, exist_ok=True)
        for split in ("dev", "test"):
            shutil.copy(splits[split], MINI_SPLITS / f"{split}.jsonl")
        log(f"installed {', '.join(finals)} into {MINI_DIR} and the dev/test splits into {MINI_SPLITS}")
    return finals


def _copy(src: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest)
    return dest
