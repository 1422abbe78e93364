"""A calibrated router: a score, the threshold chosen for a target on dev, and how it decides.

The score is one signal (its oriented value), a fitted model (routers.fitting.combined: P(student
right); routers.fitting.gain: minus the expected gain of a teacher call), optionally recalibrated per
question type (routers.policies.pertype), optionally nudged to split ties (routers.policies.thresholds). The
policy (routers.policies.policy) follows from what the router holds: a question-only score decides before
the student answers (pre-routing); a `pre` stage in front of a cascade makes it two-stage;
otherwise the cascade decides from the student's samples.

The cascade sends a question to the teacher when `score < threshold`, when the score is missing
(no evidence, no trust), or when the student's request failed.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tourney.harness.jsonl import json_safe
from tourney.harness.types import SampleResult
from tourney.routers.evaluation.metrics import ArrayLike, CascadeFigures, cascade_figures, figures_of
from tourney.routers.policies.pertype import TypeCalibration
from tourney.routers.policies.policy import CASCADE, PRE, ROUTE_CASCADE, ROUTE_UP, TWO_STAGE, PreRouting
from tourney.routers.fitting.scores import Scorer, document_form, question_only
from tourney.routers.features.signals import FEATURE_NAMES, QUESTION_FEATURES, ChoiceLogliks, compute_signals, oriented
from tourney.routers.policies.thresholds import (  # noqa: F401 -- the threshold functions, re-exported
    LATENCY_STATS, TIE_EPS, split_ties, threshold_for_accuracy, threshold_for_latency, threshold_for_teacher_share,
    tie_jitter,
)

TARGET_KINDS = ("teacher_share", "accuracy", "latency")


@dataclass
class CalibratedRouter:
    """A score (one signal, or a fitted model) plus the threshold chosen for a target."""

    target_kind: str  # "teacher_share" | "accuracy" | "latency"
    target_value: float  # the share, the accuracy, or the latency budget in seconds
    threshold: float  # escalate when score < threshold; +inf escalates everything
    signals: list[str]  # the signals the score reads
    model: Scorer | str  # a fitted model, or the name of a single signal
    dev: CascadeFigures  # what the threshold does on the dev set it was chosen on
    heldout: CascadeFigures | None = None  # set by evaluate() on questions not used to choose
    relative: bool = False  # accuracy target given as a fraction of the teacher's accuracy
    latency_stat: str = "mean"  # "mean" | "p95", for a latency target
    split_ties: bool = False  # scores carry the question's tie jitter (routers.policies.thresholds)
    per_type: TypeCalibration | None = None  # per-type recalibration of the score (routers.policies.pertype)
    pre: PreRouting | None = None  # a first, question-only stage: the policy is two-stage

    def __post_init__(self) -> None:
        if self.target_kind not in TARGET_KINDS:
            raise ValueError(f"field 'target_kind': expected one of {TARGET_KINDS}, got {self.target_kind!r}")
        if self.latency_stat not in LATENCY_STATS:
            raise ValueError(f"field 'latency_stat': expected one of {LATENCY_STATS}, got {self.latency_stat!r}")
        if isinstance(self.model, str) and self.model not in FEATURE_NAMES:
            raise ValueError(f"field 'model': unknown signal {self.model!r}")
        if self.pre is not None and self.question_only:
            raise ValueError("a question-only router decides up front already; it takes no pre-routing stage")

    @property
    def question_only(self) -> bool:
        """Its score needs nothing but the question: it decides before the student answers."""
        if isinstance(self.model, str):
            return self.model in QUESTION_FEATURES
        return question_only(self.model)

    @property
    def policy(self) -> str:
        return TWO_STAGE if self.pre is not None else PRE if self.question_only else CASCADE

    def raw_scores(self, feature_rows: Sequence[dict], texts: Sequence[str]) -> np.ndarray:
        """The model's score from precomputed features (routers.evaluation.rundata), before per-type maps."""
        if isinstance(self.model, str):
            vals = [oriented(self.model, f.get(self.model)) for f in feature_rows]
            return np.array([-math.inf if v is None or not math.isfinite(v) else v for v in vals], dtype=float)
        out = np.asarray(self.model.predict(feature_rows, list(texts)), dtype=float)
        return np.where(np.isnan(out), -math.inf, out)

    def finish(self, raw: ArrayLike, types: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        """Raw scores to the scores the threshold applies to: per-type maps, then tie jitter."""
        c = np.asarray(raw, dtype=float)
        if self.per_type is not None:
            c = self.per_type.transform(c, types)
        return split_ties(c, texts) if self.split_ties else c

    def confidence(self, rows: Sequence[SampleResult], *, choice_logliks: ChoiceLogliks = None,
                   question_text: str | None = None, question_type: str | None = None) -> float | None:
        """The score of one question from its student samples (none needed by a question-only
        router); None when a single signal is unavailable for it (to_teacher then escalates)."""
        text = question_text if question_text is not None else min(rows, key=lambda r: r.sample).question
        kind = question_type if question_type is not None else (rows[0].type if rows else "default")
        if isinstance(self.model, str):
            value = compute_signals(rows, [self.model], choice_logliks=choice_logliks, question_text=text)[self.model]
            conf = oriented(self.model, value)
            if conf is None or not math.isfinite(conf):
                return None
        else:
            conf = self.model.confidence(rows, choice_logliks=choice_logliks, question_text=text)
            if not math.isfinite(conf):
                return conf
        return float(self.finish([conf], [kind], [text])[0])

    def to_teacher(self, confidence: float | None) -> bool:
        return confidence is None or confidence < self.threshold

    def decide_first(self, question_text: str, question_type: str = "default") -> str | None:
        """Before the student answers: "teacher", "student", or None (the cascade decides).
        A pre-routing router decides every question here; a two-stage one the clear cases."""
        if self.pre is not None:
            return self.pre.decide(question_text)
        if self.question_only:
            conf = self.confidence([], question_text=question_text, question_type=question_type)
            return "teacher" if self.to_teacher(conf) else "student"
        return None

    def figures(self, score: ArrayLike, student_correct: ArrayLike, teacher_correct: ArrayLike,
                kept: ArrayLike | None = None, up: ArrayLike | None = None,
                route: ArrayLike | None = None) -> CascadeFigures:
        """What this threshold does on questions with these scores (and pre-stage routes)."""
        c = np.asarray(score, dtype=float)
        sent = c < self.threshold
        if route is not None:
            r = np.asarray(route)
            sent = np.where(r == ROUTE_CASCADE, sent, r == ROUTE_UP)
        return figures_of(sent, student_correct, teacher_correct, kept, up)

    def evaluate(self, conf: ArrayLike, student_correct: ArrayLike, teacher_correct: ArrayLike,
                 student_latency: ArrayLike | None = None, teacher_latency: ArrayLike | None = None, *,
                 kept: ArrayLike | None = None, up: ArrayLike | None = None,
                 route: ArrayLike | None = None) -> CascadeFigures:
        """Figures of this threshold on held-out questions; kept in `heldout`."""
        if kept is None and route is None:
            self.heldout = cascade_figures(conf, self.threshold, student_correct, teacher_correct,
                                           student_latency, teacher_latency)
        else:
            self.heldout = self.figures(conf, student_correct, teacher_correct, kept, up, route)
        return self.heldout

    def describe_model(self) -> str:
        if isinstance(self.model, str):
            return self.model
        primary = getattr(self.model, "primary", None)
        name = {"logistic_regression": "P(student right)", "expected_gain": "expected gain"}.get(self.model.kind,
                                                                                                  self.model.kind)
        text = ("the words of type, question and answer" if document_form(self.model).answer
                else "question words" if self.model.reads_text else "")
        if document_form(self.model).guess and getattr(self.model, "guesser", None) is not None:
            text += " (with the option guesser's tokens)"
        over = " and ".join(x for x in (", ".join(self.signals), text) if x)  # a words router may read no signal
        return f"{primary}, ties broken by {name}" if primary else f"{name} over {over}"

    def to_dict(self) -> dict[str, Any]:
        from tourney.routers.fitting.router_file import FORMAT

        d = {"format": FORMAT, "target_kind": self.target_kind, "target_value": self.target_value,
             "threshold": json_safe(self.threshold, None, "string"), "signals": list(self.signals),
             "model": self.model if isinstance(self.model, str) else self.model.to_dict(), "dev": asdict(self.dev),
             "heldout": None if self.heldout is None else asdict(self.heldout),
             "relative": self.relative, "latency_stat": self.latency_stat, "split_ties": self.split_ties}
        if self.per_type is not None:
            d["per_type"] = self.per_type.to_dict()
        if self.pre is not None:
            d["pre"] = json_safe(self.pre.to_dict(), None, "string")
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "router") -> "CalibratedRouter":
        """Inverse of to_dict, through the ROUTER.json schema; DataError naming the field."""
        from tourney.routers.fitting.model_io import router_from_schema
        from tourney.routers.fitting.router_file import parse_router

        return router_from_schema(parse_router(d, where), where)

    def save(self, path: str | Path) -> None:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)
        Path(path).write_text(text + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "CalibratedRouter":
        """Read a saved router (or ROUTER.json); a bad file raises DataError naming file and field."""
        from tourney.routers.fitting.model_io import router_from_schema
        from tourney.routers.fitting.router_file import load_router_file

        return router_from_schema(load_router_file(path), str(path))


def calibrate(conf: ArrayLike, student_correct: ArrayLike, teacher_correct: ArrayLike, *,
              kind: str, value: float, model: Scorer | str,
              student_latency: ArrayLike | None = None, teacher_latency: ArrayLike | None = None,
              relative: bool = False, stat: str = "mean", questions: Sequence[str] | None = None,
              route: ArrayLike | None = None, kept: ArrayLike | None = None, up: ArrayLike | None = None,
              per_type: TypeCalibration | None = None, pre: PreRouting | None = None) -> CalibratedRouter:
    """Choose the threshold for one target on dev scores and record the dev figures.

    `conf` must come from `model` (its oriented value for a single signal), after `per_type`'s
    maps when given: the threshold is only meaningful on the scale it was chosen on. With
    `questions` (the dev question texts, in order) the router splits ties. `route`, `kept` and
    `up` describe a policy that decides some questions up front (routers.policies.policy; default: a
    cascade, with the student's and teacher's latencies).
    """
    if questions is not None:
        conf = split_ties(conf, questions)
    if kept is None and student_latency is not None and teacher_latency is not None:
        kept = np.asarray(student_latency, dtype=float)
        up = kept + np.asarray(teacher_latency, dtype=float)
    if kind == "teacher_share":
        threshold = threshold_for_teacher_share(conf, value, route=route)
    elif kind == "accuracy":
        threshold = threshold_for_accuracy(conf, student_correct, teacher_correct, value, relative=relative, route=route)
    elif kind == "latency":
        if kept is None or up is None:
            raise ValueError("a latency target needs student and teacher latencies")
        threshold = threshold_for_latency(conf, None, None, value, stat, kept=kept, up=up, route=route)
    else:
        raise ValueError(f"kind must be one of {TARGET_KINDS}, got {kind!r}")
    signals = [model] if isinstance(model, str) else list(model.features)
    router = CalibratedRouter(target_kind=kind, target_value=float(value), threshold=threshold, signals=signals,
                              model=model, dev=CascadeFigures(0, 0.0, 0.0), relative=relative, latency_stat=stat,
                              split_ties=questions is not None, per_type=per_type, pre=pre)
    router.dev = router.figures(conf, student_correct, teacher_correct, kept, up, route)
    return router
