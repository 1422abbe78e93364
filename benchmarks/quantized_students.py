"""Quantized students on the miniature tournament: what llama.cpp's q8_0 / q5_0 / q4_0 cost per
question type, and what quantization-aware distillation gets back of the q4_0 drop.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/quantized_students.py --work runs/quantized-students

Every file is written by `tourney export-gguf --dtype ...` (llama.cpp's own quantizer) and every
model is run by llama.cpp in process (gguf:, one thread), greedy, on the mixed test split; the
same questions for all, so each quantized file is compared with its own f32 file by the paired
test of `tourney regress`.

Quantization-aware distillation (`distill train --method kd --qat q4_0`), data-free in the
LLM-QAT manner: mini-distilled answers fresh questions (none from dev or test; the questions of
benchmarks/tournament_distill.py), its whole outputs become the rows, and the student, starting
from mini-distilled's own weights and fake-quantized to q4_0 in every forward pass, is distilled
from mini-distilled at full precision (alpha 1: the teacher's distribution only). The control
(`--control`, on by default) trains the same rows, epochs and seed without --qat and is then
quantized after training, so "QAT" is not credited with what the extra training alone does.

Writes WORK/table.md and WORK/table.json; re-running resumes every stage.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from distill_table import gap_recovered  # paired bootstrap of a share of a gap
from tournament_distill import TYPES, correctness, distill_questions, sorted_test

MODELS = {"distilled": "mini-distilled", "teacher": "mini-teacher"}
PTQ = ("f32", "q8_0", "q5_0", "q4_0")


def tourney(*args, check: bool = True) -> int:
    print("$ tourney", " ".join(map(str, args)), flush=True)
    return subprocess.run([sys.executable, "-m", "tourney", *map(str, args)], check=check).returncode


def export(checkpoint: str, out: Path, dtype: str) -> Path:
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tourney("export-gguf", checkpoint, out, "--dtype", dtype)
    return out


def evaluate(gguf: Path, test: Path, out: Path, limit: int | None) -> dict:
    if not (out / "report.json").exists():
        tourney("eval", "--model", f"gguf:{gguf}", "--model-arg", "n_threads=1", "--data", test,
                "--max-tokens", 96, "--out", out, *(["--limit", limit] if limit else []))
    return json.loads((out / "report.json").read_text())


def regress(work: Path, baseline: str, candidate: str) -> dict:
    out = work / "regress" / f"{candidate}-vs-{baseline}.json"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tourney("regress", work / "eval" / baseline, work / "eval" / candidate, "--json", out,
                "--out", out.with_suffix(".md"), check=False)  # exit 1 flags a regression: a result
    return json.loads(out.read_text())


def train(work: Path, rows: Path, name: str, args, qat: bool) -> Path:
    out = work / "train" / name
    if not (out / "final" / "config.json").exists():
        tourney("distill", "train", "--student", "mini-distilled", "--teacher", "mini-distilled", "--data", rows,
                "--method", "kd", "--alpha", 1.0, "--epochs", args.epochs, "--lr", args.lr,
                "--batch-size", args.batch_size, "--max-len", 256, "--seed", args.seed, "--out", out,
                *(["--qat", "q4_0"] if qat else []))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="runs/quantized-students")
    ap.add_argument("--limit", type=int, default=None, help="first N test questions only (default: all 6,500)")
    ap.add_argument("--per-fact", type=int, default=2, help="training questions per fact and per chain")
    ap.add_argument("--arith", type=int, default=3000, help="arithmetic training questions")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0, help="training seed (data order); another seed writes table-sN.md")
    ap.add_argument("--no-control", dest="control", action="store_false",
                    help="skip the same training without --qat (quantized after training)")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    test = sorted_test(work / "test.jsonl")

    files: dict[str, Path] = {}
    for model, alias in MODELS.items():
        for dtype in PTQ:
            files[f"{model}-{dtype}"] = export(alias, work / "gguf" / f"{model}-{dtype}.gguf", dtype)

    questions = distill_questions(work / "questions.jsonl", args.per_fact, args.arith)
    answers = work / "distilled-answers"
    if not (answers / "report.json").exists():
        tourney("eval", "--model", "mini-distilled", "--data", questions, "--max-tokens", 96, "--batch-size", 50,
                "--logprobs", 0, "--out", answers)
    rows = work / "rows.jsonl"
    if not rows.exists():
        tourney("distill", "labels", "--run", answers, "--data", questions, "--cot", "--out", rows)
    sfx = f"-s{args.seed}" if args.seed else ""
    qat, qat_name, ctl_name = train(work, rows, f"qat-q4_0{sfx}", args, qat=True), f"q4_0-qat{sfx}", f"q4_0-kd-ptq{sfx}"
    files[f"distilled-{qat_name}"] = qat / "final-q4_0.gguf"
    if args.control:
        control = train(work, rows, f"kd-f32{sfx}", args, qat=False)
        files[f"distilled-{ctl_name}"] = export(str(control / "final"), work / "gguf" / f"distilled-kd-q4_0{sfx}.gguf",
                                                "q4_0")

    reports = {name: evaluate(path, test, work / "eval" / name, args.limit) for name, path in files.items()}
    tests = {}
    for name in reports:
        model, _, kind = name.partition("-")
        if kind != "f32":
            tests[name] = regress(work, f"{model}-f32", name)
    tests[f"distilled-{qat_name}-vs-ptq"] = regress(work, "distilled-q4_0", f"distilled-{qat_name}")
    right = {name: correctness(work / "eval" / name) for name in reports}
    recovered = gap_recovered(right[f"distilled-{qat_name}"], right["distilled-q4_0"], right["distilled-f32"])
    if args.control:
        tests[f"distilled-{qat_name}-vs-kd-ptq"] = regress(work, f"distilled-{ctl_name}", f"distilled-{qat_name}")
    write_table(work, reports, files, tests, recovered, stem=f"table{sfx}")


def _cell(g: dict | None) -> str:
    return "-" if g is None else f"{g['accuracy']:.3f} [{g['ci95'][0]:.2f}, {g['ci95'][1]:.2f}]"


def write_table(work: Path, reports: dict, files: dict, tests: dict, recovered: tuple, stem: str = "table") -> None:
    lines = ["| file | " + " | ".join(TYPES) + " | overall [95% CI] | MiB | tokens/s | p50 latency ms |",
             "|---" * (len(TYPES) + 5) + "|"]
    for name, rep in reports.items():
        o = rep["overall"]
        lines.append(f"| {name} | " + " | ".join(_cell(rep["by_type"].get(t)) for t in TYPES)
                     + f" | {_cell(o)} | {files[name].stat().st_size / 2**20:.3f} | {o['tokens_per_s']:.0f} | "
                       f"{1000 * o['latency_p50_s']:.2f} |")
    lines += ["", "| paired test (`tourney regress`) | baseline | candidate | delta [95% CI] | b/c | p | verdict |",
              "|---|---|---|---|---|---|---|"]
    for name, t in tests.items():
        o = t["overall"]
        verdict = "worse" if o["significantly_worse"] else ("better" if o["delta"] > 0 and o["ci"][0] > 0 else "ok")
        lines.append(f"| {name} | {o['baseline_accuracy']:.4f} | {o['candidate_accuracy']:.4f} | "
                     f"{o['delta']:+.4f} [{o['ci'][0]:+.4f}, {o['ci'][1]:+.4f}] | "
                     f"{o['b']}/{o['c']} | {o['p_value']:.3g} | {verdict} |")
    point, low, high = recovered
    lines += ["", f"Share of the q4_0 drop (distilled f32 -> q4_0) that quantization-aware distillation recovers: "
              f"{point:.2f} [{low:.2f}, {high:.2f}] (paired bootstrap 95%)."]
    (work / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (work / f"{stem}.json").write_text(json.dumps({"reports": {k: v["overall"] for k, v in reports.items()},
                                                 "by_type": {k: v["by_type"] for k, v in reports.items()},
                                                 "sizes": {k: files[k].stat().st_size for k in files},
                                                 "tests": tests, "recovered": recovered}, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
