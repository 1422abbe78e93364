"""PNG plots of evaluation reports: accuracy per type, latency per type, accuracy against latency.

matplotlib is imported inside the functions because importing it costs about a second. The object
API with an explicit Agg canvas is used instead of pyplot: no global figure state, no backend
switch. Legends sit outside the axes (to the right), so they never cover a bar or a point; plots
are saved without "Software" metadata, so their bytes do not change with the matplotlib version.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from tourney.harness.report_content import printable

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# One colour per model (tab10's first colours); the "overall" bar of a single run in grey-teal.
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d")
OVERALL_COLOR = "#72b7b2"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


@dataclass(frozen=True)
class TypePoint:
    """One (model, type) group as the plots draw it."""

    label: str  # the type's name (with its share) on the axis
    accuracy: float | None
    ci95: tuple[float | None, float | None]
    latency_p50_s: float | None
    latency_p95_s: float | None


def points_of(report: dict[str, Any], types: Sequence[str], overall: bool = True) -> list[TypePoint]:
    """The report's groups, in the given type order, then overall; a type the report lacks is a
    point with no values (drawn as nothing)."""
    names = [*types, "overall"] if overall else list(types)
    out = []
    for name in names:
        g = report["overall"] if name == "overall" else report["by_type"].get(name)
        if g is None:
            out.append(TypePoint(name, None, (None, None), None, None))
        else:
            ci = g["ci95"]
            out.append(TypePoint(name, g["accuracy"], (ci[0], ci[1]), g["latency_p50_s"], g["latency_p95_s"]))
    return out


def _text(label: str) -> str:
    """A label as matplotlib should draw it: as written. "$...$" would be parsed as mathtext (and a
    type named "$\\frac{$" would end the report in a parse error), control characters drawn as
    missing glyphs."""
    return printable(label).replace("$", r"\$")


def _figure(width: float, height: float = 3.4) -> "Figure":
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png(fig: "Figure") -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _ticks(ax, labels: Sequence[str]) -> None:
    # Many or long type names would overlap on the axis: slant them.
    slant = len(labels) > 5 or max((len(s) for s in labels), default=0) > 12
    style: dict[str, Any] = {"rotation": 30, "ha": "right"} if slant else {}
    ax.set_xticks(range(len(labels)), [_text(x) for x in labels], **style)


def _err(acc: float, ci: tuple[float | None, float | None]) -> tuple[float, float]:
    low, high = ci
    if low is None or high is None:
        return (0.0, 0.0)
    return (max(acc - low, 0.0), max(high - acc, 0.0))


def accuracy_bars(series: dict[str, list[TypePoint]], title: str) -> bytes:
    """Accuracy per type with CI bars: one bar group per type, one bar per model (series)."""
    labels = [p.label for p in next(iter(series.values()))]
    k = len(series)
    fig = _figure(max(4.5, 1.5 + 0.55 * len(labels) * max(k, 1.6)))
    ax = fig.add_subplot()
    width = 0.8 / k
    for i, (model, points) in enumerate(series.items()):
        xs = [j - 0.4 + width * (i + 0.5) for j in range(len(points))]
        acc = [p.accuracy if p.accuracy is not None else 0.0 for p in points]
        errs = [_err(a, p.ci95) for a, p in zip(acc, points)]
        colors: Any = PALETTE[i % len(PALETTE)]
        if k == 1:  # a single run: overall in its own colour
            colors = [PALETTE[0] if p.label != "overall" else OVERALL_COLOR for p in points]
        ax.bar(xs, acc, width=width * 0.95, color=colors, label=_text(model),
               yerr=[[e[0] for e in errs], [e[1] for e in errs]], capsize=3)
    _ticks(ax, labels)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    if k > 1:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return png(fig)


def latency_bars(series: dict[str, list[TypePoint]], title: str) -> bytes:
    """Latency p50 (solid) and p95 (light) per type, one pair of bars per model."""
    labels = [p.label for p in next(iter(series.values()))]
    k = len(series)
    fig = _figure(max(4.5, 1.5 + 0.55 * len(labels) * max(k, 1.6)))
    ax = fig.add_subplot()
    width = 0.8 / (2 * k)
    for i, (model, points) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        base = [j - 0.4 + 2 * width * i for j in range(len(points))]
        p50 = [p.latency_p50_s or 0.0 for p in points]
        p95 = [p.latency_p95_s or 0.0 for p in points]
        name = f"{_text(model)} " if k > 1 else ""
        ax.bar([x + width * 0.5 for x in base], p50, width=width * 0.95, color=color, label=f"{name}p50")
        ax.bar([x + width * 1.5 for x in base], p95, width=width * 0.95, color=color, alpha=0.45,
               label=f"{name}p95")
    _ticks(ax, labels)
    ax.set_ylabel("latency per request (s)")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return png(fig)


def accuracy_vs_latency(series: dict[str, list[TypePoint]], title: str) -> bytes:
    """Accuracy (with its CI) against p50 latency: one point per type and model, colour per model,
    marker per type, so a cheaper-and-as-good model sits to the left at the same height."""
    fig = _figure(6.4, 4.0)
    ax = fig.add_subplot()
    types: list[str] = []
    for points in series.values():
        types += [p.label for p in points if p.label not in types]
    for i, (model, points) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        for p in points:
            if p.accuracy is None or p.latency_p50_s is None:
                continue
            low, high = _err(p.accuracy, p.ci95)
            ax.errorbar([p.latency_p50_s], [p.accuracy], yerr=[[low], [high]], color=color, capsize=3,
                        marker=MARKERS[types.index(p.label) % len(MARKERS)], markersize=7, linestyle="none")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=PALETTE[i % len(PALETTE)], marker="o", linestyle="none", label=_text(m))
               for i, m in enumerate(series)] if len(series) > 1 else []
    handles += [Line2D([], [], color="#555555", marker=MARKERS[j % len(MARKERS)], linestyle="none", label=_text(t))
                for j, t in enumerate(types)]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_ylim(0, 1.05)
    ax.set_xlim(left=0)
    ax.set_xlabel("latency p50 per request (s)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    return png(fig)
