"""Routing MMLU-Pro recorded outputs over many random 50/50 splits: how much one split's figure is luck.

benchmarks/router_mcq.py judges a router on one split of each pair's questions (sha1 of the id).
On the two recorded pairs the held-out APGR of the same router moves by 0.03-0.07 when the two
halves swap roles, so one split cannot tell apart variants that differ by a hundredth, nor say
whether a pair is above a target. Here each pair's questions are split at random `--splits`
times (seeded), and each split is used both ways (calibrate on one half, evaluate on the other),
so every figure is a mean over 2 x splits evaluations, with its standard deviation and minimum.

Rows (in-process on the same runs, one fit on the calibration half, unread answers escalated as
the cascade does; routers.fitting.select's code):
- `words, chosen option, option guesser`: the gain router over type + question + answer words +
  the chosen option's words + the check tokens (routers.features.option_checks) + the option
  guesser's tokens (routers.features.option_guess: out of fold on the calibration half, from
  the guesser fitted on all of it on the held-out half), penalty 10, its gain estimated twice
  (routers.fitting.gain, `split_gain`): what `--signals auto` defaults to on 1,000+ dev
  questions;
- `words, no option guesser`: the same without the guesser's tokens (session 9's router);
- `words, no option guesser, unit length`: that with each document's vector of unit length
  (before the answer words were weighed by length: routers.fitting.linear.DOCUMENT_LENGTH_POWER);
- `words, no option guesser, no checks`: without the check tokens either (session 7's);
- `dense gain`: the gain router over every dense signal (no words);
and with `--auto`, the full `--signals auto` choice as a user runs it (`tourney eval` on each
half, `route calibrate --target share=0.5`, `route eval`): its APGR and the teacher share its
threshold gives.

A pair named `S/T` is crossed: the student of pair S with the teacher of pair T (on the same
questions, each model's own recorded outputs), two more real pairs than the data names
(`qwen15/mistral`: Qwen1.5-7B-Chat -> Mixtral-8x7B; `mistral/qwen15`: Mistral-7B -> Qwen1.5-72B),
for what a router does on pairs it was not tuned on (not with --auto).

With `--curve N ...` it measures instead how much more dev data buys the default words router:
per seed of `--curve-seeds`, the questions are cut into 5 random folds, each held out in turn,
and the router is fitted on the first N of the other questions (shuffled; N larger than their
number means all of them); the mean held-out APGR over folds and seeds per N.

    OMP_NUM_THREADS=1 python benchmarks/router_mcq_splits.py [--pairs qwen15 mistral qwen15/mistral] [--splits 5] [--auto]
    OMP_NUM_THREADS=1 python benchmarks/router_mcq_splits.py --curve 1200 2400 3600 99999 [--curve-seeds 1 2]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from unittest import mock

import numpy as np

from router_mcq import DATA, ROOT, cli, route_eval, runs

sys.path.insert(0, str(ROOT))
from tourney.routers.evaluation.rundata import RoutingData, routing_data  # noqa: E402
from tourney.routers.features.documents import DocumentForm  # noqa: E402
from tourney.routers.fitting.gain import GainRouter  # noqa: E402
from tourney.routers.fitting.select import (  # noqa: E402
    GAIN, Candidate, routing_scores,
)
from tourney.routers.fitting.policy_select import WORDS_L2  # noqa: E402
from tourney.routers.fitting import linear  # noqa: E402


REFERENCE = "words, chosen option, option guesser"  # what --signals auto fits on 1,000+ dev questions


def words_scores(cal: RoutingData, held: RoutingData, l2: float, chosen: bool, split: bool = True,
                 checks: bool = True, guess: bool = True) -> np.ndarray:
    """The words router fitted on `cal` as calibration fits it (the option guesser's tokens out
    of fold there, its guesser fitted on all of `cal` for `held`), scored on `held`."""
    checks = checks and chosen
    form = DocumentForm(True, chosen, checks, guess)
    model = GainRouter.fit(cal.features, cal.student_correct, cal.teacher_correct, (), l2=l2,
                           texts=cal.calibration_documents(form), document=form, split_gain=split)
    guesser = cal.option_guesser if form.guess else None
    return held.escalating_unread(model.predict(held.features, held.documents_as(form, guesser)))


def unit_length(fit, *args, **kwargs):
    """`fit` as it was before documents were weighed by length (their rows of unit length)."""
    with mock.patch.object(linear, "DOCUMENT_LENGTH_POWER", 0.5):
        return fit(*args, **kwargs)


def variants(cal: RoutingData, held: RoutingData, seed: int) -> dict[str, float]:
    dense = Candidate(tuple(cal.regression_signals()), kind=GAIN).fit(cal)
    scores = {
        REFERENCE: words_scores(cal, held, WORDS_L2, True),
        "words, no option guesser": words_scores(cal, held, WORDS_L2, True, guess=False),
        "words, no option guesser, unit length": unit_length(words_scores, cal, held, WORDS_L2, True, guess=False),
        "words, no option guesser, no checks": words_scores(cal, held, WORDS_L2, True, checks=False, guess=False),
        "dense gain": held.escalating_unread(dense.predict(held.features)),
    }
    return {k: routing_scores(held, v)[0] for k, v in scores.items()}


def learning_curve(data: RoutingData, sizes: list[int], seeds: list[int], folds: int = 5) -> dict[int, list[float]]:
    """Held-out APGR of the words router per dev size, one value per fold and seed (module doc)."""
    out: dict[int, list[float]] = {n: [] for n in sizes}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for held in np.array_split(rng.permutation(data.n), folds):
            held = np.sort(held)
            rest = rng.permutation(np.setdiff1d(np.arange(data.n), held))
            for n in sizes:
                h = data.subset(held)
                out[n].append(routing_scores(h, words_scores(data.subset(np.sort(rest[:n])), h, WORDS_L2, True))[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", nargs="*", default=["qwen15", "mistral"])
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--seed", type=int, default=99)
    ap.add_argument("--auto", action="store_true", help="also the full --signals auto choice through the CLI")
    ap.add_argument("--work", default=str(ROOT / "runs" / "router-mcq-splits"))
    ap.add_argument("--curve", nargs="+", type=int, help="instead: the learning curve at these dev sizes")
    ap.add_argument("--curve-seeds", nargs="+", type=int, default=[1, 2])
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    qs = [json.loads(x) for x in (DATA / "questions.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    out: dict = {}
    for pair in args.pairs:
        if "/" in pair:
            if args.auto:
                raise SystemExit(f"--auto runs the named pairs only, not the crossed {pair}")
            s_pair, t_pair = pair.split("/", 1)
            data = routing_data(runs(work, s_pair, "all", qs)[0], runs(work, t_pair, "all", qs)[1])
        else:
            data = routing_data(*runs(work, pair, "all", qs))
        if args.curve:
            curve = learning_curve(data, args.curve, args.curve_seeds)
            out[pair] = {str(n): v for n, v in curve.items()}
            print(f"{pair}: " + ", ".join(f"{min(n, data.n - data.n // 5)} questions {np.mean(v):.4f} "
                                          f"(se {np.std(v) / np.sqrt(len(v)):.4f})" for n, v in curve.items()),
                  flush=True)
            continue
        rng = np.random.default_rng(args.seed)
        rows: dict[str, list[float]] = {}
        for k in range(args.splits):
            p = rng.permutation(data.n)
            a, b = np.sort(p[: data.n // 2]), np.sort(p[data.n // 2:])
            for way, (c, h) in enumerate(((a, b), (b, a))):
                got = variants(data.subset(c), data.subset(h), args.seed)
                if args.auto:
                    name = f"s{k}-{way}"  # runs() puts the pair in front
                    cal = runs(work, pair, f"{name}-cal", [qs[i] for i in c])
                    held = runs(work, pair, f"{name}-held", [qs[i] for i in h])
                    router = work / f"{pair}-{name}.json"
                    cli(["route", "calibrate", "--student", cal[0], "--teacher", cal[1], "--target", "share=0.5",
                         "--out", router])
                    r = route_eval(router, held, work / f"{pair}-{name}-eval")
                    got["auto (CLI)"], got["auto: teacher share at 0.5"] = r["apgr"], r["share"]
                for name, v in got.items():
                    rows.setdefault(name, []).append(v)
                print(f"{pair} split {k} way {way}: " + ", ".join(f"{n} {v:.3f}" for n, v in got.items()), flush=True)
        out[pair] = rows
    if args.curve:
        (work / "curve_results.json").write_text(json.dumps(out, indent=1) + "\n")
        return
    print(f"\n{args.splits} random 50/50 splits x 2 ways (seed {args.seed}): held-out APGR")
    print(f"| pair | router | mean | sd | min | max | mean difference from `{REFERENCE}` (sd) |")
    print("|---|---|---|---|---|---|---|")
    for pair, rows in out.items():
        ref = np.array(rows[REFERENCE])
        for name, v in rows.items():
            x = np.array(v)
            diff = "" if "share" in name else f"{np.mean(x - ref):+.4f} ({np.std(x - ref):.4f})"
            print(f"| {pair} | {name} | {x.mean():.3f} | {x.std():.3f} | {x.min():.3f} | {x.max():.3f} | {diff} |")
    (work / "splits_results.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
