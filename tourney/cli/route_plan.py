"""`tourney route plan`: the mode and threshold to submit with, planned from dev runs (routers.plan)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from tourney.cli.common import friendly_errors


@click.command("plan")
@click.option("--student", required=True, type=click.Path(exists=True, file_okay=False), help="Dev student run directory (latencies recorded).")
@click.option("--teacher", required=True, type=click.Path(exists=True, file_okay=False), help="Dev teacher run directory (same questions).")
@click.option("--router", "router_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="ROUTER.json from `route calibrate`: adds the balanced mode, at its threshold and a grid of teacher shares.")
@click.option("--deadline-ms", type=float, required=True, help="Per-question deadline (> 0), from when the question is sent.")
@click.option("--budget-s", type=float, default=None, help="Total wall-clock budget of the submission (> 0); default: none.")
@click.option("--questions", type=int, default=None, help="Questions to submit [default: as many as the dev runs hold].")
@click.option("--concurrency", type=int, default=8, show_default=True, help="Questions in flight (as `tourney submit --concurrency`).")
@click.option("--objective", type=click.Choice(["best", "cheapest"]), default="best", show_default=True,
              help="best: the most accurate option with <= 1% missed deadlines within the budget; cheapest: the least request-seconds within 1 point of it.")
@click.option("--student-load", default=None, metavar="KNEE:SLOPE",
              help="How the student's server slows with load: above KNEE running requests, each one more adds SLOPE to its inter-token latency (16:0.02 = 2%). Default: never slows.")
@click.option("--teacher-load", default=None, metavar="KNEE:SLOPE", help="The same for the teacher's server.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap and of the replay order beyond the dev questions.")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Write plan.json and plan.png (accuracy against p95 latency) here.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON instead of the table.")
@friendly_errors
def plan_cmd(student, teacher, router_path, deadline_ms, budget_s, questions, concurrency, objective, student_load,
             teacher_load, seed, out, as_json) -> None:
    """Plan each mode's accuracy, latency, missed deadlines and cost from dev runs, without calling a
    model, and recommend the mode (and threshold) for a deadline, budget and concurrency."""
    from tourney.harness.rundir import make_dir, write_json_atomic
    from tourney.routers.planning.plan import check_plan_config, make_plan
    from tourney.routers.planning.report import render_plot, render_table

    cfg = check_plan_config(student=student, teacher=teacher, router=router_path, deadline_ms=deadline_ms,
                            budget_s=budget_s, questions=questions, concurrency=concurrency, objective=objective,
                            student_load=student_load, teacher_load=teacher_load, seed=seed)
    plan = make_plan(cfg)
    click.echo(json.dumps(plan.to_dict(), indent=2, allow_nan=False) if as_json else render_table(plan))
    if out:
        d = make_dir(Path(out), "the plan directory")
        write_json_atomic(d / "plan.json", plan.to_dict())
        (d / "plan.png").write_bytes(render_plot(plan))
        if not as_json:
            click.echo(f"wrote {d / 'plan.json'}, {d / 'plan.png'}")
