"""`tourney serve`: the routed pair as one OpenAI-compatible endpoint (tourney.serve)."""
from __future__ import annotations

import click

from tourney.cli.common import friendly_errors


@click.command("serve")
@click.option("--router", "router_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="ROUTER.json from `route calibrate` (names the student and the teacher).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=int, default=8000, show_default=True, help="0: any free port (printed).")
@click.option("--deadline-ms", type=float, default=30_000.0, show_default=True,
              help="Per-question deadline; a request may ask for less (tourney.deadline_ms), never more.")
@click.option("--api-key-env", default=None, help="Environment variable holding the key clients must send as a Bearer token.")
@click.option("--student", "student_spec", default=None, help="Override the student's model spec.")
@click.option("--teacher", "teacher_spec", default=None, help="Override the teacher's model spec.")
@click.option("--max-batch", type=int, default=16, show_default=True, help="In-process models: questions per batch at most.")
@click.option("--batch-window-ms", type=float, default=5.0, show_default=True,
              help="In-process models: how long a batch's first question waits for more.")
@click.option("--upstream-concurrency", type=int, default=8, show_default=True, help="Requests in flight to an upstream model.")
@click.option("--max-inflight", type=int, default=256, show_default=True, help="Requests answered at once; more get 429.")
@click.option("--max-body-bytes", type=int, default=1_000_000, show_default=True, help="Larger bodies get 413.")
@click.option("--log-dir", default=None, type=click.Path(file_okay=False),
              help="Request log: run directories per mode (tourney report / regress / route eval read them).")
@click.option("--log-questions/--no-log-questions", default=True, show_default=True,
              help="Write question text into the request log (off for privacy).")
@click.option("--shadow-share", type=float, default=0.0, show_default=True,
              help="Share of confident router answers also sent to the teacher after replying (logged pairs for route eval).")
@click.option("--drain-s", type=float, default=30.0, show_default=True, help="On SIGTERM, how long in-flight requests may take.")
@friendly_errors
def serve_cmd(router_path, host, port, deadline_ms, api_key_env, student_spec, teacher_spec, max_batch,
              batch_window_ms, upstream_concurrency, max_inflight, max_body_bytes, log_dir, log_questions,
              shadow_share, drain_s) -> None:
    """Serve /v1/chat/completions and /v1/completions; the request's model picks the mode:
    router, router-speed, router-accuracy, student or teacher."""
    from tourney.routers.runtime.bundle import RouterBundle
    from tourney.serve.config import ServeConfig
    from tourney.serve.server import serve

    cfg = ServeConfig(router=router_path, host=host, port=port, deadline_ms=deadline_ms,
                      api_key_env=api_key_env,
                      student_spec=student_spec, teacher_spec=teacher_spec, max_batch=max_batch,
                      batch_window_ms=batch_window_ms, upstream_concurrency=upstream_concurrency,
                      max_inflight=max_inflight, max_body_bytes=max_body_bytes, log_dir=log_dir,
                      log_questions=log_questions, shadow_share=shadow_share, drain_s=drain_s)
    # a bad router file fails here, in one line, before the server starts
    warning = RouterBundle.load(router_path).with_specs(student_spec, teacher_spec).student_warning(router_path)
    if warning:
        click.echo(warning, err=True)
    serve(cfg, on_ready=lambda url: click.echo(f"tourney serve: listening on {url}", err=True))
