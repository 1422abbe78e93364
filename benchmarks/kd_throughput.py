"""Logit-distillation training throughput: teacher logits computed online (teacher in memory,
a forward pass per step) against an offline top-k store built once and reused.

    .venv/bin/python benchmarks/kd_throughput.py --data runs/distill-table/sft-rs.jsonl [--epochs 2 --topk 8]

Three runs on the same data and seed, one after another: online; offline including the one-off
store build; offline again with the store already on disk (what every later epoch or run pays).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from transformers import AutoTokenizer

from tourney.models.registry import MINI_DIR
from tourney.trainers.dataset import read_sft_jsonl
from tourney.trainers.distill import train
from tourney.trainers.distill_config import DistillTrainConfig
from tourney.trainers.pretrain import encode_examples


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--topk", type=int, default=8)
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(str(MINI_DIR / "student"))
    tokens = sum(len(ids) for ids, _ in encode_examples(tok, read_sft_jsonl(args.data))) * args.epochs
    work = Path(tempfile.mkdtemp(prefix="kd-bench-"))
    store = work / "store"
    common = dict(student="mini-student", teacher="mini-teacher", data=args.data, method="kd", epochs=args.epochs,
                  lr=1e-3, batch_size=32, max_len=256, seed=0, logging_steps=1000)
    timings = {}
    for name, extra in [("online", {}), ("offline+build", {"topk": args.topk, "topk_store": str(store)}),
                        ("offline (store reused)", {"topk": args.topk, "topk_store": str(store)})]:
        out = work / name.split()[0].replace("+", "-")
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        train(DistillTrainConfig(out=str(out), **common, **extra), say=lambda _m: None)
        timings[name] = time.perf_counter() - t
    base = timings["online"]
    print(f"data={args.data} epochs={args.epochs} tokens={tokens} topk={args.topk}")
    for name, secs in timings.items():
        print(f"{name:24s} {secs:7.1f} s  {tokens / secs:8.0f} tokens/s  speed-up vs online {base / secs:.2f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
