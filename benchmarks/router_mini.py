"""The miniature pair's routing figures, this code against another checkout's, on the same runs.

Issue 13 asks that nothing gets worse on the miniature pair (APGR; a share calibrated on dev
within 3 points on held-out). Given the dev and test runs of RESULTS.md's "Routing the distilled
student and the teacher" section (made once with `tourney eval`, commands there), this runs, for
each code base, as a user would:

    python -m tourney route calibrate --student DEV-S --teacher DEV-T --target share=0.3 --out R.json
    python -m tourney route eval --student TEST-S --teacher TEST-T --router R.json --out EVAL

for the logprob runs and for the five-sample runs without logprobs, and prints one table with
the held-out APGR, CPT(50%), AUROC and teacher share of both.

    .venv/bin/python benchmarks/router_mini.py --runs runs/route --baseline-root CHECKOUT
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from router_real import ROOT, cli

SETS = {"logprobs": "", "5 samples, no logprobs": "-k5"}


def measure(root: Path, runs: Path, suffix: str, work: Path, target: str) -> dict:
    router, out = work / "router.json", work / "eval"
    work.mkdir(parents=True, exist_ok=True)
    cli(["route", "calibrate", "--student", runs / f"dev-student{suffix}", "--teacher", runs / "dev-teacher",
         "--target", target, "--out", router], root)
    cli(["route", "eval", "--student", runs / f"test-student{suffix}", "--teacher", runs / "test-teacher",
         "--router", router, "--out", out], root)
    ev = json.loads((out / "route_eval.json").read_text())
    o = ev["reports"]["router"]["overall"]
    return {"apgr": o["apgr"], "cpt50": o["cpt50"], "auroc": o["auroc"],
            "share": ev["router"]["at_threshold"]["teacher_share"], "model": str(ev["router"]["model"])[:70]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", required=True, help="folder with dev-/test-student[-k5] and dev-/test-teacher runs")
    ap.add_argument("--baseline-root", required=True, help="checkout of the code to compare with")
    ap.add_argument("--target", default="share=0.3")
    ap.add_argument("--work", default=str(ROOT / "runs" / "router-mini"))
    ap.add_argument("--sets", nargs="*", default=list(SETS), help=f"which runs ({', '.join(SETS)})")
    args = ap.parse_args()
    runs, work = Path(args.runs).resolve(), Path(args.work).resolve()
    print(f"| runs | code | APGR | CPT(50%) | AUROC | teacher share at {args.target} | router |")
    print("|---|---|---|---|---|---|---|")
    for label, suffix in ((k, v) for k, v in SETS.items() if k in args.sets):
        for code, root in (("baseline", Path(args.baseline_root).resolve()), ("this", ROOT)):
            r = measure(root, runs, suffix, work / f"{code}{suffix}", args.target)
            print(f"| {label} | {code} | {r['apgr']:.3f} | {r['cpt50']:.3f} | {r['auroc']:.3f} | {r['share']:.3f} "
                  f"| {r['model']} |", flush=True)


if __name__ == "__main__":
    main()
