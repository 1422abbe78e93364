"""`tourney` command line: a thin layer over functions the tests call directly.

Every expected failure (bad data, unknown spec, unreachable server) becomes one line on stderr
naming what is wrong, and exit code 2; results already written stay on disk. `tourney eval`
exits 3 when the run finished but some requests failed for good (FAILED_REQUESTS_EXIT).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from tourney.cli.common import (DEBUG, SectionedCommand, friendly_errors, parse_key_values, parse_model_args,
                                with_backend)
from tourney.errors import ConfigError
from tourney.models.registry import default_options
from tourney.models.gguf_quantize import DTYPES as GGUF_DTYPES

FAILED_REQUESTS_EXIT = 3  # the run ended, but some requests failed after their retries: run it again


@click.group()
@click.version_option(package_name="tourney")
@click.option("--debug", is_flag=True, help="Show the full traceback of every error, the expected ones too.")
def main(debug: bool) -> None:
    """Distil a large reasoning model into a fast one, measure both, route between them."""
    if debug:
        DEBUG["on"] = True


EVAL_SECTIONS: dict[str, tuple[str, ...]] = {
    "Model and data": ("model", "data", "out", "limit", "model_args"),
    "Prompting": ("template", "chat", "system_prompt", "fewshot", "num_fewshot", "fewshot_by", "fewshot_as_multiturn"),
    "Generation": ("samples", "max_tokens", "temperature", "top_p", "seed", "logprobs", "stop", "gen_kwargs"),
    "Throughput": ("concurrency", "batch_size"),
    "Run folder": ("overwrite", "log_samples"),
}
# lm-eval's --gen_kwargs names -> ours; anything else is refused with this list.
GEN_KWARGS = {"temperature": "temperature", "top_p": "top_p", "max_gen_toks": "max_tokens",
              "max_tokens": "max_tokens", "max_new_tokens": "max_tokens", "seed": "seed", "do_sample": None,
              "until": "stop"}


def gen_overrides(ctx: click.Context, gen_kwargs: tuple[str, ...]) -> dict[str, Any]:
    """lm-eval's `--gen_kwargs temperature=0.7,top_p=0.95,max_gen_toks=256` as our fields; a
    setting also given by its own flag is an error rather than a silent choice between them."""
    from click.core import ParameterSource

    out: dict[str, Any] = {}
    for key, value in parse_key_values(gen_kwargs, "--gen_kwargs").items():
        if key not in GEN_KWARGS:
            raise ConfigError(f"--gen_kwargs {key!r} is not supported; known: {', '.join(GEN_KWARGS)}")
        name = GEN_KWARGS[key]
        if name is None:  # do_sample=false is greedy; do_sample=true needs a temperature, given apart
            if value is False:
                out["temperature"] = 0.0
            continue
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE:
            raise ConfigError(f"--gen_kwargs {key} and --{name.replace('_', '-')} both given; give one")
        if name == "stop":  # until="Q:" or until=["Q:","</s>"], as lm-eval writes it
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
                raise ConfigError(f"--gen_kwargs until: expected a string or a list of strings, got {value!r}")
            value = tuple(value)
        out[name] = value
    return out


@main.command("eval", cls=SectionedCommand, sections=EVAL_SECTIONS)
@click.option("--model", "model", required=True, help="Model spec: hf:PATH, openai:MODEL@URL, gguf:PATH, vllm:ID, replay:FILE, mini-teacher, mini-student, mini-distilled.")
@click.option("--data", required=True, help="Question file (.jsonl/.json/.csv/.parquet) or hf:NAME[:CONFIG][:SPLIT].")
@click.option("--out", "--output_path", "out", required=True, type=click.Path(file_okay=False),
              help="Run directory (resumed if it exists); --output_path as lm-eval spells it.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate the first N questions only.")
@click.option("--model-arg", "--model_args", "--model-args", "model_args", multiple=True,
              help="Backend option key=value, repeatable or comma-joined as in lm-eval (device=cuda,dtype=bfloat16); "
                   "a backend names its valid options when given another.")
@click.option("--template", default=None,
              help="Prompt template: a built-in name (base, cot-chat, mc-base, mc-chat), a shipped one (mmlu_pro, "
                   "gsm8k_cot), or a .yaml/.toml template file; default: chosen per question.")
@click.option("--chat/--no-chat", default=False, show_default=True, help="Send chat messages (instruct models).")
@click.option("--system-prompt", "--system_instruction", "system_prompt", default=None,
              help="System message before each question (chat templates; needs --chat or a chat --template).")
@click.option("--fewshot", default=None,
              help="Exemplar file (any question file, with worked solutions) for the template's few-shot layout.")
@click.option("--num-fewshot", "--num_fewshot", "num_fewshot", type=click.IntRange(min=0, max=64), default=None,
              help="Exemplars before each question. [default: the template's]")
@click.option("--fewshot-by", "fewshot_by", type=click.Choice(["type", "all"]), default=None,
              help="Exemplars of the question's own type (MMLU-Pro: its category), or from all. [default: the template's]")
@click.option("--fewshot-as-multiturn", "--fewshot_as_multiturn", "fewshot_as_multiturn", is_flag=True,
              help="Chat: each exemplar as a user turn and an assistant turn (lm-eval's flag).")
@click.option("--samples", type=click.IntRange(min=1), default=1, show_default=True, help="Samples per question.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=512, show_default=True, help="Generation budget per sample, in tokens.")
@click.option("--temperature", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Sampling temperature; 0 is greedy.")
@click.option("--top-p", type=click.FloatRange(min=0, max=1, min_open=True), default=1.0, show_default=True, help="Nucleus sampling mass.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed (sample i of a question uses seed + i where the backend supports it).")
@click.option("--logprobs", type=click.IntRange(min=0, max=20), default=None,
              help="Record token logprobs: 0 = each chosen token's logprob (what the routing signals read), "
                   "k = also the top-k alternatives. [default: none recorded]")
@click.option("--stop", multiple=True,
              help="Stop sequence, repeatable (lm-eval's until); also cuts recorded outputs of replay: models. "
                   "[default: the template's]")
@click.option("--gen_kwargs", "--gen-kwargs", "gen_kwargs", multiple=True,
              help="lm-eval's generation settings: temperature, top_p, max_gen_toks, seed, do_sample, until (a=1,b=2).")
@click.option("--concurrency", type=click.IntRange(min=1), default=8, show_default=True,
              help="Requests kept in flight from the first question to the last (server backends).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Prompts per forward batch of an in-process model (hf); servers ignore it. Runs resume per question.")
@click.option("--overwrite", is_flag=True, help="Discard what --out holds instead of resuming it.")
@click.option("--log_samples", "--log-samples", "log_samples", is_flag=True,
              help="Accepted for lm-eval users; every sample is always logged (OUT/results.jsonl).")
@click.pass_context
@friendly_errors
def eval_cmd(ctx, model, data, out, limit, model_args, template, chat, system_prompt, fewshot, num_fewshot, fewshot_by,
             fewshot_as_multiturn, samples, max_tokens, temperature, top_p, seed, logprobs, stop, gen_kwargs,
             concurrency, batch_size, overwrite, log_samples) -> None:
    """Evaluate a model on a question set; write results.jsonl and report.{json,md,html}."""
    from tourney.harness.questions import load_questions
    from tourney.harness.report import render_run_markdown
    from tourney.harness.report_content import printable
    from tourney.harness.runner import EvalConfig, prepare_run, run_eval
    from tourney.schema import parse_option

    args = default_options(model, chat, batch_size, concurrency)
    args.update(parse_model_args(model_args))
    gen = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "seed": seed,
           "stop": tuple(stop) if stop else None, **gen_overrides(ctx, gen_kwargs)}
    cfg = parse_option(EvalConfig, dict(model=model, data=data, out=out, limit=limit, samples=samples, **gen,
                                        logprobs=logprobs, template=template, chat=chat, system_prompt=system_prompt,
                                        model_args=args, fewshot=fewshot, num_fewshot=num_fewshot,
                                        fewshot_by=fewshot_by, fewshot_as_multiturn=fewshot_as_multiturn),
                       "tourney eval")
    questions = load_questions(data, limit=limit)  # bad data fails before a model is loaded
    prepare_run(cfg, questions, overwrite)  # ... and so does a wrong --out
    report = with_backend(model, args, f"eval {model}", lambda backend, progress: run_eval(
        cfg, backend, questions=questions, progress=progress))
    click.echo(printable(render_run_markdown(report)))
    click.echo(f"wrote {Path(out) / 'report.md'}")
    failed = report["overall"]["errors"]
    if failed:
        click.echo(f"error: {failed} request(s) failed for good after their retries (rows with an 'error' in "
                   f"{Path(out) / 'results.jsonl'}); run the same command again to retry only those", err=True)
        sys.exit(FAILED_REQUESTS_EXIT)


@main.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@friendly_errors
def report_cmd(run_dir: str) -> None:
    """Re-render report.{json,md,html} from RUN_DIR/results.jsonl."""
    from tourney.harness.report import render_run_markdown, write_reports
    from tourney.harness.report_content import printable

    click.echo(printable(render_run_markdown(write_reports(run_dir))))


@main.command("demo")
@click.option("--out", default="runs/demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the three runs and comparison.md.")
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
              help="Working folder (data, tokenizer, per-epoch checkpoints, models/); rerun to resume.")
@click.option("--which", type=click.Choice(["teacher", "student", "both"]), default="both", show_default=True,
              help="Which model(s) to train.")
@click.option("--install", is_flag=True,
              help="Also copy the pair and the dev/test splits into the package, replacing the shipped ones.")
@click.option("--threads", type=int, default=1, show_default=True, help="torch CPU threads.")
@friendly_errors
def mini_train(work: str, which: str, install: bool, threads: int) -> None:
    """Retrain the miniature pair from scratch into WORK/models (about 30 minutes on a 2-core CPU)."""
    from tourney.trainers.mini import train_mini

    names = ("teacher", "student") if which == "both" else (which,)
    for name, path in train_mini(work, which=names, install=install, threads=threads, log=click.echo).items():
        click.echo(f"{name}: {path}")


@mini.command("data")
@click.option("--out", default="runs/mini-data", show_default=True, type=click.Path(file_okay=False),
              help="Folder for train.jsonl and facts.jsonl (the training data), dev.jsonl, test.jsonl.")
def mini_data(out: str) -> None:
    """Write the miniature tournament's splits: train.jsonl and facts.jsonl (the training data,
    regenerated from the seeds), dev.jsonl and test.jsonl (as shipped)."""
    from tourney.harness.tournament import write_splits

    for split, path in write_splits(out).items():
        click.echo(f"{split}: {path}")


@main.command("export-gguf")
@click.argument("checkpoint")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--dtype", type=click.Choice(GGUF_DTYPES),
              default="f32", show_default=True,
              help="Weight type: f32/f16 written directly; the others through llama.cpp's own quantizer "
                   "(needs llama-cpp-python), which reports matrices it stored in another type.")
@friendly_errors
def export_gguf_cmd(checkpoint: str, out: str, dtype: str) -> None:
    """Export a Qwen3-family checkpoint (a folder or a mini alias) to GGUF for llama.cpp."""
    from tourney.models.gguf_export import export_gguf
    from tourney.models.gguf_quantize import QUANT_TYPES, describe, export_quantized
    from tourney.models.registry import ALIASES

    path = ALIASES.get(checkpoint, checkpoint).removeprefix("hf:")
    if dtype in QUANT_TYPES:
        for line in describe(export_quantized(path, out, dtype)):
            click.echo(line)
        return
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
    from tourney.schema import parse_option

    result = compare_runs(baseline, candidate, parse_option(RegressConfig, {"alpha": alpha, "min_delta": min_delta},
                                                            "tourney regress"))
    text = render_regression_markdown(result)
    click.echo(text)
    if out_md:
        Path(out_md).write_text(text, encoding="utf-8")
    if out_json:
        Path(out_json).write_text(json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    sys.exit(1 if result.failed else 0)


@main.command("compare")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Folder for compare.md and compare.html. [default: the parent of the first run]")
@click.option("--title", default="Comparison", show_default=True, help="Heading of the page.")
@friendly_errors
def compare_cmd(run_dirs: tuple[str, ...], out: str | None, title: str) -> None:
    """Several evaluation runs side by side, per question type: accuracy with its interval, latency
    p50/p95, tokens per sample. Prints the table and writes compare.md and compare.html."""
    from rich.console import Console

    from tourney.harness.compare import load_reports, rich_comparison, write_compare

    reports = load_reports(run_dirs)
    Console().print(rich_comparison(reports))
    paths = write_compare(reports, out or Path(run_dirs[0]).resolve().parent, title=title, dirs=list(run_dirs))
    click.echo(f"wrote {paths[0]} and {paths[1]}")


def _register_subcommands() -> None:
    # The distill and route commands live beside the code they drive; their modules import
    # nothing heavy at load time, so `tourney --help` stays fast.
    from tourney.cli.route import route, submit_cmd
    from tourney.cli.distill import distill
    from tourney.cli.serve import serve_cmd
    from tourney.cli.option_distill import labels_cmd, options_cmd

    distill.add_command(labels_cmd)
    distill.add_command(options_cmd)
    main.add_command(distill)
    main.add_command(route)
    main.add_command(submit_cmd)
    main.add_command(serve_cmd)


_register_subcommands()

if __name__ == "__main__":
    main()
