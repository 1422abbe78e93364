"""`tourney route calibrate`: choose a router and its threshold on dev runs; check it on held-out ones.

Targets (`--target`, one of):
    share=0.3          send 30% of the questions to the teacher
    accuracy=0.99      reach 99% of the teacher's accuracy (relative; absolute with --absolute)
    latency_mean=0.5   keep the cascade's mean latency per question within 0.5 s
    latency_p95=1.2    keep its 95th percentile within 1.2 s
Signals (`--signals`): a single name uses that signal as the confidence; several names, or
"combined", fit a logistic regression (routers.combined) over them ("combined": every signal
available on the dev run, question features included). "auto", the default, chooses among single
signals and combined sets by cross-validated APGR on dev (routers.select) and records the scores.

Held-out figures come from `--heldout-student/--heldout-teacher` runs, or from `--split F`, which
holds out the fraction F of the dev run's questions (seeded permutation by question) and
calibrates on the rest. Without either, `heldout` is null: the dev figures are in-sample.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tourney.errors import ConfigError
from tourney.routers.bundle import ModelSettings, RouterBundle
from tourney.routers.calibrate import CalibratedRouter, calibrate
from tourney.routers.combined import CombinedRouter
from tourney.routers.rundata import RoutingData, routing_data
from tourney.routers.select import Candidate, chosen, select_signals
from tourney.routers.signals import FEATURE_NAMES

TARGET_NAMES = {"share": "teacher_share", "teacher_share": "teacher_share", "accuracy": "accuracy",
                "latency_mean": "latency", "latency_p95": "latency"}


@dataclass(frozen=True)
class Target:
    kind: str  # "teacher_share" | "accuracy" | "latency"
    value: float
    relative: bool = False  # accuracy as a fraction of the teacher's
    stat: str = "mean"  # latency statistic

    @classmethod
    def parse(cls, text: str, absolute: bool = False) -> "Target":
        name, sep, value = text.partition("=")
        name = name.strip()
        if not sep or name not in TARGET_NAMES:
            raise ConfigError(f"--target {text!r}: expected share=F, accuracy=F, latency_mean=S or latency_p95=S")
        try:
            v = float(value)
        except ValueError:
            raise ConfigError(f"--target {text!r}: {value!r} is not a number") from None
        kind = TARGET_NAMES[name]
        if kind == "latency" and v <= 0:
            raise ConfigError(f"--target {text!r}: a latency budget must be > 0 seconds")
        if kind == "teacher_share" and not 0 <= v <= 1:
            raise ConfigError(f"--target {text!r}: a teacher share must be in [0, 1]")
        return cls(kind=kind, value=v, relative=kind == "accuracy" and not absolute,
                   stat="p95" if name == "latency_p95" else "mean")


@dataclass(frozen=True)
class CalibrateConfig:
    """Everything one `tourney route calibrate` depends on."""

    student: str  # dev student run directory
    teacher: str  # dev teacher run directory, same questions
    target: str  # e.g. "share=0.3" (see module doc)
    out: str  # ROUTER.json to write
    absolute: bool = False  # accuracy target is absolute, not relative to the teacher
    signals: tuple[str, ...] | None = None  # None or ("auto",): chosen on dev; ("combined",): all available
    heldout_student: str | None = None
    heldout_teacher: str | None = None
    split: float | None = None  # fraction of the dev questions held out
    seed: int = 0  # for the split's permutation
    l2: float = 1.0  # combined router's penalty
    split_ties: bool = True  # order tied confidences by a hash of the question (routers.calibrate)
    multi_sample: str = "max"  # student latency over K samples: "max" (drawn together) or "sum" (see rundata)

    def __post_init__(self) -> None:
        if (self.heldout_student is None) != (self.heldout_teacher is None):
            raise ValueError("give both --heldout-student and --heldout-teacher, or neither")
        if self.split is not None:
            if self.heldout_student is not None:
                raise ValueError("--split and --heldout-student/--heldout-teacher exclude each other")
            if not 0 < self.split < 1:
                raise ValueError(f"--split must be in (0, 1), got {self.split}")
        if self.signals is not None:
            bad = [s for s in self.signals if s not in ("combined", "auto") and s not in FEATURE_NAMES]
            if bad or not self.signals:
                raise ValueError(f"unknown signal(s) {bad}; known: auto, combined, {', '.join(FEATURE_NAMES)}")
            if "auto" in self.signals and len(self.signals) > 1:
                raise ValueError("--signals auto chooses the signals itself; give it alone")
        Target.parse(self.target, self.absolute)


def split_indices(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(dev, held-out) question indices, each in the original order; seeded, so repeatable."""
    k = int(round(fraction * n))
    if k < 1 or n - k < 2:
        raise ConfigError(f"--split {fraction} of {n} questions leaves {n - k} to calibrate on and {k} "
                         "to hold out; need at least 2 and 1")
    perm = np.random.default_rng(seed).permutation(n)
    held = sorted(int(i) for i in perm[:k])
    held_set = set(held)
    return [i for i in range(n) if i not in held_set], held


def fit_router(dev: RoutingData, target: Target, signals: tuple[str, ...] | None, *, l2: float = 1.0,
               primary: str | None = None, split_ties: bool = True) -> CalibratedRouter:
    """A single signal or a combined router (breaking `primary`'s ties when given), with the
    threshold for `target` on `dev`. For a teacher-share target, ties left after that are split by
    question (calibrate doc); accuracy and latency targets keep ties whole: their threshold sits
    at a tie's edge, and a split tie would escalate an arbitrary part of it on other data."""
    split = split_ties and target.kind == "teacher_share"
    available = dev.available_signals()
    if signals is not None and len(signals) == 1 and signals[0] != "combined":
        name = signals[0]
        if name not in available:
            raise ConfigError(f"signal {name!r} has no value on the dev run {dev.student_run} "
                             "(no logprobs recorded? a single sample? no option scores?)")
        model: CombinedRouter | str = name
        conf = dev.signal_confidence(name)
        used = [name]
    else:
        names = available if signals is None or signals == ("combined",) else [s for s in signals if s != "combined"]
        missing = [s for s in names if s not in available]
        if missing and signals is not None and "combined" not in signals:
            raise ConfigError(f"signal(s) {missing} have no value on the dev run {dev.student_run}")
        model = CombinedRouter.fit(dev.features, dev.student_correct.astype(bool), names, l2=l2, primary=primary)
        conf = model.predict(dev.features)
        used = list(model.features)
    return calibrate(conf, dev.student_correct, dev.teacher_correct, kind=target.kind, value=target.value,
                     model=model, student_latency=dev.student_latency(used),
                     teacher_latency=dev.teacher_latency, relative=target.relative, stat=target.stat,
                     questions=[rows[0].question for rows in dev.student_rows] if split else None)


def calibrate_runs(cfg: CalibrateConfig) -> RouterBundle:
    """Calibrate on the dev runs, evaluate on the held-out questions, write cfg.out."""
    target = Target.parse(cfg.target, cfg.absolute)
    data = routing_data(cfg.student, cfg.teacher, multi_sample=cfg.multi_sample)
    info: dict[str, Any] = {"dev_student_run": cfg.student, "dev_teacher_run": cfg.teacher,
                            "multi_sample_latency": cfg.multi_sample}
    heldout: RoutingData | None = None
    if cfg.split is not None:
        dev_idx, held_idx = split_indices(data.n, cfg.split, cfg.seed)
        dev, heldout = data.subset(dev_idx), data.subset(held_idx)
        info.update(split=cfg.split, seed=cfg.seed, heldout_ids=heldout.ids)
    else:
        dev = data
        if cfg.heldout_student is not None:
            heldout = routing_data(cfg.heldout_student, cfg.heldout_teacher, multi_sample=cfg.multi_sample)
            info.update(heldout_student_run=cfg.heldout_student, heldout_teacher_run=cfg.heldout_teacher)
    signals, primary = cfg.signals, None
    if signals is None or signals == ("auto",):
        table = select_signals(dev, seed=cfg.seed, l2=cfg.l2)
        best = chosen(table)
        signals, primary = best.signals, best.primary
        info["signal_selection"] = {"method": "5-fold cross-validated APGR on dev, mean of 3 fold assignments",
                                    "candidates": [c.to_dict() for c in table]}
    router = fit_router(dev, target, signals, l2=cfg.l2, primary=primary, split_ties=cfg.split_ties)
    info.update(n_dev=dev.n, n_heldout=None if heldout is None else heldout.n,
                dev_student_accuracy=float(dev.student_correct.mean()),
                dev_teacher_accuracy=float(dev.teacher_correct.mean()))
    if heldout is not None:
        router.evaluate(heldout.router_confidence(router), heldout.student_correct, heldout.teacher_correct,
                        heldout.student_latency(router.signals), heldout.teacher_latency)
        info.update(heldout_student_accuracy=float(heldout.student_correct.mean()),
                    heldout_teacher_accuracy=float(heldout.teacher_correct.mean()))
    bundle = RouterBundle(router=router, student=ModelSettings.from_run(cfg.student),
                          teacher=ModelSettings.from_run(cfg.teacher), target=cfg.target, data=info)
    bundle.save(cfg.out)
    return bundle


def describe(bundle: RouterBundle) -> str:
    """A few lines for the terminal: the threshold and how the target holds."""
    r = bundle.router
    if isinstance(r.model, str):
        kind = r.model
    else:
        kind = f"{r.model['primary']}, ties broken by a combined" if r.model.get("primary") else "combined"
    lines = [f"router: {kind} over {', '.join(r.signals)}"]
    selection = bundle.data.get("signal_selection")
    if selection:
        top = [c for c in selection["candidates"] if c["eligible"]][:3]
        lines.append("chosen by cross-validated APGR on dev (best 3): " + "; ".join(
            f"{Candidate(tuple(c['signals']), c['primary']).name} {c['cv_apgr']}" for c in top))
    lines.append(f"target: {bundle.target} -> threshold {r.threshold:.6g}")
    for name, fig in (("dev", r.dev), ("held-out", r.heldout)):
        if fig is None:
            lines.append("held-out: none (pass --split or --heldout-student/--heldout-teacher)")
            continue
        lat = "" if fig.latency_mean_s is None else f", latency mean {fig.latency_mean_s:.3f} s p95 {fig.latency_p95_s:.3f} s"
        lines.append(f"{name}: n={fig.n}, teacher share {fig.teacher_share:.3f}, accuracy {fig.accuracy:.3f}{lat}")
    return "\n".join(lines)

