"""`tourney distill ...`: teacher chain-of-thought, rejection sampling, curriculum, student training."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from tourney.cli.common import friendly_errors, parse_model_args, with_backend
from tourney.models.registry import default_options


@click.group("distill")
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
    from tourney.trainers.cot import CoTConfig, generate_cot, load_cot_questions

    args, chunk = default_options(teacher, chat, batch_size, concurrency)
    args.update(parse_model_args(model_args))
    cfg = CoTConfig(model=teacher, data=data, out=out, samples=samples, temperature=temperature,
                    max_tokens=max_tokens, logprobs=0 if logprobs else None, chat=chat, template=template,
                    limit=limit, batch_size=chunk, seed=seed, model_args=args)
    questions = load_cot_questions(data, limit=limit)  # bad data fails before a model is loaded
    path = with_backend(teacher, args, f"cot {teacher}", lambda backend, progress: generate_cot(
        cfg, backend, questions=questions, overwrite=overwrite, progress=progress))
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
    from tourney.trainers.rejection import PASS_RATES_FILE, select_file

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
    from tourney.trainers.curriculum import CurriculumConfig, difficulty_scores, order_examples
    from tourney.trainers.dataset import read_sft_jsonl

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
@click.option("--chat/--no-chat", default=False, show_default=True,
              help="Prompts through the student's chat template (instruct students; evaluate with `eval --chat`).")
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
def distill_train(student, data, out, teacher, method, chat, lora, qlora, lora_r, lora_alpha, lora_dropout, epochs, lr,
                  batch_size, grad_accum, max_len, warmup_ratio, alpha, temperature, kd_kind, beta, topk,
                  topk_store, layer_map, feature_loss, feature_weight, attention, attention_weight, order_file,
                  seed, eval_data, eval_limit, eval_max_tokens, gate, gate_flag_only, logging_steps,
                  gradient_checkpointing, merge) -> None:
    """Train a student on teacher solutions (SFT, logit KD, feature KD; full or LoRA); runs
    unchanged under torchrun / accelerate launch."""
    from tourney.trainers.distill import train
    from tourney.trainers.distill_config import DistillTrainConfig, parse_layer_map

    cfg = DistillTrainConfig(
        student=student, data=data, out=out, teacher=teacher, method=method, chat=chat, lora=lora, qlora=qlora,
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


if __name__ == "__main__":  # torchrun / accelerate launch -m tourney.cli.distill train ...
    distill(prog_name="python -m tourney.cli.distill")
