"""`tourney route eval`: how well a router (and every single signal) ranks the questions of two
finished runs, with the random and oracle routers beside it. No model is called.

Writes route_eval.json (every routing report, overall and per type, and the curves plotted),
route_eval.md (tables), route_eval.png (accuracy against teacher-call share: the router,
random, oracle, and each policy the router holds) and route_eval_types.png (the same curves
within each question type). The "primary" curve is the router's when one is given (a
ROUTER.json or --signal NAME); otherwise the available single signal with the highest overall
APGR.

Policies (routers.policies.policy): for a router, each policy it can run is evaluated on its own: the
router as it is (cascade, pre-routing or two-stage), and for a two-stage router also its cascade
alone and its first stage alone as a pre-router. Each gets its accuracy / teacher-share curve
and its mean latency per question along that curve, from the runs' recorded per-question
latencies: a question decided before the student answers costs the teacher's time alone when
escalated and the student's first sample alone when kept.
"""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tourney.errors import ConfigError, DataError
from tourney.harness.jsonl import json_safe
from tourney.routers.policies.calibrate import CalibratedRouter
from tourney.routers.evaluation.metrics import (
    CurvePoint, RoutingReport, cpt, mean_curve, oracle_curve, random_router_curve, routing_curve, routing_report,
    threshold_candidates,
)
from tourney.routers.policies.policy import CASCADE, PRE, PolicyView, policy_view
from tourney.routers.evaluation.route_eval_plots import curves_by_type, render_type_curves
from tourney.routers.evaluation.rundata import RoutingData, routing_data
from tourney.routers.features.signals import FEATURE_NAMES

ROUTER = "router"


@dataclass
class RouteEval:
    student_run: str
    teacher_run: str
    n: int
    samples: int
    reports: dict[str, RoutingReport]  # "router" (when given) then each available signal
    primary: str  # the name whose curve is plotted
    curves: dict[str, list[CurvePoint]]  # primary, random, oracle
    router: dict[str, Any] | None = None  # what the router is, and its threshold's figures here
    unavailable: list[str] = field(default_factory=list)  # signals with no value on these runs
    # type -> {primary, random, oracle} curves over that type's questions (route_eval_types.png)
    curves_by_type: dict[str, dict[str, list[CurvePoint]]] = field(default_factory=dict)
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> figures and curve

    def to_dict(self) -> dict[str, Any]:
        return json_safe({
            "student_run": self.student_run, "teacher_run": self.teacher_run, "n": self.n,
            "samples": self.samples, "primary": self.primary, "router": self.router,
            "unavailable": self.unavailable, "policies": self.policies,
            "reports": {k: v.to_dict() for k, v in self.reports.items()},
            "curves": {k: [[p.teacher_share, p.accuracy] for p in c] for k, c in self.curves.items()},
            "curves_by_type": {t: {k: [[p.teacher_share, p.accuracy] for p in c] for k, c in cs.items()}
                               for t, cs in self.curves_by_type.items()},
        })


def _report(data: RoutingData, conf: np.ndarray, signals: list[str]) -> RoutingReport:
    return routing_report(conf, data.student_correct, data.teacher_correct, data.types,
                          data.student_latency(signals), data.teacher_latency)


def evaluate_routing(data: RoutingData, *, router: CalibratedRouter | None = None,
                     signal: str | None = None) -> RouteEval:
    """Routing reports of the router (or one named signal) and of every available signal."""
    if router is not None and signal is not None:
        raise ConfigError("give a router or a signal, not both")
    if signal is not None and signal not in FEATURE_NAMES:
        raise ConfigError(f"unknown signal {signal!r}; known: {', '.join(FEATURE_NAMES)}")
    reports: dict[str, RoutingReport] = {}
    confs: dict[str, np.ndarray] = {}
    info: dict[str, Any] | None = None
    policies: dict[str, dict[str, Any]] = {}
    if router is not None:
        view = data.policy_view(router)
        confs[ROUTER] = view.rank
        reports[ROUTER] = routing_report(view.rank, data.student_correct, data.teacher_correct, data.types,
                                         kept=view.kept, up=view.up)
        fig = router.figures(view.score, data.student_correct, data.teacher_correct, view.kept, view.up, view.route)
        info = {"model": router.describe_model(), "policy": router.policy, "signals": list(router.signals),
                "threshold": router.threshold, "target_kind": router.target_kind, "target_value": router.target_value,
                "per_type_min_questions": None if router.per_type is None else router.per_type.min_questions,
                "at_threshold": fig.__dict__, "calibrated_dev": router.dev.__dict__,
                "calibrated_heldout": None if router.heldout is None else router.heldout.__dict__}
        policies = _policy_views(data, router, view)
    available = data.available_signals()
    for name in available:
        confs[name] = data.signal_confidence(name)
        reports[name] = _report(data, confs[name], [name])
    if signal is not None:
        if signal not in reports:
            raise ConfigError(f"signal {signal!r} has no value for any question of these runs "
                             "(no logprobs recorded? a single sample? no option scores?)")
        primary = signal
    elif router is not None:
        primary = ROUTER
    else:
        if not available:
            raise DataError("no signal is available on these runs")
        # the best single signal by APGR; NaN (no accuracy gap) ranks last, ties keep FEATURE_NAMES order
        primary = max(available, key=lambda k: _or(reports[k].overall.apgr, -math.inf))
    curves = {primary: routing_curve(confs[primary], data.student_correct, data.teacher_correct),
              "random": random_router_curve(data.student_correct, data.teacher_correct),
              "oracle": oracle_curve(data.student_correct, data.teacher_correct)}
    return RouteEval(student_run=data.student_run, teacher_run=data.teacher_run, n=data.n,
                     samples=data.samples, reports=reports, primary=primary, curves=curves, router=info,
                     unavailable=[n for n in FEATURE_NAMES if n not in available], policies=policies,
                     curves_by_type=curves_by_type(confs[primary], data.student_correct, data.teacher_correct,
                                                   list(data.types), primary))


def _policy_views(data: RoutingData, router: CalibratedRouter, view: PolicyView) -> dict[str, dict[str, Any]]:
    """The router's policy, and for a two-stage one its cascade alone and its first stage alone."""
    views = {router.policy: (view, router.threshold)}
    if router.pre is not None:
        lat = dict(student_first=data.student_latency_first, student_used=data.student_latency(router.signals),
                   teacher=data.teacher_latency)
        views[CASCADE] = (policy_view(CASCADE, view.score, unread=data.unread, **lat), router.threshold)
        pre = router.pre.scores(data.texts)
        views[PRE] = (policy_view(PRE, np.where(np.isnan(pre), -math.inf, pre), unread=data.unread, **lat),
                      router.pre.teacher_below)
    return {name: _policy_figures(data, v, thr) for name, (v, thr) in views.items()}


def _policy_figures(data: RoutingData, view: PolicyView, threshold: float) -> dict[str, Any]:
    s, t = data.student_correct, data.teacher_correct
    sa, ta = float(s.mean()), float(t.mean())
    order, counts, _ = threshold_candidates(view.rank)
    acc, lat = mean_curve(order, counts, s, t), mean_curve(order, counts, view.kept, view.up)
    shares = counts / data.n
    curve = [CurvePoint(float(x), float(a)) for x, a in zip(shares, acc)]
    c50 = cpt(curve, sa, ta, 0.5)
    sent = view.sent(threshold)
    at = np.where(sent, view.up, view.kept)
    return {"apgr": routing_report(view.rank, s, t, data.types).overall.apgr, "cpt50": c50, "cpt80": cpt(curve, sa, ta, 0.8),
            "latency_mean_at_cpt50_s": None if math.isnan(c50) else float(np.interp(c50, shares, lat)),
            "at_threshold": {"teacher_share": float(sent.mean()), "accuracy": float(np.where(sent, t, s).mean()),
                             "latency_mean_s": float(at.mean())},
            "teacher_only_latency_s": float(data.teacher_latency.mean()),
            "student_only_latency_s": float(data.student_latency_first.mean()),
            "curve": [[float(x), float(a), float(m)] for x, a, m in zip(shares, acc, lat)]}


def _or(x: float, default: float) -> float:
    return default if x is None or math.isnan(x) else x


def _num(x: float | None, fmt: str = "{:.3f}") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def _row(name: str, m) -> list[str]:
    return [name, str(m.n), _num(m.student_accuracy), _num(m.teacher_accuracy), _num(m.apgr),
            _num(m.cpt50), _num(m.cpt80), _num(m.auroc), _num(m.latency_mean_at_cpt50_s)]


HEADER = ["n", "student acc", "teacher acc", "APGR", "CPT(50%)", "CPT(80%)", "AUROC",
          "mean latency at CPT(50%) s"]


def _table(rows: list[list[str]], first: str = "router") -> str:
    header = [first, *HEADER]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def render_routing_markdown(ev: RouteEval) -> str:
    out = ["# Routing evaluation", "",
           f"- **student run**: {ev.student_run}", f"- **teacher run**: {ev.teacher_run}",
           f"- **questions**: {ev.n}; student samples per question: {ev.samples}", ""]
    if ev.router:
        r = ev.router
        at = r["at_threshold"]
        out += [f"Router: {r['model']} over {', '.join(r['signals'])}; target {r['target_kind']}="
                f"{r['target_value']}, threshold {r['threshold']:.6g}. On these runs it sends "
                f"{at['teacher_share']:.3f} of the questions to the teacher for accuracy {at['accuracy']:.3f}"
                f" (mean latency {_num(at['latency_mean_s'])} s, p95 {_num(at['latency_p95_s'])} s).", ""]
    out += ["APGR: area under cascade accuracy over teacher-call share, 0 = student, 1 = teacher, "
            "random = 0.5. CPT(x): teacher share needed to recover x of the accuracy gap. "
            "Reference rows: a random router and the oracle.", ""]
    any_report = next(iter(ev.reports.values()))
    rows = [_row(k, rep.overall) for k, rep in ev.reports.items()]
    o = any_report.overall
    rnd = ev.curves["random"]
    rows.append(["random", str(o.n), _num(o.student_accuracy), _num(o.teacher_accuracy), _num(o.random_apgr),
                 _num(cpt(rnd, o.student_accuracy, o.teacher_accuracy, 0.5)),
                 _num(cpt(rnd, o.student_accuracy, o.teacher_accuracy, 0.8)), "0.500", "n/a"])
    rows.append(["oracle", str(o.n), _num(o.student_accuracy), _num(o.teacher_accuracy), _num(o.oracle_apgr),
                 _num(o.oracle_cpt50), _num(o.oracle_cpt80), "n/a", "n/a"])
    out += ["## Overall", "", _table(rows)]
    if ev.policies:
        out += ["## Policies", "",
                "Each policy the router can run, on these runs: its curve's APGR and CPT, what its threshold "
                "does here, and the mean latency per question from the recorded latencies (a question decided "
                "before the student answers pays only the teacher when escalated, the student's first sample "
                "when kept).", "",
                "| policy | APGR | CPT(50%) | CPT(80%) | teacher share at threshold | accuracy at threshold "
                "| mean latency at threshold s | mean latency at CPT(50%) s |", "|---|---|---|---|---|---|---|---|"]
        for name, p in ev.policies.items():
            at = p["at_threshold"]
            out.append(f"| {name} | {_num(p['apgr'])} | {_num(p['cpt50'])} | {_num(p['cpt80'])} | "
                       f"{_num(at['teacher_share'])} | {_num(at['accuracy'])} | {_num(at['latency_mean_s'])} | "
                       f"{_num(p['latency_mean_at_cpt50_s'])} |")
        first = next(iter(ev.policies.values()))
        out += ["", f"Teacher alone: mean latency {_num(first['teacher_only_latency_s'])} s; student alone (one "
                f"sample): {_num(first['student_only_latency_s'])} s.", ""]
    prim = ev.reports[ev.primary]
    out += [f"## Per question type ({ev.primary})", "",
            _table([_row(t, m) for t, m in prim.by_type.items()], "type")]
    if ev.unavailable:
        out += [f"Unavailable on these runs: {', '.join(ev.unavailable)}.", ""]
    return "\n".join(out)


def render_plot(ev: RouteEval) -> bytes:
    """Accuracy against teacher-call share: the primary router, random and oracle (PNG bytes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.0, 4.0) if ev.policies else (5.5, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 2, 1) if ev.policies else fig.add_subplot()
    styles = {"random": dict(color="#999999", linestyle="--"), "oracle": dict(color="#54a24b", linestyle=":")}
    for name, curve in ev.curves.items():
        xs, ys = [p.teacher_share for p in curve], [p.accuracy for p in curve]
        ax.plot(xs, ys, label=name, **styles.get(name, dict(color="#4c78a8", linewidth=2)))
    if ev.router:
        at = ev.router["at_threshold"]
        ax.plot([at["teacher_share"]], [at["accuracy"]], "o", color="#e45756", label="router threshold")
    ax.set_xlim(0, 1)
    ax.set_xlabel("teacher-call share")
    ax.set_ylabel("cascade accuracy")
    ax.set_title(f"Routing curve ({ev.n} questions)")
    ax.legend(loc="lower right")
    if ev.policies:
        lx = fig.add_subplot(1, 2, 2)
        for name, p in ev.policies.items():
            pts = p["curve"]
            lx.plot([q[0] for q in pts], [q[2] for q in pts], label=name)
        lx.set_xlim(0, 1)
        lx.set_xlabel("teacher-call share")
        lx.set_ylabel("mean latency per question (s)")
        lx.set_title("Latency by policy (recorded latencies)")
        lx.legend(loc="upper left")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def run_route_eval(student_run: str | Path, teacher_run: str | Path, out_dir: str | Path, *,
                   router_path: str | Path | None = None, signal: str | None = None,
                   multi_sample: str = "max") -> RouteEval:
    """Read the runs, evaluate, write route_eval.{json,md,png} into out_dir."""
    router = CalibratedRouter.load(router_path) if router_path else None
    ev = evaluate_routing(routing_data(student_run, teacher_run, multi_sample=multi_sample),
                          router=router, signal=signal)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "route_eval.json").write_text(json.dumps(ev.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (out / "route_eval.md").write_text(render_routing_markdown(ev), encoding="utf-8")
    (out / "route_eval.png").write_bytes(render_plot(ev))
    (out / "route_eval_types.png").write_bytes(render_type_curves(ev.curves_by_type, ev.primary))
    return ev
