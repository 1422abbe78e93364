"""`tourney` command line: a thin layer over functions the tests call directly.

Every expected failure (bad data, unknown spec, unreachable server) becomes one line on stderr
naming what is wrong, and exit code 2; results already written stay on disk.
"""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

from harness.types import DataError
from models.types import BackendError

MINI_TEST = Path(__file__).resolve().parent / "data" / "mini" / "test.jsonl"


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def friendly_errors(fn: Callable) -> Callable:
    """Turn the project's own error types into one-line messages."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (DataError, BackendError, ValueError, FileNotFoundError) as exc:
            _fail(str(exc))

    return wrapper


def parse_model_args(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`key=value` options for the backend; values are read as JSON when they parse (numbers,
    true/false), else kept as strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-arg {pair!r}: expected key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def progress_bar(description: str):
    """A rich progress bar with ETA; returns (context manager, callback(done, total))."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), transient=False)
    task = bar.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return bar, update


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
    from harness.questions import load_questions
    from harness.report import render_markdown
    from harness.runner import EvalConfig, run_eval
    from models.registry import load_backend, parse_spec

    args = parse_model_args(model_args)
    kind = parse_spec(model).kind
    if kind == "openai":
        args.setdefault("concurrency", concurrency)
        args.setdefault("chat", chat)
    elif kind in ("hf", "vllm", "gguf"):
        args.setdefault("chat", chat)
        if kind == "hf":
            args.setdefault("batch_size", batch_size)
    cfg = EvalConfig(model=model, data=data, out=out, limit=limit, samples=samples, max_tokens=max_tokens,
                     temperature=temperature, top_p=top_p, seed=seed, logprobs=logprobs, template=template,
                     chat=chat, chunk_size=batch_size if kind != "openai" else max(batch_size, concurrency),
                     model_args=args)
    questions = load_questions(data, limit=limit)  # bad data fails before a model is loaded
    backend = load_backend(model, **args)
    if hasattr(backend, "check"):
        backend.check()
    bar, update = progress_bar(f"eval {model}")
    try:
        with bar:
            report = run_eval(cfg, backend, questions=questions, overwrite=overwrite, progress=update)
    finally:
        backend.close()
    click.echo(render_markdown(report))
    click.echo(f"wrote {Path(out) / 'report.md'}")


@main.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@friendly_errors
def report_cmd(run_dir: str) -> None:
    """Re-render report.{json,md,html} from RUN_DIR/results.jsonl."""
    from harness.report import render_markdown, write_reports

    click.echo(render_markdown(write_reports(run_dir)))


@main.command("demo")
@click.option("--out", default="runs/demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--limit", type=int, default=None, help="First N test questions only.")
@click.option("--overwrite", is_flag=True, help="Re-run instead of resuming what --out holds.")
@friendly_errors
def demo_cmd(out: str, limit: int | None, overwrite: bool) -> None:
    """Evaluate the shipped miniature models on the miniature test set and compare them."""
    from harness.demo import run_demo

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
    from models.registry import MINI_DIR
    from trainers.mini import train_mini

    names = ("teacher", "student") if which == "both" else (which,)
    for name, path in train_mini(work, out_dir=out or MINI_DIR, which=names, log=click.echo).items():
        click.echo(f"{name}: {path}")


@mini.command("data")
@click.option("--out", default="runs/mini-data", show_default=True, type=click.Path(file_okay=False))
def mini_data(out: str) -> None:
    """Write the miniature train/dev/test splits as JSONL."""
    from harness.synthetic import write_splits

    for split, path in write_splits(out).items():
        click.echo(f"{split}: {path}")


@main.command("export-gguf")
@click.argument("checkpoint")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--dtype", type=click.Choice(["f32", "f16"]), default="f32", show_default=True)
@friendly_errors
def export_gguf_cmd(checkpoint: str, out: str, dtype: str) -> None:
    """Export a Qwen3-family checkpoint (a folder or a mini alias) to GGUF for llama.cpp."""
    from models.gguf_export import export_gguf
    from models.registry import ALIASES

    path = ALIASES.get(checkpoint, checkpoint).removeprefix("hf:")
    click.echo(f"wrote {export_gguf(path, out, dtype=dtype)}")


@main.command("reference")
@click.option("--config", default=None, type=click.Path(exists=True, dir_okay=False), help="Pair file (default: the shipped Qwen3 pair).")
@friendly_errors
def reference_cmd(config: str | None) -> None:
    """Print the vLLM serve commands and the eval commands for the real teacher/student pair."""
    from models.reference import REFERENCE_FILE, load_reference

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
    from harness.regress import RegressConfig, compare_runs, render_markdown

    result = compare_runs(baseline, candidate, RegressConfig(alpha=alpha, min_delta=min_delta))
    text = render_markdown(result)
    click.echo(text)
    if out_md:
        Path(out_md).write_text(text, encoding="utf-8")
    if out_json:
        Path(out_json).write_text(json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    sys.exit(1 if result.failed else 0)


@main.group("distill")
def distill() -> None:
    """Teacher chain-of-thought, rejection sampling and curriculum for distillation data; student training."""


@distill.command("generate")
@click.option("--teacher", required=True, help="Teacher model spec (hf:PATH, openai:MODEL@URL, vllm:ID, gguf:PATH, replay:FILE, alias).")
@click.option("--data", required=True, help="Question file or hf:NAME; questions without an answer are allowed.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory (resumed if it exists).")
@click.option("--samples", type=int, default=1, show_default=True, help="Samples per question (needs --temperature > 0 when > 1).")
@click.option("--temperature", type=float, default=0.0, show_default=True)
@click.option("--max-tokens", type=int, default=1024, show_default=True)
@click.option("--limit", type=int, default=None, help="First N questions only.")
@click.option("--chat/--no-chat", default=False, show_default=True, help="Send chat messages (instruct/thinking teachers).")
@click.option("--template", default=None, help="Prompt template name; default: chosen per question.")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Questions per backend call; the unit of resumption.")
@click.option("--concurrency", type=int, default=8, show_default=True, help="Requests in flight (server backends).")
@click.option("--logprobs/--no-logprobs", default=True, show_default=True, help="Record chosen-token logprobs (teacher confidence).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--model-arg", "model_args", multiple=True, help="Backend option key=value (repeatable).")
@click.option("--overwrite", is_flag=True, help="Discard what --out holds instead of resuming it.")
@friendly_errors
def distill_generate(teacher, data, out, samples, temperature, max_tokens, limit, chat, template, batch_size,
                     concurrency, logprobs, seed, model_args, overwrite) -> None:
    """Have the teacher answer DATA with its reasoning; write OUT/cot.jsonl."""
    from models.registry import load_backend
    from trainers.cot import CoTConfig, backend_options, generate_cot, load_cot_questions

    args, chunk = backend_options(teacher, chat, batch_size, concurrency)
    args.update(parse_model_args(model_args))
    cfg = CoTConfig(model=teacher, data=data, out=out, samples=samples, temperature=temperature,
                    max_tokens=max_tokens, logprobs=0 if logprobs else None, chat=chat, template=template,
                    limit=limit, batch_size=chunk, seed=seed, model_args=args)
    questions = load_cot_questions(data, limit=limit)  # bad data fails before a model is loaded
    backend = load_backend(teacher, **args)
    if hasattr(backend, "check"):
        backend.check()
    bar, update = progress_bar(f"cot {teacher}")
    try:
        with bar:
            path = generate_cot(cfg, backend, questions=questions, overwrite=overwrite, progress=update)
    finally:
        backend.close()
    click.echo(f"wrote {path}")


@distill.command("select")
@click.option("--cot", "cot_path", required=True, type=click.Path(exists=True, dir_okay=False), help="cot.jsonl from `distill generate`.")
@click.option("--policy", type=click.Choice(["first", "shortest", "all-distinct"]), default="first", show_default=True)
@click.option("--verifier", type=click.Choice(["auto", "gold", "majority"]), default="auto", show_default=True,
              help="auto: gold where a question has one, majority vote where it has none.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="sft.jsonl to write; pass_rates.jsonl goes beside it.")
@friendly_errors
def distill_select(cot_path: str, policy: str, verifier: str, out: str) -> None:
    """Keep verified teacher solutions (rejection sampling); record each question's pass rate."""
    from trainers.rejection import PASS_RATES_FILE, select_file

    stats = select_file(cot_path, out, policy=policy, verifier=verifier)
    click.echo(json.dumps(stats.summary(), sort_keys=True))
    if stats.rejected:
        shown = ", ".join(stats.rejected[:10]) + (" ..." if len(stats.rejected) > 10 else "")
        click.echo(f"{len(stats.rejected)} question(s) with no accepted sample: {shown}")
    click.echo(f"wrote {out} and {Path(out).parent / PASS_RATES_FILE}")


@distill.command("curriculum")
@click.option("--data", required=True, type=click.Path(exists=True, dir_okay=False), help="sft.jsonl (or gold/GSM8K-style JSONL).")
@click.option("--order", type=click.Choice(["easy-to-hard", "staged", "competence", "random"]), default="easy-to-hard", show_default=True)
@click.option("--epochs", type=int, default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--buckets", type=int, default=4, show_default=True, help="staged: number of difficulty buckets.")
@click.option("--c0", type=float, default=0.1, show_default=True, help="competence: initial competence.")
@click.option("--ramp", type=float, default=0.5, show_default=True, help="competence: fraction of training until full competence.")
@click.option("--weights", default=None, help="Difficulty weights pass,confidence,length,type (default 0.4,0.2,0.2,0.2).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="order.json to write.")
@friendly_errors
def distill_curriculum(data: str, order: str, epochs: int, seed: int, buckets: int, c0: float, ramp: float,
                       weights: str | None, out: str) -> None:
    """Score difficulty and write the per-epoch order of example indices the trainer follows."""
    from trainers.curriculum import CurriculumConfig, difficulty_scores, order_examples
    from trainers.dataset import read_sft_jsonl

    w: dict[str, float] = {}
    if weights:
        parts = weights.split(",")
        if len(parts) != 4:
            raise ValueError(f"--weights {weights!r}: expected four numbers pass,confidence,length,type")
        w = dict(zip(("w_pass", "w_confidence", "w_length", "w_type"), map(float, parts)))
    cfg = CurriculumConfig(order=order, seed=seed, buckets=buckets, c0=c0, ramp=ramp, **w)
    examples = read_sft_jsonl(data)
    result = {"data": data, "config": cfg.to_dict(), "ids": [e["id"] for e in examples],
              "difficulty": [round(d, 6) for d in difficulty_scores(examples, cfg)],
              "epochs": order_examples(examples, cfg, epochs)}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result) + "\n", encoding="utf-8")
    click.echo(f"wrote {out}: {len(examples)} examples, {epochs} epoch(s), order {order}")


@distill.command("train")
@click.option("--student", required=True, help="Student checkpoint: folder, hf:PATH, Hub id or alias (mini-student).")
@click.option("--data", required=True, type=click.Path(exists=True, dir_okay=False), help="sft.jsonl from `distill select` (or gold/GSM8K-style JSONL).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder; rerun to resume after the last finished epoch.")
@click.option("--teacher", default=None, help="Teacher checkpoint (needed by every method but sft).")
@click.option("--method", type=click.Choice(["sft", "kd", "feature", "kd+feature"]), default="sft", show_default=True)
@click.option("--lora", is_flag=True, help="Train LoRA adapters instead of all weights.")
@click.option("--qlora", is_flag=True, help="LoRA on a 4-bit base (bitsandbytes, CUDA only).")
@click.option("--lora-r", type=int, default=16, show_default=True)
@click.option("--lora-alpha", type=float, default=32.0, show_default=True)
@click.option("--lora-dropout", type=float, default=0.05, show_default=True)
@click.option("--epochs", type=int, default=3, show_default=True)
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True, help="Sequences per device per micro-step.")
@click.option("--grad-accum", type=int, default=1, show_default=True)
@click.option("--max-len", type=int, default=1024, show_default=True)
@click.option("--warmup-ratio", type=float, default=0.0, show_default=True)
@click.option("--alpha", type=float, default=0.5, show_default=True, help="KD weight: alpha*T^2*KD + (1-alpha)*CE.")
@click.option("--temperature", type=float, default=2.0, show_default=True)
@click.option("--kd-kind", type=click.Choice(["forward", "reverse", "jsd"]), default="forward", show_default=True)
@click.option("--beta", type=float, default=0.5, show_default=True, help="JSD mixture weight.")
@click.option("--topk", type=int, default=None, help="Offline KD from a top-k store built once (default: online teacher).")
@click.option("--topk-store", default=None, type=click.Path(file_okay=False), help="Store folder (default OUT/topk-kK).")
@click.option("--layer-map", default=None, help="Feature KD student:teacher layers, e.g. 1:2,2:4 (default evenly spaced).")
@click.option("--feature-loss", type=click.Choice(["mse", "cosine"]), default="mse", show_default=True)
@click.option("--feature-weight", type=float, default=1.0, show_default=True)
@click.option("--attention", is_flag=True, help="Also match attention maps (eager attention).")
@click.option("--attention-weight", type=float, default=1.0, show_default=True)
@click.option("--order", "order_file", default=None, type=click.Path(exists=True, dir_okay=False), help="order.json from `distill curriculum` (default: seeded shuffle).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--eval-data", default=None, help="Question file evaluated on every epoch's checkpoint.")
@click.option("--eval-limit", type=int, default=None)
@click.option("--eval-max-tokens", type=int, default=256, show_default=True)
@click.option("--gate/--no-gate", default=False, show_default=True, help="Stop when an epoch is significantly worse than the previous one.")
@click.option("--gate-flag-only", is_flag=True, help="With --gate: record the verdict but keep training.")
@click.option("--logging-steps", type=int, default=10, show_default=True)
@click.option("--gradient-checkpointing", is_flag=True)
@click.option("--merge/--no-merge", default=True, show_default=True, help="After LoRA training, write OUT/merged (a plain checkpoint).")
@friendly_errors
def distill_train(student, data, out, teacher, method, lora, qlora, lora_r, lora_alpha, lora_dropout, epochs, lr,
                  batch_size, grad_accum, max_len, warmup_ratio, alpha, temperature, kd_kind, beta, topk,
                  topk_store, layer_map, feature_loss, feature_weight, attention, attention_weight, order_file,
                  seed, eval_data, eval_limit, eval_max_tokens, gate, gate_flag_only, logging_steps,
                  gradient_checkpointing, merge) -> None:
    """Train a student on teacher solutions (SFT, logit KD, feature KD; full or LoRA); runs
    unchanged under torchrun / accelerate launch."""
    from trainers.distill import train
    from trainers.distill_config import DistillTrainConfig, parse_layer_map

    cfg = DistillTrainConfig(
        student=student, data=data, out=out, teacher=teacher, method=method, lora=lora, qlora=qlora,
        lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, epochs=epochs, lr=lr,
        batch_size=batch_size, grad_accum=grad_accum, max_len=max_len, warmup_ratio=warmup_ratio, alpha=alpha,
        temperature=temperature, kd_kind=kd_kind, beta=beta, topk=topk, topk_store=topk_store,
        feature_layer_map=parse_layer_map(layer_map), feature_loss=feature_loss, feature_weight=feature_weight,
        attention=attention, attention_weight=attention_weight, order_file=order_file, seed=seed,
        eval_data=eval_data, eval_limit=eval_limit, eval_max_tokens=eval_max_tokens, gate=gate,
        gate_stop=not gate_flag_only, logging_steps=logging_steps, gradient_checkpointing=gradient_checkpointing,
        merge=merge)
    result = train(cfg, say=click.echo)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun the main process reports
        return
    for r in result.epochs:
        acc = "" if r.accuracy is None else f" accuracy {r.accuracy:.4f}"
        loss = "" if r.train_loss is None else f" loss {r.train_loss:.4f}"
        click.echo(f"epoch {r.epoch}:{loss}{acc} {r.checkpoint}")
    click.echo(f"wrote {result.merged or result.final}")


@main.group("route")
def route() -> None:
    """Route questions between the student and the teacher: calibrate a threshold, evaluate routers."""


@route.command("calibrate")
@click.option("--student", required=True, type=click.Path(exists=True, file_okay=False), help="Dev student run directory.")
@click.option("--teacher", required=True, type=click.Path(exists=True, file_okay=False), help="Dev teacher run directory (same questions).")
@click.option("--target", required=True, help="share=F | accuracy=F | latency_mean=S | latency_p95=S.")
@click.option("--absolute", is_flag=True, help="Read accuracy=F as an absolute accuracy, not a fraction of the teacher's.")
@click.option("--signals", default=None, help="Comma-separated signal names; one name uses that signal, several or 'combined' fit a combined router (default: all available, combined).")
@click.option("--heldout-student", type=click.Path(exists=True, file_okay=False), default=None, help="Held-out student run.")
@click.option("--heldout-teacher", type=click.Path(exists=True, file_okay=False), default=None, help="Held-out teacher run.")
@click.option("--split", type=float, default=None, help="Hold out this fraction of the dev questions instead.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --split permutation.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="ROUTER.json to write.")
@friendly_errors
def route_calibrate(student, teacher, target, absolute, signals, heldout_student, heldout_teacher, split, seed, out) -> None:
    """Choose a router and its threshold for a target on dev runs; report how it holds on held-out ones."""
    from routers.fit import CalibrateConfig, calibrate_runs, describe

    names = tuple(s.strip() for s in signals.split(",") if s.strip()) if signals else None
    cfg = CalibrateConfig(student=student, teacher=teacher, target=target, out=out, absolute=absolute,
                          signals=names, heldout_student=heldout_student, heldout_teacher=heldout_teacher,
                          split=split, seed=seed)
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
    from routers.route_eval import render_markdown, run_route_eval

    out = out or student
    ev = run_route_eval(student, teacher, out, router_path=router_path, signal=signal)
    click.echo(render_markdown(ev))
    click.echo(f"wrote {Path(out) / 'route_eval.md'}, route_eval.json, route_eval.png")


@main.command("submit")
@click.option("--questions", required=True, help="Question file; answers may be absent.")
@click.option("--router", "router_path", required=True, type=click.Path(exists=True, dir_okay=False), help="ROUTER.json from `route calibrate` (names the models).")
@click.option("--mode", type=click.Choice(["speed", "accuracy", "balanced"]), default="balanced", show_default=True)
@click.option("--deadline-ms", type=float, required=True, help="Per-question deadline, from when the question starts.")
@click.option("--budget-s", type=float, default=None, help="Total wall-clock budget; once spent, the student answers alone.")
@click.option("--concurrency", type=int, default=1, show_default=True, help="Questions in flight (keep 1 for in-process models).")
@click.option("--student", "student_spec", default=None, help="Override the student's model spec.")
@click.option("--teacher", "teacher_spec", default=None, help="Override the teacher's model spec.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory (resumed if it holds a log).")
@click.option("--overwrite", is_flag=True, help="Discard what --out holds instead of resuming it.")
@friendly_errors
def submit_cmd(questions, router_path, mode, deadline_ms, budget_s, concurrency, student_spec, teacher_spec, out,
               overwrite) -> None:
    """Answer a tournament question file under per-question deadlines; write submission.{jsonl,csv}."""
    from routers.bundle import RouterBundle
    from routers.cascade import load_cascade
    from routers.submit import SubmitConfig, load_submit_questions, render_summary, run_submission

    cfg = SubmitConfig(questions=questions, out=out, mode=mode, deadline_ms=deadline_ms, budget_s=budget_s,
                       concurrency=concurrency, router=router_path)
    qs = load_submit_questions(questions)  # bad data fails before a model is loaded
    bundle = RouterBundle.load(router_path).with_specs(student_spec, teacher_spec)
    cascade = load_cascade(bundle, mode, concurrency=concurrency, teacher_timeout_s=deadline_ms / 1000.0,
                           student_backup=mode != "accuracy" or budget_s is not None)
    bar, update = progress_bar(f"submit ({mode})")
    try:
        with bar:
            summary = run_submission(cfg, cascade, qs, overwrite=overwrite, progress=update)
    finally:
        for b in (cascade.student, cascade.teacher):
            if b is not None:
                b.close()
    click.echo(render_summary(summary))
    click.echo(f"wrote {Path(out) / 'submission.csv'}")


if __name__ == "__main__":
    main()
