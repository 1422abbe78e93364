"""`tourney distill ...`: teacher chain-of-thought, rejection sampling, curriculum, student training."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from tourney.cli.common import SectionedCommand, friendly_errors, parse_model_args, with_backend
from tourney.errors import ConfigError
from tourney.models.registry import default_options
from tourney.schema import parse_option


@click.group("distill")
def distill() -> None:
    """Teacher chain-of-thought, rejection sampling and curriculum for distillation data; student training."""


@distill.command("generate")
@click.option("--teacher", required=True, help="Teacher model spec (hf:PATH, openai:MODEL@URL, vllm:ID, gguf:PATH, replay:FILE, alias).")
@click.option("--data", required=True, help="Question file or hf:NAME; questions without an answer are allowed.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory (resumed if it exists).")
@click.option("--samples", type=int, default=1, show_default=True, help="Samples per question (needs --temperature > 0 when > 1).")
@click.option("--temperature", type=float, default=0.0, show_default=True, help="Sampling temperature; 0 is greedy.")
@click.option("--max-tokens", type=int, default=1024, show_default=True, help="Generation budget per sample, in tokens.")
@click.option("--limit", type=int, default=None, help="First N questions only.")
@click.option("--chat/--no-chat", default=False, show_default=True, help="Send chat messages (instruct/thinking teachers).")
@click.option("--template", default=None, help="Prompt template name; default: chosen per question.")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Prompts per forward batch of an in-process teacher (hf); servers ignore it.")
@click.option("--concurrency", type=int, default=8, show_default=True, help="Requests kept in flight (server backends).")
@click.option("--logprobs/--no-logprobs", default=True, show_default=True, help="Record chosen-token logprobs (teacher confidence).")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed.")
@click.option("--model-arg", "--model_args", "model_args", multiple=True,
              help="Backend option key=value, repeatable or comma-joined (device=cuda,dtype=bfloat16).")
@click.option("--overwrite", is_flag=True, help="Discard what --out holds instead of resuming it.")
@friendly_errors
def distill_generate(teacher, data, out, samples, temperature, max_tokens, limit, chat, template, batch_size,
                     concurrency, logprobs, seed, model_args, overwrite) -> None:
    """Have the teacher answer DATA with its reasoning; write OUT/cot.jsonl."""
    from tourney.trainers.cot import CoTConfig, generate_cot, load_cot_questions

    args = default_options(teacher, chat, batch_size, concurrency)
    args.update(parse_model_args(model_args))
    cfg = parse_option(CoTConfig, dict(model=teacher, data=data, out=out, samples=samples, temperature=temperature,
                                       max_tokens=max_tokens, logprobs=0 if logprobs else None, chat=chat,
                                       template=template, limit=limit, batch_size=batch_size, seed=seed, model_args=args),
                       "distill generate")
    questions = load_cot_questions(data, limit=limit)  # bad data fails before a model is loaded
    path = with_backend(teacher, args, f"cot {teacher}", lambda backend, progress: generate_cot(
        cfg, backend, questions=questions, overwrite=overwrite, progress=progress))
    click.echo(f"wrote {path}")


@distill.command("select")
@click.option("--cot", "cot_path", required=True, type=click.Path(exists=True, dir_okay=False), help="cot.jsonl from `distill generate`.")
@click.option("--policy", type=click.Choice(["first", "shortest", "all-distinct"]), default="first", show_default=True,
              help="Which accepted sample(s) to keep: the first, the shortest, or every distinct one.")
@click.option("--verifier", type=click.Choice(["auto", "gold", "majority"]), default="auto", show_default=True,
              help="auto: gold where a question has one, majority vote where it has none.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="sft.jsonl to write; pass_rates.jsonl goes beside it.")
@friendly_errors
def distill_select(cot_path: str, policy: str, verifier: str, out: str) -> None:
    """Keep verified teacher solutions (rejection sampling); record each question's pass rate."""
    from tourney.trainers.rejection import PASS_RATES_FILE, select_file

    stats = select_file(cot_path, out, policy=policy, verifier=verifier)
    click.echo(json.dumps(stats.summary(), sort_keys=True))
    if stats.rejected:
        shown = ", ".join(stats.rejected[:10]) + (" ..." if len(stats.rejected) > 10 else "")
        click.echo(f"{len(stats.rejected)} question(s) with no accepted sample: {shown}")
    click.echo(f"wrote {out} and {Path(out).parent / PASS_RATES_FILE}")


@distill.command("curriculum")
@click.option("--data", required=True, type=click.Path(exists=True, dir_okay=False), help="sft.jsonl (or gold/GSM8K-style JSONL).")
@click.option("--order", type=click.Choice(["easy-to-hard", "staged", "competence", "random"]), default="easy-to-hard",
              show_default=True, help="How examples are ordered each epoch (see trainers/curriculum.py).")
@click.option("--epochs", type=int, default=1, show_default=True, help="Epoch orders to write (>= the training epochs).")
@click.option("--seed", type=int, default=0, show_default=True, help="Tie-breaking and shuffling seed.")
@click.option("--buckets", type=int, default=4, show_default=True, help="staged: number of difficulty buckets.")
@click.option("--c0", type=float, default=0.1, show_default=True, help="competence: initial competence.")
@click.option("--ramp", type=float, default=0.5, show_default=True, help="competence: fraction of training until full competence.")
@click.option("--weights", default=None, help="Difficulty weights pass,confidence,length,type (default 0.4,0.2,0.2,0.2).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="order.json to write.")
@friendly_errors
def distill_curriculum(data: str, order: str, epochs: int, seed: int, buckets: int, c0: float, ramp: float,
                       weights: str | None, out: str) -> None:
    """Score difficulty and write the per-epoch order of example indices the trainer follows."""
    from tourney.trainers.curriculum import CurriculumConfig, difficulty_scores, order_examples
    from tourney.trainers.dataset import read_sft_jsonl

    w: dict[str, str] = {}
    if weights:
        parts = weights.split(",")
        if len(parts) != 4:
            raise ConfigError(f"--weights {weights!r}: expected four numbers pass,confidence,length,type")
        w = dict(zip(("w_pass", "w_confidence", "w_length", "w_type"), (p.strip() for p in parts)))
    cfg = parse_option(CurriculumConfig, dict(order=order, seed=seed, buckets=buckets, c0=c0, ramp=ramp, **w),
                       "distill curriculum")
    examples = read_sft_jsonl(data)
    result = {"data": data, "config": cfg.to_dict(), "ids": [e["id"] for e in examples],
              "difficulty": [round(d, 6) for d in difficulty_scores(examples, cfg)],
              "epochs": order_examples(examples, cfg, epochs)}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result) + "\n", encoding="utf-8")
    click.echo(f"wrote {out}: {len(examples)} examples, {epochs} epoch(s), order {order}")


# How `distill train --help` groups the options; every DistillTrainConfig field is in one section
# (tests/trainers/test_train_config.py checks).
TRAIN_SECTIONS: dict[str, tuple[str, ...]] = {
    "Model and data": ("config_file", "student", "data", "out", "teacher", "method", "chat"),
    "LoRA / QLoRA": ("lora", "qlora", "lora_r", "lora_alpha", "lora_dropout", "lora_targets"),
    "Optimisation": ("epochs", "lr", "batch_size", "grad_accum", "max_len", "warmup_ratio", "weight_decay",
                     "lr_scheduler", "max_grad_norm", "seed", "order_file"),
    "Logit distillation (kd, kd+feature)": ("alpha", "kd_temperature", "kd_kind", "beta", "topk", "topk_store",
                                            "teacher_hash", "teacher_concurrency", "kd_chunk_size"),
    "Feature distillation (feature, kd+feature)": ("feature_layer_map", "feature_loss", "feature_weight",
                                                   "attention", "attention_weight"),
    "Evaluation after each epoch": ("eval_data", "eval_limit", "eval_max_tokens", "eval_batch_size", "gate",
                                    "gate_stop", "gate_alpha", "gate_min_delta"),
    "Runtime and logging": ("logging_steps", "report_to", "bf16", "gradient_checkpointing", "deterministic",
                            "merge", "save_total_limit"),
    "Quantization-aware training": ("qat",),
    "What to run": ("dry_run", "store_only"),  # options of the command, not of the training configuration
}
RUN_OPTIONS = ("config_file", "dry_run", "store_only")


def _train_options(fn):
    from tourney.cli.config_options import config_options
    from tourney.trainers.distill_config import DistillTrainConfig

    return config_options(DistillTrainConfig)(fn)


@distill.command("train", cls=SectionedCommand, sections=TRAIN_SECTIONS)
@click.option("--config", "config_file", default=None, type=click.Path(dir_okay=False),
              help="Recipe file (YAML, TOML or JSON) of these options by field name (kd_temperature: 1.0); "
                   "flags given here override it.")
@click.option("--dry-run", is_flag=True,
              help="Build everything (student, teacher or its top-k store, trainer, checkpoint, evaluation) and run "
                   "one optimizer step, in OUT/dry-run.")
@click.option("--store-only", is_flag=True,
              help="Fill the top-k store (--topk) and stop: before a multi-process launch with a served teacher.")
@_train_options
@click.pass_context
@friendly_errors
def distill_train(ctx: click.Context, config_file: str | None, dry_run: bool, store_only: bool, **values) -> None:
    """Train a student on teacher solutions (SFT, logit KD, feature KD; full or LoRA); runs
    unchanged under torchrun / accelerate launch."""
    from tourney.cli.config_options import flag_names, given_options
    from tourney.trainers.distill import train
    from tourney.trainers.distill_config import DistillTrainConfig
    from tourney.trainers.recipe import build_config

    cfg = build_config(DistillTrainConfig, given_options(ctx, DistillTrainConfig, values), config_file,
                       flags=flag_names(DistillTrainConfig))
    result = train(cfg, say=click.echo, progress=True, dry_run=dry_run, store_only=store_only)
    if store_only:
        return
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun the main process reports
        return
    for r in result.epochs:
        acc = "" if r.accuracy is None else f" accuracy {r.accuracy:.4f}"
        loss = "" if r.train_loss is None else f" loss {r.train_loss:.4f}"
        click.echo(f"epoch {r.epoch}:{loss}{acc} {r.checkpoint}")
    click.echo(f"wrote {result.merged or result.final}")


if __name__ == "__main__":  # torchrun / accelerate launch -m tourney.cli.distill train ...
    distill(prog_name="python -m tourney.cli.distill")
