"""Greedy agreement between a miniature checkpoint in transformers and its GGUF export in llama.cpp
on the miniature test set, with the time each took (same prompts, same batches of 50).

    .venv/bin/python benchmarks/gguf_agreement.py [--model mini-student] [--limit 500]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tourney.harness.agreement import compare_backends
from tourney.harness.tournament import MINI_TEST
from tourney.harness.questions import load_questions
from tourney.models.gguf_export import export_gguf
from tourney.models.registry import ALIASES, load_backend


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mini-student")
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    checkpoint = ALIASES.get(args.model, args.model).removeprefix("hf:")
    questions = load_questions(str(MINI_TEST), limit=args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        gguf = export_gguf(checkpoint, Path(tmp) / "model.gguf")
        hf = load_backend(f"hf:{checkpoint}", batch_size=50)
        gg = load_backend(f"gguf:{gguf}", n_threads=args.threads)
        t = time.perf_counter()
        result = compare_backends(hf, gg, questions)
        elapsed = time.perf_counter() - t
    print(f"model={args.model} questions={result.n} (llama.cpp n_threads={args.threads})")
    print(f"same final answer: {result.same_answer}/{result.n} = {result.answer_rate:.3f}")
    print(f"same text:         {result.same_text}/{result.n} = {result.text_rate:.3f}")
    print(f"both backends together: {elapsed:.1f} s")
    for d in result.disagreements:
        print("disagreement:", d)


if __name__ == "__main__":
    main()
