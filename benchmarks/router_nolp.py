"""Routing without log-probabilities: the `--signals auto` router against self-consistency alone.

Two comparisons on recorded K-sample student runs (no logprobs) and teacher runs:

1. dev -> held-out: calibrate on the dev runs, evaluate on the held-out runs (one split, as a
   user would; with ~500 questions and a few dozen student errors its APGR moves by +-0.02
   from one split to another).
2. nested cross-validation over dev + held-out pooled: for each of `--repeats` x `--folds`
   outer folds, the whole auto procedure (signal selection by inner CV, then the fit) runs on
   the other folds and scores the held-out fold; APGR and AUROC per outer fold, the single
   signals on the same folds (they need no fitting).

    .venv/bin/python benchmarks/router_nolp.py --dev-student runs/route/dev-student-k5 --dev-teacher runs/route/dev-teacher \
        --test-student runs/route/test-student-k5 --test-teacher runs/route/test-teacher
"""
from __future__ import annotations

import argparse

import numpy as np

from tourney.routers.fitting.fit import Target, fit_choice
from tourney.routers.fitting.policy_select import choose
from tourney.routers.evaluation.rundata import RoutingData, routing_data
from tourney.routers.fitting.select import candidate_scores, chosen, routing_scores, select_signals

BASELINE = "self_consistency"


def pooled(a: RoutingData, b: RoutingData) -> RoutingData:
    cat = np.concatenate
    return RoutingData(
        ids=a.ids + b.ids, types=a.types + b.types, student_rows=a.student_rows + b.student_rows,
        student_correct=cat([a.student_correct, b.student_correct]), teacher_correct=cat([a.teacher_correct, b.teacher_correct]),
        student_latency_first=cat([a.student_latency_first, b.student_latency_first]),
        student_latency_all=cat([a.student_latency_all, b.student_latency_all]),
        teacher_latency=cat([a.teacher_latency, b.teacher_latency]), features=a.features + b.features)


def auto_confidence(train: RoutingData, test: RoutingData) -> np.ndarray:
    """The auto choice of score fitted on `train`, applied to `test` (no tie jitter: ranking only)."""
    best = chosen(select_signals(train))
    return candidate_scores(best, test, np.arange(test.n), best.fit(train))


def nested_cv(data: RoutingData, folds: int, repeats: int) -> dict[str, list[tuple[float, float]]]:
    """(APGR, AUROC) of every outer test fold, for auto and the two single signals. Per fold, not
    over the pooled out-of-fold scores: folds may choose different kinds of score (a confidence,
    a tie-broken signal, a gain), whose scales are not comparable across folds."""
    out: dict[str, list[tuple[float, float]]] = {"auto": [], BASELINE: [], "answer_agreement": []}
    for r in range(repeats):
        fold = np.empty(data.n, dtype=int)
        fold[np.random.default_rng(100 + r).permutation(data.n)] = np.arange(data.n) % folds
        for k in range(folds):
            tr, te = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
            test = data.subset(te)
            out["auto"].append(routing_scores(test, auto_confidence(data.subset(tr), test)))
            for name in (BASELINE, "answer_agreement"):
                out[name].append(routing_scores(test, test.signal_confidence(name)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    for name in ("dev-student", "dev-teacher", "test-student", "test-teacher"):
        ap.add_argument(f"--{name}", required=True)
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    dev = routing_data(args.dev_student, args.dev_teacher)
    test = routing_data(args.test_student, args.test_teacher)

    choice = choose(dev, policy="cascade", per_type="off")
    router = fit_choice(dev, Target.parse("share=0.3"), choice)
    held = test.router_confidence(router)
    print(f"dev -> held-out ({test.n} questions); auto chose: {router.describe_model()}")
    print("| router | APGR | AUROC |\n|---|---|---|")
    for name, conf in (("auto", held), (BASELINE, test.signal_confidence(BASELINE)),
                       ("answer_agreement", test.signal_confidence("answer_agreement"))):
        a, u = routing_scores(test, conf)
        print(f"| {name} | {a:.3f} | {u:.3f} |")

    data = pooled(dev, test)
    per_fold = nested_cv(data, args.folds, args.repeats)
    print(f"\nnested {args.folds}-fold CV over {data.n} pooled questions, {args.repeats} repeats "
          "(mean [min, max] over the outer test folds):")
    print("| router | APGR | AUROC |\n|---|---|---|")
    for name, label in (("auto", "auto (selection + fit inside each fold)"), (BASELINE, f"{BASELINE} alone"),
                        ("answer_agreement", "answer_agreement alone")):
        a = np.array(per_fold[name])
        print(f"| {label} | {np.nanmean(a[:, 0]):.3f} [{np.nanmin(a[:, 0]):.3f}, {np.nanmax(a[:, 0]):.3f}] "
              f"| {np.nanmean(a[:, 1]):.3f} [{np.nanmin(a[:, 1]):.3f}, {np.nanmax(a[:, 1]):.3f}] |")

if __name__ == "__main__":
    main()
