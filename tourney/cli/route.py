"""`tourney route ...` and `tourney submit`: calibration, routing metrics, timed submissions."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from tourney.cli.common import friendly_errors, progress_bar
from tourney.schema import parse_option


@click.group("route")
def route() -> None:
    """Route questions between the student and the teacher: calibrate a threshold, evaluate routers."""


@route.command("calibrate")
@click.option("--student", required=True, type=click.Path(exists=True, file_okay=False), help="Dev student run directory.")
@click.option("--teacher", required=True, type=click.Path(exists=True, file_okay=False), help="Dev teacher run directory (same questions).")
@click.option("--target", required=True, help="share=F | accuracy=F | latency_mean=S | latency_p95=S.")
@click.option("--absolute", is_flag=True, help="Read accuracy=F as an absolute accuracy, not a fraction of the teacher's.")
@click.option("--signals", default=None, help="auto (default): the score with the best cross-validated APGR on dev among single signals, confidence, gain and question routers; confidence / gain: among those kinds only; NAME[,NAME...] or combined: a confidence router over them.")
@click.option("--policy", type=click.Choice(["auto", "cascade", "pre-routing", "two-stage"]), default="auto", show_default=True,
              help="cascade; pre-routing (decide from the question before the student answers); two-stage (clear cases up front, the cascade for the rest); auto: by cross-validation.")
@click.option("--per-type", type=click.Choice(["auto", "off"]), default="auto", show_default=True,
              help="Per-type thresholds where a type has enough dev questions, if cross-validation favours them.")
@click.option("--heldout-student", type=click.Path(exists=True, file_okay=False), default=None, help="Held-out student run.")
@click.option("--heldout-teacher", type=click.Path(exists=True, file_okay=False), default=None, help="Held-out teacher run.")
@click.option("--split", type=float, default=None, help="Hold out this fraction of the dev questions instead.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --split permutation and the --signals auto folds.")
@click.option("--split-ties/--no-split-ties", default=True, show_default=True,
              help="For a share target: order questions of equal confidence by a hash of their text, so any teacher share is reachable.")
@click.option("--prior-runs", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Run directories of other models on the same or similar questions: a difficulty prior (repeatable).")
@click.option("--prior-covers", type=click.Choice(["new", "seen"]), default="new", show_default=True,
              help="new: the questions to route are not in the --prior-runs (a tournament); seen: they are "
                   "(another team's records of the same public benchmark).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="ROUTER.json to write.")
@friendly_errors
def route_calibrate(student, teacher, target, absolute, signals, policy, per_type, heldout_student, heldout_teacher,
                    split, seed, split_ties, prior_runs, prior_covers, out) -> None:
    """Choose a router and its threshold for a target on dev runs; report how it holds on held-out ones."""
    from tourney.routers.fitting.fit import CalibrateConfig, calibrate_runs, describe

    names = tuple(s.strip() for s in signals.split(",") if s.strip()) if signals else None
    cfg = parse_option(CalibrateConfig, dict(
        student=student, teacher=teacher, target=target, out=out, absolute=absolute, signals=names, policy=policy,
        per_type=per_type, heldout_student=heldout_student, heldout_teacher=heldout_teacher, split=split, seed=seed,
        split_ties=split_ties, prior_runs=tuple(prior_runs), prior_covers=prior_covers), "route calibrate")
    click.echo(describe(calibrate_runs(cfg)))
    click.echo(f"wrote {out}")


@route.command("eval")
@click.option("--student", required=True, type=click.Path(exists=True, file_okay=False), help="Student run directory.")
@click.option("--teacher", required=True, type=click.Path(exists=True, file_okay=False), help="Teacher run directory (same questions).")
@click.option("--router", "router_path", type=click.Path(exists=True, dir_okay=False), default=None, help="ROUTER.json from `route calibrate`.")
@click.option("--signal", default=None, help="Evaluate this single signal as the router instead.")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Output directory (default: the student run).")
@friendly_errors
def route_eval(student, teacher, router_path, signal, out) -> None:
    """Routing metrics (APGR, CPT, AUROC; overall and per type) from two runs, without calling a model."""
    from tourney.routers.evaluation.route_eval import render_routing_markdown, run_route_eval

    out = out or student
    ev = run_route_eval(student, teacher, out, router_path=router_path, signal=signal)
    click.echo(render_routing_markdown(ev))
    click.echo(f"wrote {Path(out) / 'route_eval.md'}, route_eval.json, route_eval.png")


@click.command("submit")
@click.option("--questions", required=True, help="Question file; answers may be absent.")
@click.option("--router", "router_path", required=True, type=click.Path(exists=True, dir_okay=False), help="ROUTER.json from `route calibrate` (names the models).")
@click.option("--mode", type=click.Choice(["speed", "accuracy", "balanced"]), default="balanced", show_default=True,
              help="speed: the student alone; accuracy: the teacher (the student once --budget-s is spent); balanced: the router decides.")
@click.option("--deadline-ms", type=float, required=True,
              help="Per-question deadline (> 0, at most one day), from when the question is sent.")
@click.option("--budget-s", type=float, default=None,
              help="Total wall-clock budget (> 0, at most a year); once spent, the student answers alone.")
@click.option("--limit", type=int, default=None, help="Answer the first N questions only (as in eval); a larger N later resumes.")
@click.option("--warmup/--no-warmup", default=True, show_default=True,
              help="Call each model once on the first batch before the clock starts (answers discarded).")
@click.option("--concurrency", type=int, default=None,
              help="Questions in flight, continuously [default: 8 when every model is a server, else 1 (keep 1 for in-process models)].")
@click.option("--batch-size", type=int, default=1, show_default=True,
              help="In-process models: questions answered together (one student call, one teacher call); each one's deadline counts from the batch's start.")
@click.option("--student", "student_spec", default=None, help="Override the student's model spec.")
@click.option("--teacher", "teacher_spec", default=None, help="Override the teacher's model spec.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory (resumed if it holds a log).")
@click.option("--overwrite", is_flag=True, help="Discard what --out holds instead of resuming it.")
@friendly_errors
def submit_cmd(questions, router_path, mode, deadline_ms, budget_s, limit, warmup, concurrency, batch_size,
               student_spec, teacher_spec, out, overwrite) -> None:
    """Answer a tournament question file under per-question deadlines; write submission.{jsonl,csv}.
    With gold answers in the file, the summary also scores the submission (overall and per type).
    Exits 3 when some questions' requests failed for good (run it again to ask those again)."""
    from tourney.routers.runtime.bundle import RouterBundle
    from tourney.routers.runtime.cascade import load_cascade
    from tourney.routers.runtime.submit import (
        SERVER_CONCURRENCY, SubmitConfig, failed_line, load_submit_questions, render_summary, run_submission,
    )
    from tourney.harness.report_content import printable

    cfg = parse_option(SubmitConfig, dict(questions=questions, out=out, mode=mode, deadline_ms=deadline_ms,
                                          budget_s=budget_s, concurrency=concurrency, batch_size=batch_size,
                                          router=router_path, limit=limit, warmup=warmup), "tourney submit")
    qs = load_submit_questions(questions)  # bad data fails before a model is loaded
    bundle = RouterBundle.load(router_path).with_specs(student_spec, teacher_spec)
    warning = bundle.student_warning(router_path)
    if warning:
        click.echo(warning, err=True)
    cascade = load_cascade(bundle, mode, concurrency=concurrency or SERVER_CONCURRENCY, batch_size=max(batch_size, 16),
                           request_timeout_s=deadline_ms / 1000.0,
                           student_backup=mode != "accuracy" or budget_s is not None)
    bar, update = progress_bar(f"submit ({mode})")
    try:
        for b in (cascade.student, cascade.teacher):
            if b is not None:
                b.check()
        with bar:
            summary = run_submission(cfg, cascade, qs, overwrite=overwrite, progress=update)
    finally:
        for b in (cascade.student, cascade.teacher):
            if b is not None:
                b.close()
    click.echo(printable(render_summary(summary)))
    click.echo(f"wrote {Path(out) / 'submission.csv'}")
    line = failed_line(summary, out)
    if line:
        from tourney.cli.main import FAILED_REQUESTS_EXIT

        click.echo(line, err=True)
        sys.exit(FAILED_REQUESTS_EXIT)


from tourney.cli.route_plan import plan_cmd  # noqa: E402 -- its own module; registered here

route.add_command(plan_cmd)
