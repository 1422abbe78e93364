"""The routing curve per question type (route_eval_types.png): one panel per type, cascade accuracy
against the share of that type's questions sent to the teacher, for the primary router (or signal),
a random router and the oracle. A router that ranks well overall can rank badly within a type
(it may only be telling the types apart); this shows it where the overall curve cannot.
"""
from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING
from tourney.harness.report_content import natural_order, printable
from tourney.routers.evaluation.metrics import CurvePoint

if TYPE_CHECKING:
    import numpy as np

STYLES = {"random": dict(color="#999999", linestyle="--"), "oracle": dict(color="#54a24b", linestyle=":")}
PRIMARY_STYLE = dict(color="#4c78a8", linewidth=2)
COLUMNS = 3  # panels per row


def render_type_curves(curves_by_type: dict[str, dict[str, list[CurvePoint]]], primary: str) -> bytes:
    """PNG of one panel per type (in the order given); each panel holds its curves by name."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    types = list(curves_by_type)
    cols = max(1, min(COLUMNS, math.ceil(math.sqrt(len(types)))))  # 4 types: 2 x 2
    rows = max(1, math.ceil(len(types) / cols))
    fig = Figure(figsize=(3.4 * cols + 1.6, 2.9 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(len(types))] or [fig.add_subplot()]
    for ax, t in zip(axes, types):
        for name, curve in curves_by_type[t].items():
            style = STYLES.get(name, PRIMARY_STYLE)
            ax.plot([p.teacher_share for p in curve], [p.accuracy for p in curve],
                    label=_label(name), **style)
        n = len(curves_by_type[t].get("random", [None])) - 1  # the random curve has a point per k = 0..n
        ax.set_title(_label(t) + (f" (n={n})" if n > 0 else ""), fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("teacher share of the type")
        ax.set_ylabel("accuracy")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper", frameon=False)
    fig.suptitle(f"Routing curve per question type ({_label(primary)})")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _label(text: str) -> str:
    # Drawn as written: "$" would start mathtext, control characters would be missing glyphs.
    return printable(text).replace("$", r"\$")


def curves_by_type(confidence: "np.ndarray", student_correct: "np.ndarray", teacher_correct: "np.ndarray",
                   types: list[str], primary: str) -> dict[str, dict[str, list[CurvePoint]]]:
    """Per type (natural order): the primary's routing curve over that type's questions alone, with
    the random and oracle curves of the same questions (routers.evaluation.metrics, unchanged)."""
    import numpy as np

    from tourney.routers.evaluation.metrics import oracle_curve, random_router_curve, routing_curve

    kinds = np.asarray(types)
    out = {}
    for t in natural_order(types):
        m = kinds == t
        s, c = student_correct[m], teacher_correct[m]
        out[t] = {primary: routing_curve(confidence[m], s, c), "random": random_router_curve(s, c),
                  "oracle": oracle_curve(s, c)}
    return out
