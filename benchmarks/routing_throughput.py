"""Router cost and routed throughput on the miniature pair.

1. Decision overhead: computing the calibrated router's confidence and decision from a question's
   recorded student rows, per question (no model call).
2. Throughput: `tourney submit` over the same questions in speed (student only), accuracy
   (teacher only) and balanced (cascade) modes, one after another, one question at a time and in
   batches (`--batch-size`); questions per second and the ratios between modes.

    .venv/bin/python benchmarks/routing_throughput.py --router router.json --student-run runs/route/test-student \
        [--questions tourney/harness/data/mini/test.jsonl --limit 200]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tourney.routers.policies.calibrate import CalibratedRouter
from tourney.routers.evaluation.rundata import read_run_rows


def decision_overhead(router_path: str, student_run: str, repeats: int = 5) -> float:
    router = CalibratedRouter.load(router_path)
    rows = list(read_run_rows(student_run).values())
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for q in rows:
            router.to_teacher(router.confidence(q))
        best = min(best, (time.perf_counter() - t) / len(rows))
    return best


ASKED = ("id", "question", "type", "choices")  # what a tournament hands over: no answer, no solution


def questions_without_gold(lines: list[str]) -> str:
    """The question lines as a submission receives them: the gold answer and solution left out,
    a multiple-choice question's options kept (without them it would be asked as a bare question,
    a shorter prompt than the tournament's)."""
    return "".join(json.dumps({k: v for k, v in json.loads(x).items() if k in ASKED}) + "\n" for x in lines if x.strip())


def submit_seconds(router: str, questions: str, mode: str, limit: int, work: Path,
                   batch_size: int) -> tuple[float, float]:
    """(whole command, answering only): the second is the submission's own spent_s, which leaves
    out starting Python and loading the models."""
    data = work / "questions.jsonl"
    if not data.exists():
        data.write_text(questions_without_gold(Path(questions).read_text().splitlines()[:limit]))
    out = work / mode
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tourney", "submit", "--questions", str(data), "--router", router,
                    "--mode", mode, "--deadline-ms", "60000", "--concurrency", "1", "--batch-size", str(batch_size),
                    "--out", str(out)],
                   check=True, capture_output=True)
    wall = time.perf_counter() - t
    return wall, json.loads((out / "summary.json").read_text())["spent_s"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--router", required=True)
    ap.add_argument("--student-run", required=True)
    ap.add_argument("--questions", default="tourney/harness/data/mini/test.jsonl")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--batch-size", type=int, nargs="+", default=[1, 50],
                    help="`submit --batch-size` values to measure, each over all three modes")
    args = ap.parse_args()
    per_q = decision_overhead(args.router, args.student_run)
    print(f"router decision: {per_q * 1e6:.0f} us per question (best of 5 passes over {args.student_run})")
    for batch in args.batch_size:
        with tempfile.TemporaryDirectory() as tmp:
            secs = {m: submit_seconds(args.router, args.questions, m, args.limit, Path(tmp), batch)
                    for m in ("speed", "accuracy", "balanced")}
            summary = json.loads((Path(tmp) / "balanced" / "summary.json").read_text())
        print(f"--batch-size {batch}:")
        for mode, (wall, spent) in secs.items():
            print(f"  {mode:9s} whole command {wall:6.1f} s; answering {spent:6.2f} s = {args.limit / spent:6.1f} questions/s")
        ans = {m: v[1] for m, v in secs.items()}
        print(f"  answering time ratios: balanced/accuracy {ans['balanced'] / ans['accuracy']:.2f}; "
              f"balanced/speed {ans['balanced'] / ans['speed']:.2f}")
        print("  balanced summary:", json.dumps(summary))


if __name__ == "__main__":
    main()
