"""Routing real multiple-choice tournaments: MMLU-Pro recorded outputs of two real pairs, held out.

The data: ../shared/data/mmlupro-recorded/ (the dev half of MMLU-Pro with Qwen1.5-7B/72B-Chat and
Mistral-7B/Mixtral-8x7B outputs; README beside it). Each pair's questions are split 50/50 by a
hash of the question id (sha1's last hex digit even: calibration half; odd: held out), and
everything runs as a user runs it:

    tourney eval --model replay:PAIR/student.jsonl --data CAL.jsonl --out CAL-S   (and teacher, and HELD)
    tourney route calibrate --student CAL-S --teacher CAL-T --target share=0.5 [OPTIONS] --out R.json
    tourney route eval --student HELD-S --teacher HELD-T --router R.json --out E

Rows: this code's `--signals auto` (the default), the previous router (`--baseline-root`: another
checkout's code, its own default), a plain logistic regression over hashed question and answer
n-grams plus the type (P(student right); in-process on the same runs: routers.fitting.linear with
routers.features.documents without the chosen option, as it was first measured; no dense signal,
no unread rule), random and the oracle. Reported: held-out APGR, CPT(50%), the teacher share the
share=0.5 threshold gives, and per type the held-out APGR and the teacher share at that threshold
(each type's questions escalated, the unread rule and the policy's routes included; not for the
previous row, whose ROUTER.json this code may not read).

    OMP_NUM_THREADS=1 python benchmarks/router_mcq.py [--pairs qwen15 mistral] [--baseline-root DIR]
    [--limit N] [--rows auto previous plain]
    OMP_NUM_THREADS=1 python benchmarks/router_mcq.py --prior-study 200 1000 99999 \
        [--prior-runs-cover all|cal] [--prior-covers new|seen]   (learning across pairs)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "mmlupro-recorded"


def cli(args: list, root: Path = ROOT) -> None:
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "tourney", *map(str, args)], cwd=root, env=env,
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"failed: tourney {' '.join(map(str, args))}\n{res.stdout[-2000:]}{res.stderr[-2000:]}")


def held_out(qid: str) -> bool:
    return int(hashlib.sha1(qid.encode()).hexdigest()[-1], 16) % 2 == 1


def halves(limit: int | None) -> tuple[list[dict], list[dict]]:
    qs = [json.loads(x) for x in (DATA / "questions.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    qs = qs[:limit] if limit else qs
    return [q for q in qs if not held_out(q["id"])], [q for q in qs if held_out(q["id"])]


def runs(work: Path, pair: str, name: str, questions: list[dict]) -> tuple[Path, Path]:
    data = work / f"{name}.jsonl"
    data.write_text("".join(json.dumps(q) + "\n" for q in questions), encoding="utf-8")
    out = []
    for role in ("student", "teacher"):
        run = work / f"{pair}-{name}-{role}"
        if not (run / "results.jsonl").is_file():
            cli(["eval", "--model", f"replay:{DATA / pair / f'{role}.jsonl'}", "--data", data, "--out", run])
        out.append(run)
    return out[0], out[1]


def share_by_type(router: Path, held: tuple[Path, Path]) -> dict[str, float]:
    """Per type, the share of its held-out questions the router sends to the teacher at its threshold."""
    sys.path.insert(0, str(ROOT))
    from router_share_by_type import by_type, escalated
    from tourney.routers.evaluation.rundata import routing_data
    from tourney.routers.policies.calibrate import CalibratedRouter

    data = routing_data(*held)
    return {k: rate for k, (_, rate) in by_type(data.types, escalated(data, CalibratedRouter.load(router))).items()}


def route_eval(router: Path, held: tuple[Path, Path], out: Path, root: Path = ROOT) -> dict:
    cli(["route", "eval", "--student", held[0], "--teacher", held[1], "--router", router, "--out", out], root)
    ev = json.loads((out / "route_eval.json").read_text())
    rep = ev["reports"]["router"]
    o = rep["overall"]
    saved = json.loads(router.read_text())
    sel = (saved.get("data") or {}).get("selection") or {}
    chosen = sel.get("candidates") or []
    return {"apgr": o["apgr"], "cpt50": o["cpt50"], "random": o["random_apgr"], "oracle": o["oracle_apgr"],
            "oracle_cpt50": o["oracle_cpt50"], "share": ev["router"]["at_threshold"]["teacher_share"],
            "by_type": {k: v["apgr"] for k, v in rep["by_type"].items()},
            "chosen": f"{sel.get('chosen')} | {sel.get('policy')} | per-type {sel.get('per_type_min_questions')}",
            "cv_apgr": next((c["cv_apgr"] for c in chosen if c["name"] == sel.get("chosen")), None),
            "nested_apgr": sel.get("nested_apgr"),
            "share_by_type": share_by_type(router, held) if root == ROOT else {}}


def plain_logistic(cal: tuple[Path, Path], held: tuple[Path, Path]) -> dict:
    """RouteLLM-style baseline: P(student right) from hashed type+question+answer n-grams alone."""
    sys.path.insert(0, str(ROOT))
    from tourney.routers.fitting.linear import LinearModel
    from tourney.routers.evaluation.metrics import cpt, routing_curve
    from tourney.routers.evaluation.rundata import routing_data
    from tourney.routers.fitting.select import routing_scores

    dev, test = routing_data(*cal), routing_data(*held)
    model = LinearModel.fit([{}] * dev.n, dev.student_correct, [], texts=dev.plain_documents)
    conf = model.predict([{}] * test.n, test.plain_documents)
    s, t = test.student_correct, test.teacher_correct
    a, _ = routing_scores(test, conf)
    order = np.argsort(conf, kind="stable")
    sent = conf < np.quantile(model.predict([{}] * dev.n, dev.plain_documents), 0.5)
    by_type, shares = {}, {}
    for k in sorted(set(test.types)):
        i = np.array([x == k for x in test.types])
        by_type[k] = routing_scores(test.subset(np.flatnonzero(i)), conf[i])[0]
        shares[k] = float(np.mean(sent[i]))
    del order
    return {"apgr": a, "cpt50": cpt(routing_curve(conf, s, t), float(s.mean()), float(t.mean()), 0.5),
            "share": float(np.mean(sent)), "by_type": by_type, "share_by_type": shares,
            "chosen": "plain logistic regression"}


def prior_study(work: Path, pairs: list[str], sizes: list[int], target: str, cal_q: list[dict],
                held_q: list[dict], covers: str = "all", calibrate_as: str = "new") -> dict:
    """Learning across pairs: each pair calibrated on its first N calibration questions, with and
    without `--prior-runs`, evaluated on its held-out half. The prior runs are the other pair's
    student and teacher runs on every question (`covers` all: another team's recorded outcomes on
    the same public benchmark) or on the calibration half only (`covers` cal: a team's older pair
    run on its dev questions, routing new ones: a tournament); `calibrate_as` is what
    `route calibrate --prior-covers` is told (new: out-of-fold dev values; seen: recalled ones)."""
    out: dict = {}
    halves_ = ("cal", "held") if covers == "all" else ("cal",)
    for pair in pairs:
        other = next(p for p in pairs if p != pair)
        prior = [work / f"{other}-{half}-{role}" for half in halves_ for role in ("student", "teacher")]
        for half, qs in (("cal", cal_q), ("held", held_q)):
            runs(work, other, half, qs)
        held = runs(work, pair, "held", held_q)
        for n in sizes:
            sub = runs(work, pair, f"cal{n}", cal_q[:n]) if n < len(cal_q) else runs(work, pair, "cal", cal_q)
            for with_prior in (False, True):
                name = f"{pair}-n{n}-{f'prior-{covers}-{calibrate_as}' if with_prior else 'plain'}"
                router = work / f"{name}.json"
                extra = ([a for r in prior for a in ("--prior-runs", r)] + ["--prior-covers", calibrate_as]
                         if with_prior else [])
                # always calibrated anew: a router left in --work by an earlier run may be older code's
                cli(["route", "calibrate", "--student", sub[0], "--teacher", sub[1], "--target", target, *extra,
                     "--out", router])
                r = route_eval(router, held, work / f"{name}-eval")
                out[name] = r
                print(f"{pair} n={min(n, len(cal_q))} {'with' if with_prior else 'without'} prior: held-out APGR "
                      f"{r['apgr']:.3f} share {r['share']:.3f} [{r['chosen']}]", flush=True)
    print("\n| pair (prior from) | dev questions | held-out APGR without prior | with prior | teacher share with prior |")
    print("|---|---|---|---|---|")
    for pair in pairs:
        other = next(p for p in pairs if p != pair)
        for n in sizes:
            a, b = out[f"{pair}-n{n}-plain"], out[f"{pair}-n{n}-prior-{covers}-{calibrate_as}"]
            print(f"| {pair} ({other}) | {min(n, len(cal_q))} | {a['apgr']:.3f} | {b['apgr']:.3f} | {b['share']:.3f} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", nargs="*", default=["qwen15", "mistral"])
    ap.add_argument("--rows", nargs="*", default=["auto", "previous", "plain"])
    ap.add_argument("--baseline-root", default=None, help="checkout whose code runs the 'previous' row")
    ap.add_argument("--limit", type=int, default=None, help="first N questions only (a quick run)")
    ap.add_argument("--target", default="share=0.5")
    ap.add_argument("--work", default=str(ROOT / "runs" / "router-mcq"))
    ap.add_argument("--prior-study", nargs="*", type=int, default=None, metavar="N",
                    help="instead: calibrate on the first N questions with and without --prior-runs (the other pair)")
    ap.add_argument("--prior-runs-cover", choices=["all", "cal"], default="all",
                    help="the prior study's other-pair runs cover every question, or the calibration half only")
    ap.add_argument("--prior-covers", choices=["new", "seen"], default="new",
                    help="what the prior study tells route calibrate --prior-covers")
    args = ap.parse_args()
    if not (DATA / "questions.jsonl").is_file():
        raise SystemExit(f"{DATA} not found (the recorded MMLU-Pro outputs live in ../shared)")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cal_q, held_q = halves(args.limit)
    if args.prior_study is not None:
        res = prior_study(work, args.pairs, args.prior_study or [200, 1000, len(cal_q)], args.target, cal_q, held_q,
                          args.prior_runs_cover, args.prior_covers)
        (work / f"prior_results_{args.prior_runs_cover}_{args.prior_covers}.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
        return
    results: dict[str, dict[str, dict]] = {}
    t0 = time.time()
    for pair in args.pairs:
        cal, held = runs(work, pair, "cal", cal_q), runs(work, pair, "held", held_q)
        results[pair] = {}
        for row in args.rows:
            if row == "plain":
                r = plain_logistic(cal, held)
            elif row == "previous" and not args.baseline_root:
                continue
            else:
                root = Path(args.baseline_root) if row == "previous" else ROOT
                router = work / f"{pair}-{row}.json"
                cli(["route", "calibrate", "--student", cal[0], "--teacher", cal[1], "--target", args.target,
                     "--out", router], root)
                r = route_eval(router, held, work / f"{pair}-{row}-eval", root)
            results[pair][row] = r
            print(f"{pair} {row}: held-out APGR {r['apgr']:.3f} CPT50 {r['cpt50']:.3f} share {r['share']:.3f} "
                  f"[{r['chosen']}] ({time.time() - t0:.0f} s)", flush=True)
    print(f"\n{len(cal_q)} calibration / {len(held_q)} held-out questions (split by sha1 of the id)")
    print("| pair | router | held-out APGR | CPT(50%) | teacher share at share=0.5 |")
    print("|---|---|---|---|---|")
    for pair, rows in results.items():
        any_row = next((r for r in rows.values() if "oracle" in r), None)
        for name, r in rows.items():
            print(f"| {pair} | {name} | {r['apgr']:.3f} | {r['cpt50']:.3f} | {r['share']:.3f} |")
        if any_row:
            print(f"| {pair} | random | {any_row['random']:.3f} | 0.500 | - |")
            print(f"| {pair} | oracle | {any_row['oracle']:.3f} | {any_row['oracle_cpt50']:.3f} | - |")
    for pair, rows in results.items():
        names = list(rows)
        types = sorted(next(iter(rows.values()))["by_type"])
        shared = [n for n in names if rows[n].get("share_by_type")]
        print(f"\n{pair}: held-out APGR per type, and the teacher share at the {args.target} threshold per type\n"
              "| type | questions | " + " | ".join(f"APGR {n}" for n in names) + " | "
              + " | ".join(f"share {n}" for n in shared) + " |")
        print("|---|---|" + "---|" * (len(names) + len(shared)))
        held_types = halves(args.limit)[1]
        for k in types:
            print(f"| {k} | {sum(q['type'] == k for q in held_types)} | "
                  + " | ".join(f"{rows[n]['by_type'].get(k, float('nan')):.3f}" for n in names) + " | "
                  + " | ".join(f"{rows[n]['share_by_type'].get(k, float('nan')):.3f}" for n in shared) + " |")
    (work / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
