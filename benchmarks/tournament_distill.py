"""Soft labels against hard labels on the miniature tournament, one table from one command.

Per question type: student alone / hard labels / soft labels / hard labels + CoT / soft labels +
CoT / teacher, with Wilson 95% intervals; the share of the student-teacher gap each recipe
recovers, with a paired bootstrap 95% interval; the paired test of soft against hard at equal
budget (`tourney regress`); and the calibration (ECE) of each model's option probabilities.

    .venv/bin/python benchmarks/tournament_distill.py --work runs/tournament-distill

Every recipe starts from the shipped student and trains the same epochs, batch size, learning
rate and seed, on rows made from the same teacher answers to the same questions (disjoint from
dev/test); only what it learns from differs:

    hard       the teacher's answers (the option it named, "#### N" for arithmetic), CE
    soft       the same rows + the teacher's distribution over the options, alpha * T^2 * KL
    hard+cot   the teacher's whole outputs (two-hop reasons, worked solutions), CE
    soft+cot   the same + option KD
    soft+cot+tok  the same + token-level KD on the text (online teacher, --token-alpha)

--recipes picks which to train (each pair soft/hard differs only in the option term, so the
paired test compares them at an equal budget: same rows, epochs, steps and seed).

Writes WORK/table.md and WORK/table.json; re-running resumes every stage.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from distill_table import gap_recovered  # the paired bootstrap of the arithmetic table

from tourney.harness import knowledge, synthetic
from tourney.harness.rundir import read_results
from tourney.harness.tournament import ARITHMETIC_TYPES, KNOWLEDGE_TYPES, MINI_DEV, MINI_TEST, WORLD, write_jsonl

RECIPES = ["hard", "soft", "hard+cot", "soft+cot", "soft+cot+tok"]
TYPES = [*KNOWLEDGE_TYPES, *ARITHMETIC_TYPES]


def tourney(*args, check: bool = True) -> int:
    print("$ tourney", " ".join(map(str, args)), flush=True)
    return subprocess.run([sys.executable, "-m", "tourney", *map(str, args)], check=check).returncode


def key(row: dict) -> tuple:
    return row["question"], tuple(row.get("choices") or ())


def distill_questions(path: Path, per_fact: int, arithmetic: int) -> Path:
    """Questions about every fact of the world and every two-hop chain (per_fact each, fresh options
    and order), and fresh arithmetic; none identical to a dev or test question."""
    held = {key(json.loads(x)) for f in (MINI_DEV, MINI_TEST) for x in f.open()}
    world = knowledge.build_world(WORLD)
    rows = knowledge.covering_questions(world, per_fact=per_fact, seed=7, prefix="d")
    rows += synthetic.generate(synthetic.SynthConfig(n=arithmetic, seed=7))
    rows = [r for r in rows if key(r) not in held]
    for i, r in enumerate(rows):
        r["id"] = f"distill-{i:05d}"
    return write_jsonl(rows, path)


def sorted_test(path: Path) -> Path:
    """The test split, knowledge first: a batch then waits only for answers of its own kind."""
    rows = [json.loads(x) for x in MINI_TEST.open()]
    return write_jsonl(sorted(rows, key=lambda r: "choices" not in r), path)


def correctness(run: Path) -> dict[str, float]:
    return {r.id: float(r.correct) for r in read_results(run / "results.jsonl") if r.sample == 0}


def evaluate(spec: str, data: Path, out: Path) -> dict:
    tourney("eval", "--model", spec, "--data", data, "--max-tokens", 96, "--batch-size", 50, "--logprobs", 0,
            "--out", out)
    return json.loads((out / "report.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="runs/tournament-distill")
    ap.add_argument("--per-fact", type=int, default=2, help="distillation questions per fact and per chain")
    ap.add_argument("--arith", type=int, default=3000, help="arithmetic distillation questions")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--option-alpha", type=float, default=0.5)
    ap.add_argument("--option-temperature", type=float, default=2.0)
    ap.add_argument("--token-alpha", type=float, default=0.5, help="token-level KD weight of soft+cot+tok")
    ap.add_argument("--recipes", default="hard,soft,hard+cot,soft+cot",
                    help=f"comma-separated, of {','.join(RECIPES)}")
    ap.add_argument("--skip-test", action="store_true", help="train only; evaluate nothing")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    questions = distill_questions(work / "questions.jsonl", args.per_fact, args.arith)
    test = sorted_test(work / "test.jsonl")

    tourney("eval", "--model", "mini-teacher", "--data", questions, "--max-tokens", 96, "--batch-size", 50,
            "--logprobs", 0, "--out", work / "teacher-answers")
    tourney("distill", "labels", "--run", work / "teacher-answers", "--data", questions, "--no-cot",
            "--out", work / "rows.jsonl")
    tourney("distill", "labels", "--run", work / "teacher-answers", "--data", questions, "--cot",
            "--out", work / "rows-cot.jsonl")
    common = ["--student", "mini-student", "--epochs", args.epochs, "--lr", args.lr, "--batch-size", args.batch_size,
              "--seed", 0, "--option-temperature", args.option_temperature]
    plans = {
        "hard": ["--data", work / "rows.jsonl", "--option-alpha", 0],
        "soft": ["--data", work / "rows.jsonl", "--option-alpha", args.option_alpha],
        "hard+cot": ["--data", work / "rows-cot.jsonl", "--option-alpha", 0],
        "soft+cot": ["--data", work / "rows-cot.jsonl", "--option-alpha", args.option_alpha],
        "soft+cot+tok": ["--data", work / "rows-cot.jsonl", "--option-alpha", args.option_alpha,
                         "--teacher", "mini-teacher", "--token-alpha", args.token_alpha],
    }
    # The pair first: the shape of the tail is known before any recipe trains.
    reports = {"student": evaluate("mini-student", test, work / "eval" / "student"),
               "teacher": evaluate("mini-teacher", test, work / "eval" / "teacher")}
    recipes = [r for r in args.recipes.split(",") if r]
    unknown = sorted(set(recipes) - set(RECIPES))
    if unknown:
        raise SystemExit(f"unknown recipes {unknown}; choose from {RECIPES}")
    for name in recipes:
        out = work / "train" / name
        if not (out / "final" / "config.json").exists():
            tourney("distill", "options", *common, *plans[name], "--out", out)
    if args.skip_test:
        return
    for name in recipes:
        reports[name] = evaluate(f"hf:{work / 'train' / name / 'final'}", test, work / "eval" / name)
    for hard, soft, tag in (("hard", "soft", ""), ("hard+cot", "soft+cot", "-cot")):
        if hard in reports and soft in reports:
            tourney("regress", work / "eval" / hard, work / "eval" / soft, "--out", work / f"regress-soft-vs-hard{tag}.md",
                    "--json", work / f"regress-soft-vs-hard{tag}.json", check=False)
    write_table(work, reports)


def write_table(work: Path, reports: dict[str, dict]) -> None:
    right = {name: correctness(work / "eval" / name) for name in reports}
    knowledge_ids = {r.id for r in read_results(work / "eval" / "teacher" / "results.jsonl")
                     if r.type in KNOWLEDGE_TYPES}
    rows = []
    order = ["student", *[n for n in reports if n not in ("student", "teacher")], "teacher"]
    for name, rep in ((n, reports[n]) for n in order):
        gaps = {}
        if name not in ("student", "teacher"):
            for part, ids in (("overall", None), ("knowledge", knowledge_ids)):
                pick = (lambda d: d) if ids is None else (lambda d, ids=ids: {k: v for k, v in d.items() if k in ids})
                gaps[part] = gap_recovered(pick(right[name]), pick(right["student"]), pick(right["teacher"]))
        cal = rep.get("calibration", {}).get("overall")
        rows.append({"model": name, "overall": rep["overall"], "by_type": rep["by_type"], "gap": gaps,
                     "ece": None if cal is None else cal["ece"]})
    (work / "table.json").write_text(json.dumps(rows, indent=2) + "\n")
    head = "| model | " + " | ".join(TYPES) + " | overall [95% CI] | gap recovered [95% CI] | knowledge gap | ECE |"
    lines = [head, "|---" * (len(TYPES) + 5) + "|"]
    for row in rows:
        cells = []
        for t in TYPES:
            g = row["by_type"].get(t)
            cells.append("-" if g is None else f"{g['accuracy']:.3f} [{g['ci95'][0]:.2f}, {g['ci95'][1]:.2f}]")
        o = row["overall"]
        gap = lambda g: "-" if g is None else f"{g[0]:.2f} [{g[1]:.2f}, {g[2]:.2f}]"  # noqa: E731
        ece = "-" if row["ece"] is None else f"{row['ece']:.3f}"
        lines.append(f"| {row['model']} | " + " | ".join(cells) + f" | {o['accuracy']:.3f} [{o['ci95'][0]:.3f}, "
                     f"{o['ci95'][1]:.3f}] | {gap(row['gap'].get('overall'))} | {gap(row['gap'].get('knowledge'))} "
                     f"| {ece} |")
    (work / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
