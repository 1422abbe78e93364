"""A plan shown: the table (rich) and the plot (accuracy against p95 latency, modes marked)."""
from __future__ import annotations

import math

from tourney.routers.planning.plan import Plan, PlanOption

MARKERS = {"speed": ("o", "#f58518"), "accuracy": ("s", "#e45756"), "balanced": ("^", "#4c78a8")}


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _interval(x: float, ci: tuple[float, float]) -> str:
    return f"{100 * x:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _thr(o: PlanOption) -> str:
    if o.threshold is None:
        return ""
    return "inf" if math.isinf(o.threshold) and o.threshold > 0 else \
        "-inf" if math.isinf(o.threshold) else f"{o.threshold:.4g}"


def render_table(plan: Plan) -> str:
    """The plan as a text table (rich), the recommendation and the notes under it."""
    from rich.console import Console
    from rich.table import Table

    c = plan.config
    title = (f"plan: {c['questions'] or plan.dev_questions} questions, deadline {c['deadline_ms']:g} ms, "
             f"budget {'none' if c['budget_s'] is None else format(c['budget_s'], 'g') + ' s'}, "
             f"concurrency {c['concurrency']} (from {plan.dev_questions} dev questions)")
    t = Table(title=title, title_justify="left")
    for col in ("option", "threshold", "accuracy % [95%]", "p50 s", "p95 s", "missed % [95%]", "budget", "teacher",
                "student s/1k", "teacher s/1k", "wall s", ""):
        t.add_column(col, justify="left" if col in ("option", "") else "right")
    for i, o in enumerate(plan.options):
        mark = "<- recommended" if i == plan.recommended else ("" if o.feasible else "x")
        t.add_row(o.label, _thr(o), _interval(o.accuracy, o.ci95),
                  f"{o.latency_p50_s:.3f}", f"{o.latency_p95_s:.3f}", _interval(o.missed_share, o.missed_ci95), _pct(o.budget_share),
                  _pct(o.teacher_share), f"{o.student_s_per_1k:.0f}", f"{o.teacher_s_per_1k:.0f}",
                  f"{o.makespan_s:.1f}", mark)
    console = Console(width=200, record=True, file=_Null(), color_system=None)
    console.print(t)
    rec = "none" if plan.recommended is None else plan.options[plan.recommended].label
    lines = [console.export_text().rstrip(), "x: more than 1% missed deadlines, or answers after the budget was spent",
             f"recommended: {rec}: {plan.reason}"]
    lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)


class _Null:
    def write(self, _: str) -> int:
        return 0

    def flush(self) -> None:
        pass


def render_plot(plan: Plan) -> bytes:
    """PNG: each option's accuracy (with its interval) against its p95 latency; the balanced
    thresholds joined by a line, the recommendation circled, the deadline dashed."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for mode, (marker, color) in MARKERS.items():
        opts = [o for o in plan.options if o.mode == mode]
        if not opts:
            continue
        if mode == "balanced":
            line = sorted((o for o in opts if o.dev_share is not None), key=lambda o: o.dev_share)
            ax.plot([o.latency_p95_s for o in line], [o.accuracy for o in line], color=color, alpha=0.5)
        for o in opts:
            lo, hi = o.ci95
            ax.errorbar([o.latency_p95_s], [o.accuracy], yerr=[[o.accuracy - lo], [hi - o.accuracy]], fmt=marker,
                        color=color, markersize=9 if o.dev_share is None else 6, capsize=2,
                        label=o.label if o.dev_share is None else None, alpha=1.0 if o.feasible else 0.45)
    if plan.recommended is not None:
        r = plan.options[plan.recommended]
        ax.plot([r.latency_p95_s], [r.accuracy], "o", markersize=18, markerfacecolor="none",
                markeredgecolor="black", label=f"recommended: {r.label}")
    ax.axvline(plan.config["deadline_ms"] / 1000.0, color="#999999", linestyle="--", label="deadline")
    ax.set_xlabel("p95 latency per question (s)")
    ax.set_ylabel("accuracy (95% interval)")
    ax.set_title(f"route plan: concurrency {plan.config['concurrency']}, deadline {plan.config['deadline_ms']:g} ms",
                 fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
