"""`tourney` command line: a thin layer over functions the tests call directly.

Every expected failure (bad data, unknown spec, unreachable server) becomes one line on stderr
naming what is wrong, and exit code 2; results already written stay on disk.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from tourney.cli.common import friendly_errors, parse_model_args, with_backend
from tourney.models.registry import default_options


@click.group()
@click.version_option(package_name="tourney")
def main() -> None:
    """Distil a large reasoning model into a fast one, measure both, route between them."""


@main.command("eval")
@click.option("--model", "model", required=True, help="Model spec: hf:PATH, openai:MODEL@URL, gguf:PATH, vllm:ID, replay:FILE, mini-teacher, mini-student.")
@click.option("--data", required=True, help="Question file (.jsonl/.json/.csv/.parquet) or hf:NAME[:CONFIG][:SPLIT].")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory (resumed if it exists).")
@click.option("--limit", type=int, default=None, help="Evaluate the first N questions only.")
@click.option("--samples", type=int, default=1, show_default=True, help="Samples per question.")
@click.option("--concurrency", type=int, default=8, show_default=True, help="Requests in flight (server backends).")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Questions per backend call; the unit of resumption.")
@click.option("--max-tokens", type=int, default=512, show_default=True)
@click.option("--temperature", type=float, default=0.0, show_default=True)
@click.option("--top-p", type=float, default=1.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--logprobs", type=int, default=None, help="Record token logprobs (0) and top-k alternatives (k).")
@click.option("--template", default=None, help="Prompt template name (base, cot-chat, mc-base, mc-chat); default: chosen per question.")
@click.option("--chat/--no-chat", default=False, show_default=True, help="Send chat messages (instruct models).")
@click.option("--model-arg", "model_args", multiple=True, help="Backend option key=value (repeatable), e.g. device=cuda.")
@click.option("--overwrite", is_flag=True, help="Discard what --out holds instead of resuming it.")
@friendly_errors
def eval_cmd(model, data, out, limit, samples, concurrency, batch_size, max_tokens, temperature, top_p,
             seed, logprobs, template, chat, model_args, overwrite) -> None:
    """Evaluate a model on a question set; write results.jsonl and report.{json,md,html}."""
    from tourney.harness.questions import load_questions
    from tourney.harness.report import render_run_markdown
    from tourney.harness.runner import EvalConfig, run_eval

    args, chunk = default_options(model, chat, batch_size, concurrency)
    args.update(parse_model_args(model_args))
    cfg = EvalConfig(model=model, data=data, out=out, limit=limit, samples=samples, max_tokens=max_tokens,
                     temperature=temperature, top_p=top_p, seed=seed, logprobs=logprobs, template=template,
                     chat=chat, chunk_size=chunk, model_args=args)
    questions = load_questions(data, limit=limit)  # bad data fails before a model is loaded
    report = with_backend(model, args, f"eval {model}", lambda backend, progress: run_eval(
        cfg, backend, questions=questions, overwrite=overwrite, progress=progress))
    click.echo(render_run_markdown(report))
    click.echo(f"wrote {Path(out) / 'report.md'}")


@main.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@friendly_errors
def report_cmd(run_dir: str) -> None:
    """Re-render report.{json,md,html} from RUN_DIR/results.jsonl."""
    from tourney.harness.report import render_run_markdown, write_reports

    click.echo(render_run_markdown(write_reports(run_dir)))


@main.command("demo")
@click.option("--out", default="runs/demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--limit", type=int, default=None, help="First N test questions only.")
@click.option("--overwrite", is_flag=True, help="Re-run instead of resuming what --out holds.")
@friendly_errors
def demo_cmd(out: str, limit: int | None, overwrite: bool) -> None:
    """Evaluate the shipped miniature models on the miniature test set and compare them."""
    from tourney.cli.demo import run_demo

    run_demo(out, limit=limit, overwrite=overwrite, echo=click.echo)


@main.group("mini")
def mini() -> None:
    """The miniature teacher/student pair."""


@mini.command("train")
@click.option("--work", default="runs/mini-train", show_default=True, type=click.Path(file_okay=False),
              help="Working folder (data, tokenizer, per-epoch checkpoints); rerun to resume.")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Where final checkpoints go (default: the shipped folder).")
@click.option("--which", type=click.Choice(["teacher", "student", "both"]), default="both", show_default=True)
@friendly_errors
def mini_train(work: str, out: str | None, which: str) -> None:
    """Retrain the shipped miniature pair from scratch (about 40 minutes on a 2-core CPU)."""
    from tourney.models.registry import MINI_DIR
    from tourney.trainers.mini import train_mini

    names = ("teacher", "student") if which == "both" else (which,)
    for name, path in train_mini(work, out_dir=out or MINI_DIR, which=names, log=click.echo).items():
        click.echo(f"{name}: {path}")


@mini.command("data")
@click.option("--out", default="runs/mini-data", show_default=True, type=click.Path(file_okay=False))
def mini_data(out: str) -> None:
    """Write the miniature train/dev/test splits as JSONL."""
    from tourney.harness.synthetic import write_splits

    for split, path in write_splits(out).items():
        click.echo(f"{split}: {path}")


@main.command("export-gguf")
@click.argument("checkpoint")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--dtype", type=click.Choice(["f32", "f16"]), default="f32", show_default=True)
@friendly_errors
def export_gguf_cmd(checkpoint: str, out: str, dtype: str) -> None:
    """Export a Qwen3-family checkpoint (a folder or a mini alias) to GGUF for llama.cpp."""
    from tourney.models.gguf_export import export_gguf
    from tourney.models.registry import ALIASES

    path = ALIASES.get(checkpoint, checkpoint).removeprefix("hf:")
    click.echo(f"wrote {export_gguf(path, out, dtype=dtype)}")


@main.command("reference")
@click.option("--config", default=None, type=click.Path(exists=True, dir_okay=False), help="Pair file (default: the shipped Qwen3 pair).")
@friendly_errors
def reference_cmd(config: str | None) -> None:
    """Print the vLLM serve commands and the eval commands for the real teacher/student pair."""
    from tourney.models.reference import REFERENCE_FILE, load_reference

    pair = load_reference(config or REFERENCE_FILE)
    for role in ("teacher", "student"):
        m = getattr(pair, role)
        click.echo(f"# {role}: {m.model}, {m.weight_gib_per_gpu():.0f} GiB of weights per GPU")
        click.echo(m.serve_command())
        click.echo(pair.eval_command(role, f"runs/{role}"))
        click.echo("")


@main.command("regress")
@click.argument("baseline", type=click.Path(exists=True, file_okay=False))
@click.argument("candidate", type=click.Path(exists=True, file_okay=False))
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Significance level (per-type p-values are Holm-adjusted).")
@click.option("--min-delta", type=float, default=0.0, show_default=True, help="Flag only accuracy drops larger than this fraction (0.02 = 2 points).")
@click.option("--out", "out_md", type=click.Path(dir_okay=False), default=None, help="Also write the Markdown summary here.")
@click.option("--json", "out_json", type=click.Path(dir_okay=False), default=None, help="Also write the full comparison as JSON here.")
@friendly_errors
def regress_cmd(baseline: str, candidate: str, alpha: float, min_delta: float, out_md: str | None,
                out_json: str | None) -> None:
    """Compare CANDIDATE with BASELINE (two run directories) on the same questions; exit 1 when
    the candidate is significantly worse overall or on any question type."""
    from tourney.harness.regress import RegressConfig, compare_runs, render_regression_markdown

    result = compare_runs(baseline, candidate, RegressConfig(alpha=alpha, min_delta=min_delta))
    text = render_regression_markdown(result)
    click.echo(text)
    if out_md:
        Path(out_md).write_text(text, encoding="utf-8")
    if out_json:
        Path(out_json).write_text(json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    sys.exit(1 if result.failed else 0)


def _register_subcommands() -> None:
    # The distill and route commands live beside the code they drive; their modules import
    # nothing heavy at load time, so `tourney --help` stays fast.
    from tourney.cli.route import route, submit_cmd
    from tourney.cli.distill import distill
    from tourney.cli.serve import serve_cmd

    main.add_command(distill)
    main.add_command(route)
    main.add_command(submit_cmd)
    main.add_command(serve_cmd)


_register_subcommands()

if __name__ == "__main__":
    main()
