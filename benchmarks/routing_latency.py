"""Latency at equal accuracy on the miniature pair, through `tourney submit` (issue 13).

Student only, teacher only, the balanced cascade and the balanced two-stage policy, each router
calibrated on dev runs for 99% of the teacher's accuracy (`route calibrate --target
accuracy=0.99`, `--policy cascade` and `--policy two-stage`). Every mode answers the same
questions (with their gold answers, so accuracy is scored here from the submission log), one
after another, one question at a time and in batches. Reported per mode: accuracy, the share
escalated, the mean / p50 / p95 of each question's total latency (from the question's start to
its settled answer, as submit logs it; in-process models time each sequence at the step that
ended it) and the answering time of the whole submission (`spent_s`: without starting Python and
loading the models). With `--repeats R` every mode runs R times, round-robin in an order that
rotates by one mode each round (so no mode always goes first, next to whatever else the shared
machine is doing); the timing figures are then the median over the R rounds, [min, max] beside
the mean latency and the answering time (accuracy and the share escalated are greedy and the same
in every round).

    .venv/bin/python benchmarks/routing_latency.py --cascade-router runs/lat/cascade.json \\
        --two-stage-router runs/lat/two-stage.json [--questions tourney/harness/data/mini/test.jsonl --limit 200]
        [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tourney.harness.questions import load_questions  # noqa: E402
from tourney.harness.scoring import score  # noqa: E402


def submit(router: str, questions: Path, mode: str, batch: int, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "tourney", "submit", "--questions", str(questions), "--router", router,
                    "--mode", mode, "--deadline-ms", "60000", "--concurrency", "1", "--batch-size", str(batch),
                    "--out", str(out)], check=True, capture_output=True, cwd=ROOT, env=env)
    return json.loads((out / "summary.json").read_text())


def figures(out: Path, summary: dict, gold: dict) -> dict:
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    lat = np.array([r["total_latency_s"] for r in rows])
    right = [score(gold[r["id"]], r["output"] or r["answer"]).correct for r in rows]  # a fallback stands as `answer`
    return {"accuracy": float(np.mean(right)), "escalated": summary["escalated_share"],
            "mean": float(lat.mean()), "p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
            "spent": summary["spent_s"]}


def rounds(names: list[str], repeats: int) -> list[list[str]]:
    """The order the modes run in, round by round: each round starts one mode later."""
    return [names[r % len(names):] + names[: r % len(names)] for r in range(repeats)]


def over_rounds(per_round: list[dict]) -> dict:
    """One mode's figures over its rounds: the median of each timing, min and max of the mean
    latency and the answering time; accuracy and escalated share from the first round."""
    med = {k: float(np.median([f[k] for f in per_round])) for k in ("mean", "p50", "p95", "spent")}
    return {**med, "accuracy": per_round[0]["accuracy"], "escalated": per_round[0]["escalated"],
            "mean_range": (min(f["mean"] for f in per_round), max(f["mean"] for f in per_round)),
            "spent_range": (min(f["spent"] for f in per_round), max(f["spent"] for f in per_round))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cascade-router", required=True)
    ap.add_argument("--two-stage-router", required=True)
    ap.add_argument("--questions", default=str(ROOT / "tourney/harness/data/mini/test.jsonl"))
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--batch-size", type=int, nargs="+", default=[1, 50])
    ap.add_argument("--repeats", type=int, default=1, help="rounds over all modes (medians reported)")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    qs = list(load_questions(args.questions))[: args.limit]
    gold = {q.id: q for q in qs}
    runs = {"student only (speed)": ("speed", args.cascade_router),
            "teacher only (accuracy)": ("accuracy", args.cascade_router),
            "cascade (balanced)": ("balanced", args.cascade_router),
            "two-stage (balanced)": ("balanced", args.two_stage_router)}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "questions.jsonl"
        data.write_text("".join(json.dumps({"id": q.id, "question": q.question, "answer": q.answer, "type": q.type,
                                            **({"choices": list(q.choices)} if q.choices else {})}) + "\n" for q in qs))
        for batch in args.batch_size:
            done: dict[str, list[dict]] = {name: [] for name in runs}
            for r, order in enumerate(rounds(list(runs), args.repeats)):
                for name in order:
                    mode, router = runs[name]
                    out = Path(tmp) / f"{mode}-{Path(router).stem}-{batch}-{r}"  # a fresh log: submit resumes one
                    done[name].append(figures(out, submit(router, data, mode, batch, out), gold))
            print(f"\n--batch-size {batch}, {len(qs)} questions, {args.repeats} round(s):")
            print("| mode | accuracy | escalated | latency mean | p50 | p95 | answering (spent_s) |")
            print("|---|---|---|---|---|---|---|")
            for name in runs:
                f = over_rounds(done[name])
                spread = (f" [{f['mean_range'][0]:.3f}, {f['mean_range'][1]:.3f}]" if args.repeats > 1 else "",
                          f" [{f['spent_range'][0]:.2f}, {f['spent_range'][1]:.2f}]" if args.repeats > 1 else "")
                print(f"| {name} | {f['accuracy']:.3f} | {f['escalated']:.3f} | {f['mean']:.3f} s{spread[0]} "
                      f"| {f['p50']:.3f} s | {f['p95']:.3f} s | {f['spent']:.2f} s{spread[1]} |", flush=True)


if __name__ == "__main__":
    main()
