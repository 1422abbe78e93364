"""Harness overhead: `run_eval` (prompting, scoring, writing results and reports) versus calling the
backend directly on the same prompts with the same batching. Runs alternate to share noise.

    .venv/bin/python benchmarks/harness_overhead.py [--model mini-student] [--limit 200] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from tourney.cli.demo import DEMO_MAX_TOKENS
from tourney.harness.tournament import MINI_TEST
from tourney.harness.pipeline import Prompting
from tourney.harness.questions import load_questions
from tourney.harness.runner import EvalConfig, run_eval
from tourney.models.registry import load_backend
from tourney.models.types import GenConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mini-student")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    questions = load_questions(str(MINI_TEST), limit=args.limit)
    backend = load_backend(args.model, batch_size=args.batch)
    prompts, stop = Prompting().render(questions)  # each question's template, as run_eval renders them
    gen = GenConfig(max_tokens=DEMO_MAX_TOKENS, stop=stop)
    direct, harness = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        for i in range(0, len(prompts), args.batch):
            backend.generate(prompts[i : i + args.batch], gen)
        direct.append(time.perf_counter() - t)
        with tempfile.TemporaryDirectory() as out:
            cfg = EvalConfig(model=args.model, data=str(MINI_TEST), out=out, limit=args.limit,
                             max_tokens=DEMO_MAX_TOKENS, model_args={"batch_size": args.batch})
            t = time.perf_counter()
            run_eval(cfg, backend, questions=questions)
            harness.append(time.perf_counter() - t)
    d, h = statistics.median(direct), statistics.median(harness)
    print(f"model={args.model} questions={len(questions)} batch={args.batch} repeats={args.repeats}")
    print(f"direct backend.generate: median {d:.3f} s   runs {[round(x, 3) for x in direct]}")
    print(f"harness run_eval:        median {h:.3f} s   runs {[round(x, 3) for x in harness]}")
    print(f"overhead ratio harness/direct = {h / d:.3f}  (+{(h - d) / len(questions) * 1000:.2f} ms per question)")


if __name__ == "__main__":
    main()
