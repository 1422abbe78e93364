"""`tourney route calibrate`: choose a router and its threshold on dev runs; check it on held-out ones.

Targets (`--target`, one of):
    share=0.3          send 30% of the questions to the teacher
    accuracy=0.99      reach 99% of the teacher's accuracy (relative; absolute with --absolute)
    latency_mean=0.5   keep the mean latency per question within 0.5 s
    latency_p95=1.2    keep its 95th percentile within 1.2 s
Score (`--signals`): "auto" (the default) chooses among single signals, confidence routers
(P(student right), routers.fitting.combined), gain routers (P(teacher right) - P(student right),
routers.fitting.gain) and question routers by cross-validated APGR on dev (routers.fitting.select);
"confidence" and "gain" choose among those kinds only; a single name uses that signal alone;
several names, or "combined" (every available signal), fit a confidence router over them.
Policy (`--policy`): cascade, pre-routing (a question router decides before the student
answers), two-stage (clearly hard questions straight to the teacher, clearly easy ones to the
student, the cascade for the rest) or auto (routers.fitting.policy_select). Per-type thresholds
(`--per-type auto|off`): chosen by cross-validation (routers.policies.pertype).

Held-out figures come from `--heldout-student/--heldout-teacher` runs, or from `--split F`, which
holds out the fraction F of the dev run's questions (seeded permutation by question) and
calibrates on the rest. Without either, `heldout` is null: the dev figures are in-sample.
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tourney.errors import ConfigError
from tourney.models.weights_file import weights_sha256
from tourney.routers.runtime.bundle import ModelSettings, RouterBundle
from tourney.routers.policies.calibrate import CalibratedRouter, calibrate
from tourney.routers.policies.pertype import TypeCalibration
from tourney.routers.policies.policy import (
    CASCADE, PRE, TWO_STAGE, PreRouting, policy_view, thresholds_for_shares,
)
from tourney.routers.fitting.policy_select import Choice, choose
from tourney.routers.evaluation.rundata import RoutingData, routing_data
from tourney.routers.fitting.select import Candidate, out_of_fold
from tourney.routers.features.signals import FEATURE_NAMES, PRIOR_FEATURES
from tourney.routers.policies.target import Target  # noqa: F401 -- re-exported

SIGNAL_MODES = ("auto", "confidence", "gain", "combined")
SHARE_WARN = 0.05  # a dev teacher share this far from a share target is reported as out of reach


class CalibrateConfig(BaseModel):
    """Everything one `tourney route calibrate` depends on (validated: every field's range, and
    the rules between options, each error naming the option)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    student: str = Field(min_length=1)  # dev student run directory
    teacher: str = Field(min_length=1)  # dev teacher run directory, same questions
    target: str  # e.g. "share=0.3" (see module doc)
    out: str = Field(min_length=1)  # ROUTER.json to write
    absolute: bool = False  # accuracy target is absolute, not relative to the teacher
    signals: tuple[str, ...] | None = None  # None or one of SIGNAL_MODES, or signal names
    policy: Literal["auto", "cascade", "pre-routing", "two-stage"] = "auto"
    per_type: Literal["auto", "off"] = "auto"
    heldout_student: str | None = None
    heldout_teacher: str | None = None
    split: float | None = Field(default=None, gt=0.0, lt=1.0)  # fraction of the dev questions held out
    seed: int = Field(default=0, ge=0, le=2 ** 32 - 1)  # the split's permutation and the CV folds
    l2: float = Field(default=1.0, gt=0.0)  # the logistic regressions' penalty (scikit-learn's C = 1 / l2)
    split_ties: bool = True  # order tied scores by a hash of the question (routers.policies.thresholds)
    multi_sample: Literal["max", "sum"] = "max"  # student latency over K samples (see rundata)
    prior_runs: tuple[str, ...] = ()  # other pairs' run directories: a difficulty prior (routers.features.prior)
    # new: the questions routed are new to the prior (a tournament): dev values out of fold;
    # seen: its runs cover them too (a public benchmark's records): dev values recalled
    prior_covers: Literal["new", "seen"] = "new"

    @field_validator("target")
    @classmethod
    def _target(cls, v: str) -> str:
        Target.parse(v)
        return v

    @field_validator("signals")
    @classmethod
    def _signals(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return v
        bad = [s for s in v if s not in SIGNAL_MODES and s not in FEATURE_NAMES]
        if bad or not v:
            raise ValueError(f"unknown signal(s) {bad}; known: {', '.join(SIGNAL_MODES)}, {', '.join(FEATURE_NAMES)}")
        modes = [s for s in v if s in SIGNAL_MODES and s != "combined"]
        if modes and len(v) > 1:
            raise ValueError(f"--signals {modes[0]} chooses the signals itself; give it alone")
        return v

    @model_validator(mode="after")
    def _together(self):
        if (self.heldout_student is None) != (self.heldout_teacher is None):
            raise ValueError("give both --heldout-student and --heldout-teacher, or neither")
        if self.split is not None and self.heldout_student is not None:
            raise ValueError("--split and --heldout-student/--heldout-teacher exclude each other")
        return self


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


def fixed_candidate(dev: RoutingData, signals: tuple[str, ...] | None, primary: str | None = None) -> Candidate:
    """The score a user names: one signal, or a confidence router over names ("combined": all)."""
    available = dev.available_signals()
    if signals is not None and len(signals) == 1 and signals[0] != "combined":
        if signals[0] in PRIOR_FEATURES:
            raise ConfigError(f"signal {signals[0]!r} is read inside a fitted router (which keeps the prior); "
                              "name it with other signals, or use combined")
        if signals[0] not in available:
            raise ConfigError(f"signal {signals[0]!r} has no value on the dev run {dev.student_run} "
                              "(no logprobs recorded? a single sample? no option scores?)")
        return Candidate(signals)
    names = dev.regression_signals() if signals is None or "combined" in signals else list(signals)
    missing = [s for s in names if s not in available]
    if missing and (signals is None or "combined" not in signals):
        raise ConfigError(f"signal(s) {missing} have no value on the dev run {dev.student_run}")
    return Candidate(tuple(n for n in names if n in available), primary=primary)


def fit_choice(dev: RoutingData, target: Target, choice: Choice, *, l2: float = 1.0,
               split_ties: bool = True) -> CalibratedRouter:
    """Fit what `choice` says on all of dev and choose the threshold for `target`.

    The threshold is chosen on out-of-fold dev scores (each from a model that did not see the
    question), not on the final model's own dev scores: a model scores the questions it was
    fitted on more confidently than new ones, so an in-sample quantile misses a share target on
    new questions; out-of-fold scores are distributed as new questions' are. The dev figures
    are those of the threshold on the same out-of-fold scores. For a teacher-share target, ties
    are split by question (routers.policies.thresholds); accuracy and latency targets keep ties whole:
    their threshold sits at a tie's edge, and a split tie would escalate an arbitrary part of it
    on other data."""
    split = split_ties and target.kind == "teacher_share"
    model = choice.score.fit(dev, l2)
    score = choice.score_oof if choice.score_oof is not None else out_of_fold(dev, choice.score, repeats=1, l2=l2)[0]
    per_type = None
    if choice.per_type is not None:
        per_type = TypeCalibration.fit(score, dev.student_correct, dev.teacher_correct, dev.types, choice.per_type)
        score = per_type.transform(score, dev.types)
    lat = dict(student_first=dev.student_latency_first, student_used=dev.student_latency(choice.score.signals),
               teacher=dev.teacher_latency)
    pre, route = None, None
    if choice.policy == TWO_STAGE:
        first = choice.question.fit(dev, l2)
        pre_scores = (choice.question_oof if choice.question_oof is not None
                      else out_of_fold(dev, choice.question, repeats=1, l2=l2)[0])
        below, start = thresholds_for_shares(pre_scores, choice.teacher_share, choice.student_share)
        pre = PreRouting(first, below, start, choice.teacher_share, choice.student_share)
        view = policy_view(TWO_STAGE, score, pre_score=pre_scores, teacher_below=below, student_from=start,
                           unread=dev.unread, **lat)
        route = view.route
    else:
        view = policy_view(PRE if choice.score.question_only else CASCADE, score, unread=dev.unread, **lat)
        route = view.route  # unread answers: escalated at any threshold, as the cascade does
    score = view.score
    return calibrate(score, dev.student_correct, dev.teacher_correct, kind=target.kind, value=target.value,
                     model=model, relative=target.relative, stat=target.stat,
                     questions=dev.texts if split else None, route=route, kept=view.kept, up=view.up,
                     per_type=per_type, pre=pre)


def fit_router(dev: RoutingData, target: Target, signals: tuple[str, ...] | None, *, l2: float = 1.0,
               primary: str | None = None, split_ties: bool = True) -> CalibratedRouter:
    """A single signal or a confidence router over named signals, as a plain cascade."""
    cand = fixed_candidate(dev, signals, primary)
    return fit_choice(dev, target, Choice(score=cand, policy=CASCADE), l2=l2, split_ties=split_ties)


def calibrate_runs(cfg: CalibrateConfig) -> RouterBundle:
    """Calibrate on the dev runs, evaluate on the held-out questions, write cfg.out."""
    target = Target.parse(cfg.target, cfg.absolute)
    data = routing_data(cfg.student, cfg.teacher, multi_sample=cfg.multi_sample)
    info: dict[str, Any] = {"dev_student_run": cfg.student, "dev_teacher_run": cfg.teacher,
                            "multi_sample_latency": cfg.multi_sample}
    if cfg.prior_runs:
        from tourney.routers.features.prior import DifficultyPrior

        data = data.with_prior(DifficultyPrior.fit(cfg.prior_runs), dev=cfg.prior_covers == "new")
        info.update(prior_runs=list(cfg.prior_runs), prior_covers=cfg.prior_covers)
    heldout: RoutingData | None = None
    if cfg.split is not None:
        dev_idx, held_idx = split_indices(data.n, cfg.split, cfg.seed)
        dev, heldout = data.subset(dev_idx), data.subset(held_idx)
        if data.prior is not None:  # held-out questions are scored as routing scores them
            heldout = heldout.with_prior(data.prior)
        info.update(split=cfg.split, seed=cfg.seed, heldout_ids=heldout.ids)
    else:
        dev = data
        if cfg.heldout_student is not None:
            heldout = routing_data(cfg.heldout_student, cfg.heldout_teacher, multi_sample=cfg.multi_sample)
            if data.prior is not None:
                heldout = heldout.with_prior(data.prior)
            info.update(heldout_student_run=cfg.heldout_student, heldout_teacher_run=cfg.heldout_teacher)
    mode = cfg.signals[0] if cfg.signals and cfg.signals[0] in ("auto", "confidence", "gain") else None
    fixed = None if cfg.signals is None or mode is not None else fixed_candidate(dev, cfg.signals)
    choice = choose(dev, signals=mode or "auto", policy=cfg.policy, per_type=cfg.per_type, seed=cfg.seed,
                    l2=cfg.l2, fixed=fixed, target=target)
    info["selection"] = choice.to_dict()
    router = fit_choice(dev, target, choice, l2=cfg.l2, split_ties=cfg.split_ties)
    info.update(n_dev=dev.n, n_heldout=None if heldout is None else heldout.n,
                dev_student_accuracy=float(dev.student_correct.mean()),
                dev_teacher_accuracy=float(dev.teacher_correct.mean()))
    if heldout is not None:
        view = heldout.policy_view(router)
        router.evaluate(view.score, heldout.student_correct, heldout.teacher_correct, kept=view.kept, up=view.up,
                        route=view.route)
        info.update(heldout_student_accuracy=float(heldout.student_correct.mean()),
                    heldout_teacher_accuracy=float(heldout.teacher_correct.mean()))
    student = ModelSettings.from_run(cfg.student)
    bundle = RouterBundle(router=router, student=student, teacher=ModelSettings.from_run(cfg.teacher),
                          target=cfg.target, data=info, student_sha256=weights_sha256(student.spec))
    bundle.save(cfg.out)
    return bundle


def describe(bundle: RouterBundle) -> str:
    """A few lines for the terminal: the router, the policy, the threshold, how the target holds."""
    r = bundle.router
    lines = [f"router: {r.describe_model()}; policy {r.policy}"
             + ("" if r.per_type is None else f"; per-type maps for types with >= {r.per_type.min_questions} dev questions")]
    if r.pre is not None:
        lines.append(f"first stage: {r.pre.teacher_share:.0%} of dev straight to the teacher, "
                     f"{r.pre.student_share:.0%} to the student alone")
    sel = bundle.data.get("selection")
    if sel and sel["candidates"]:
        top = [c for c in sel["candidates"] if c["eligible"]][:3]
        listed = "; ".join(f"{c['name']} {c['cv_apgr']}" for c in top)
        if any(c["name"] == sel["chosen"] for c in sel["candidates"]):
            lines.append(f"chosen by cross-validated APGR on dev (best 3): {listed}")
            if sel.get("nested_apgr") is not None:
                lines.append(f"nested cross-validated APGR of this way of choosing: {sel['nested_apgr']:.3f}")
        elif top:  # the score was named (--signals): the table holds only first-stage candidates
            lines.append(f"score as named by --signals; question routers tried for a first stage, "
                         f"cross-validated APGR on dev: {listed}")
    if bundle.data.get("prior_runs"):
        models = [r.model] + ([r.pre.model] if r.pre is not None else [])
        reads = "read by the router" if any(getattr(m, "prior", None) is not None for m in models) else "offered, not chosen"
        how = ("dev values out of fold: for questions its runs have not seen" if bundle.data.get("prior_covers") == "new"
               else "dev values recalled: for questions its runs have seen")
        lines.append(f"difficulty prior from {len(bundle.data['prior_runs'])} run(s), {reads}; {how} (--prior-covers)")
    lines.append(f"target: {bundle.target} -> threshold {r.threshold:.6g}")
    if r.target_kind == "teacher_share" and r.dev is not None and abs(r.dev.teacher_share - r.target_value) > SHARE_WARN:
        # Questions whose score is blank, or whose answer the grader cannot read, go to the
        # teacher at any threshold: a share below theirs is out of this router's reach.
        lines.append(f"warning: the teacher share nearest {r.target_value:g} that this router reaches on dev is "
                     f"{r.dev.teacher_share:.3f} (questions with a blank score or an unreadable answer are escalated "
                     f"at any threshold); name other signals with --signals, or set a target it can reach")
    for name, fig in (("dev", r.dev), ("held-out", r.heldout)):
        if fig is None:
            lines.append("held-out: none (pass --split or --heldout-student/--heldout-teacher)")
            continue
        lat = "" if fig.latency_mean_s is None else f", latency mean {fig.latency_mean_s:.3f} s p95 {fig.latency_p95_s:.3f} s"
        lines.append(f"{name}: n={fig.n}, teacher share {fig.teacher_share:.3f}, accuracy {fig.accuracy:.3f}{lat}")
    return "\n".join(lines)
