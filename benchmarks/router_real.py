"""Routing on real models' recorded outputs, through the command line, cross-validated on dev.

The data: ../shared/data/gsm8k-recorded/dev.jsonl (655 GSM8K test problems with four real systems'
solutions; README beside it). Student = GPT-3 6B fine-tuned (its greedy answer is submitted) with
the 6B verifier-selected answer as a second sample; teacher = the 175B verifier-selected answer.
No logprobs and no latencies were recorded: routers see the texts only, and latency figures do
not exist for this data (they are measured on the miniature pair instead).

For each of `--repeats` x `--folds` folds (seeded), everything runs as a user would run it:

    python -m tourney eval --model replay:student.jsonl --data TRAIN.jsonl --samples 2 --out ...
    python -m tourney eval --model replay:teacher.jsonl --data TRAIN.jsonl --out ...   (and TEST)
    python -m tourney route calibrate --student TRAIN-S --teacher TRAIN-T --target share=0.5 [ROUTER OPTIONS] --out R.json
    python -m tourney route eval --student TEST-S --teacher TEST-T --router R.json --out ...

so the choice of signals, the policy, per-type thresholds and all fitting happen inside the
training folds; the test fold is only evaluated. Reported: mean and standard deviation over the
folds of APGR, CPT(50%), AUROC and the teacher share the share=0.5 threshold gives on the test
fold; random and oracle from the same folds.

    .venv/bin/python benchmarks/router_real.py [--folds 2 --repeats 3] [--baseline-root CHECKOUT]

`--baseline-root` runs the "current router" row with the code of another checkout (e.g. the
commit before the expected-gain router), which is how today's figures are reproduced; without it
that row is this code's confidence-only choice (`--signals confidence --policy cascade`).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "gsm8k-recorded" / "dev.jsonl"
STUDENT, SECOND, TEACHER = "6b_finetuning", "6b_verification", "175b_verification"
ROUTERS = {  # row -> route calibrate options
    "current router (confidence only)": ["--signals", "confidence", "--policy", "cascade", "--per-type", "off"],
    "self-consistency alone": ["--signals", "self_consistency", "--policy", "cascade", "--per-type", "off"],
    "gain-aware": ["--signals", "gain", "--policy", "cascade", "--per-type", "off"],
    "pre-routing (question only)": ["--policy", "pre-routing", "--per-type", "off"],
    "two-stage": ["--policy", "two-stage", "--per-type", "off"],
    "auto (the default)": [],
}


def cli(args: list[str], root: Path = ROOT) -> None:
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "tourney", *map(str, args)], cwd=root, env=env,
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"failed: tourney {' '.join(map(str, args))}\n{res.stdout[-2000:]}{res.stderr[-2000:]}")


def build(work: Path) -> list[dict]:
    """Questions, and the replay files of the student (two samples) and the teacher."""
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    with (work / "student.jsonl").open("w") as s, (work / "teacher.jsonl").open("w") as t:
        for i, r in enumerate(rows):
            sy = r["systems"]
            s.write(json.dumps({"id": f"d{i:04d}", "outputs": [sy[STUDENT]["output"], sy[SECOND]["output"]]}) + "\n")
            t.write(json.dumps({"id": f"d{i:04d}", "output": sy[TEACHER]["output"]}) + "\n")
    return [{"id": f"d{i:04d}", "question": r["question"], "answer": r["answer"]} for i, r in enumerate(rows)]


def runs_for(work: Path, fold: Path, name: str, questions: list[dict]) -> tuple[Path, Path]:
    """Evaluate the recorded student and teacher on these questions through `tourney eval`."""
    data = fold / f"{name}.jsonl"
    data.write_text("".join(json.dumps(q) + "\n" for q in questions), encoding="utf-8")
    s, t = fold / f"{name}-student", fold / f"{name}-teacher"
    cli(["eval", "--model", f"replay:{work / 'student.jsonl'}", "--data", data, "--samples", 2, "--out", s])
    cli(["eval", "--model", f"replay:{work / 'teacher.jsonl'}", "--data", data, "--out", t])
    return s, t


def folds(n: int, k: int, repeats: int, seed: int):
    from sklearn.model_selection import RepeatedKFold

    for i, (train, test) in enumerate(RepeatedKFold(n_splits=k, n_repeats=repeats, random_state=seed).split(np.zeros(n))):
        yield i, sorted(train.tolist()), sorted(test.tolist())


def evaluate(work: Path, name: str, options: list[str], train: tuple[Path, Path], test: tuple[Path, Path],
             root: Path, target: str) -> dict:
    router = work / f"{name}.json"
    cli(["route", "calibrate", "--student", train[0], "--teacher", train[1], "--target", target, *options,
         "--out", router], root)
    out = work / f"{name}-eval"
    cli(["route", "eval", "--student", test[0], "--teacher", test[1], "--router", router, "--out", out], root)
    ev = json.loads((out / "route_eval.json").read_text())
    o = ev["reports"]["router"]["overall"]
    saved = json.loads(router.read_text())
    sel = saved.get("data", {}).get("selection") or {}
    return {"apgr": o["apgr"], "cpt50": o["cpt50"], "auroc": o["auroc"], "random": o["random_apgr"],
            "oracle": o["oracle_apgr"], "oracle_cpt50": o["oracle_cpt50"],
            "share": ev["router"]["at_threshold"]["teacher_share"], "accuracy": ev["router"]["at_threshold"]["accuracy"],
            "chosen": f"{sel.get('chosen', saved.get('model') if isinstance(saved.get('model'), str) else '?')}"
                      f" | {sel.get('policy', 'cascade')} | per-type {sel.get('per_type_min_questions')}"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", default="share=0.5")
    ap.add_argument("--work", default=str(ROOT / "runs" / "router-real"))
    ap.add_argument("--baseline-root", default=None, help="checkout whose code runs the 'current router' row")
    ap.add_argument("--only", nargs="*", default=None, help="rows to run (names as printed)")
    args = ap.parse_args()
    if not DATA.is_file():
        raise SystemExit(f"{DATA} not found (the recorded GSM8K outputs live in ../shared)")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    questions = build(work)
    rows = {k: v for k, v in ROUTERS.items() if args.only is None or k in args.only}
    results: dict[str, list[dict]] = {k: [] for k in rows}
    t0 = time.time()
    for i, train, test in folds(len(questions), args.folds, args.repeats, args.seed):
        fw = work / f"fold{i}"
        fw.mkdir(exist_ok=True)
        tr = runs_for(work, fw, "train", [questions[j] for j in train])
        te = runs_for(work, fw, "test", [questions[j] for j in test])
        for name, options in rows.items():
            root, opts = ROOT, options
            if name.startswith("current") and args.baseline_root:
                root, opts = Path(args.baseline_root), []  # that code's own default: --signals auto
            tag = name.split(" ")[0].replace("-", "_")
            results[name].append(evaluate(fw, tag, opts, tr, te, root, args.target))
            r = results[name][-1]
            print(f"fold {i} ({len(train)}/{len(test)}) {name}: APGR {r['apgr']:.3f} CPT50 {r['cpt50']:.3f} "
                  f"share {r['share']:.3f} [{r['chosen']}] ({time.time() - t0:.0f} s)", flush=True)
    target = float(args.target.split("=")[1])
    print(f"\n{args.repeats} x {args.folds}-fold CV over {len(questions)} dev questions (mean +- sd over folds):")
    print(f"| router | APGR | CPT(50%) | AUROC | teacher share at {args.target} | max share error |")
    print("|---|---|---|---|---|---|")

    def ms(xs):
        a = np.array([np.nan if x is None else x for x in xs], dtype=float)
        return f"{np.nanmean(a):.3f} +- {np.nanstd(a):.3f}"
    any_rows = next(iter(results.values()))
    for name, rs in results.items():
        err = max(abs(r["share"] - target) for r in rs)
        label = "current router (--baseline-root's code, its default --signals auto)" if (
            name.startswith("current") and args.baseline_root) else name
        print(f"| {label} | {ms([r['apgr'] for r in rs])} | {ms([r['cpt50'] for r in rs])} | "
              f"{ms([r['auroc'] for r in rs])} | {ms([r['share'] for r in rs])} | {err:.3f} |")
    print(f"| random | {ms([r['random'] for r in any_rows])} | 0.500 | 0.500 | - | - |")
    print(f"| oracle | {ms([r['oracle'] for r in any_rows])} | {ms([r['oracle_cpt50'] for r in any_rows])} | - | - | - |")
    (work / "results.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
