"""Where a share target's teacher share goes between dev and a held-out set: per question type.

A calibrated router's threshold escalates some share of each type on dev; a held-out set with a
different mix of types then sends a different share overall even when every type's own rate
holds. This prints, for one ROUTER.json, each type's share of the questions and its escalated
share on dev and on the held-out runs, and the held-out share that dev's per-type rates predict
under the held-out mix (sum over types of held-out mix x dev rate). The dev rates are the final
router's on dev: for a single signal that is what calibration saw; for a fitted router they are
in-sample, while `route calibrate` sets the threshold on out-of-fold dev scores, so the dev share
printed here can differ from the one calibrate reports.

    .venv/bin/python benchmarks/router_share_by_type.py --router runs/route/router-share0.5.json \\
        --dev-student runs/route/dev-student --dev-teacher runs/route/dev-teacher \\
        --heldout-student runs/route/test-student --heldout-teacher runs/route/test-teacher
"""
from __future__ import annotations

import argparse

import numpy as np

from tourney.routers.policies.calibrate import CalibratedRouter
from tourney.routers.evaluation.rundata import RoutingData, routing_data


def escalated(data: RoutingData, router: CalibratedRouter) -> np.ndarray:
    """Per question: sent to the teacher at the router's threshold (its policy's routes included)."""
    return data.policy_view(router).sent(router.threshold)


def by_type(types: list[str], sent: np.ndarray) -> dict[str, tuple[float, float]]:
    """type -> (share of the questions, share of that type escalated)."""
    t = np.asarray(types)
    return {k: (float(np.mean(t == k)), float(np.mean(sent[t == k]))) for k in dict.fromkeys(types)}


def predicted_share(dev: dict[str, tuple[float, float]], held: dict[str, tuple[float, float]]) -> float:
    """The held-out share if each type escalated at its dev rate (a type dev lacks counts as 0)."""
    return sum(mix * dev.get(k, (0.0, 0.0))[1] for k, (mix, _) in held.items())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--router", required=True)
    for name in ("dev-student", "dev-teacher", "heldout-student", "heldout-teacher"):
        ap.add_argument(f"--{name}", required=True)
    args = ap.parse_args()
    router = CalibratedRouter.load(args.router)
    dev = routing_data(args.dev_student, args.dev_teacher)
    held = routing_data(args.heldout_student, args.heldout_teacher)
    sd, sh = escalated(dev, router), escalated(held, router)
    d, h = by_type(dev.types, sd), by_type(held.types, sh)
    print("| type | dev mix | dev escalated | held-out mix | held-out escalated |\n|---|---|---|---|---|")
    for k in dict.fromkeys([*d, *h]):
        dm, dr = d.get(k, (0.0, float("nan")))
        hm, hr = h.get(k, (0.0, float("nan")))
        print(f"| {k} | {dm:.3f} | {dr:.3f} | {hm:.3f} | {hr:.3f} |")
    print(f"teacher share: dev {sd.mean():.3f}, held-out {sh.mean():.3f}; "
          f"predicted for the held-out mix from dev's per-type rates {predicted_share(d, h):.3f}")


if __name__ == "__main__":
    main()
