"""The routing curve per question type: each type's curves over its own questions, natural order."""
from __future__ import annotations

import numpy as np

from tourney.routers.evaluation.route_eval_plots import curves_by_type, render_type_curves


def test_curves_per_type_run_from_the_students_to_the_teachers_accuracy() -> None:
    types = ["long_chain", "one_step", "one_step", "long_chain", "one_step", "two_step"]
    s = np.array([0, 1, 0, 0, 1, 1], dtype=float)
    t = np.array([1, 1, 1, 0, 1, 1], dtype=float)
    conf = np.array([0.1, 0.9, 0.2, 0.5, 0.8, 0.7])
    curves = curves_by_type(conf, s, t, types, "router")
    assert list(curves) == ["one_step", "two_step", "long_chain"]  # the generator's order
    one = curves["one_step"]
    assert set(one) == {"router", "random", "oracle"}
    assert one["router"][0].accuracy == 2 / 3 and one["router"][-1].accuracy == 1.0
    # within one_step the least confident question (conf 0.2) is the wrong one: escalating it first
    # reaches the teacher's accuracy at a third of the type, as the oracle does
    assert one["router"][1].teacher_share == 1 / 3 and one["router"][1].accuracy == 1.0
    assert [p.accuracy for p in curves["long_chain"]["oracle"]] == [0.0, 0.5, 0.5]
    png = render_type_curves(curves, "router")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert render_type_curves(curves_by_type(conf, s, t, ["$\\frac{$"] * 6, "x"), "x").startswith(b"\x89PNG")


def test_route_eval_writes_the_per_type_curves(tmp_path) -> None:
    import json

    from tests.routers.test_route_eval import make_runs
    from tourney.routers.evaluation.route_eval import run_route_eval

    s, t, _, _ = make_runs(tmp_path)
    ev = run_route_eval(s, t, tmp_path / "out")
    assert (tmp_path / "out" / "route_eval_types.png").read_bytes().startswith(b"\x89PNG")
    saved = json.loads((tmp_path / "out" / "route_eval.json").read_text())["curves_by_type"]
    assert list(ev.curves_by_type) == ["short", "long"]  # gsm8k-style names: short before long
    assert set(saved) == set(ev.curves_by_type) and set(saved[next(iter(saved))]) == {ev.primary, "random", "oracle"}
    assert sum(len(c["random"]) - 1 for c in saved.values()) == ev.n  # every question in exactly one type
