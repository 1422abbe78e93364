"""Train a student: SFT on teacher solutions, logit KD, feature KD, with full weights or LoRA.

    tourney distill train --student mini-student --teacher mini-teacher --data sft.jsonl \\
        --out runs/student --method kd --epochs 3
    torchrun --nproc_per_node 8 -m tourney.cli.distill train --student ... (same options)
    accelerate launch --config_file fsdp.yaml -m tourney.cli.distill train ...

The same entry point runs on one CPU or many GPUs: transformers' Trainer takes DDP, FSDP or
DeepSpeed from the launcher's environment and accelerate config. A run folder is resumable:
rerunning the same command continues after the last finished epoch.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import torch

from tourney.errors import ConfigError
from tourney.trainers.distill_config import DistillTrainConfig, check_same_run, training_argument_fields
from tourney.trainers.epoch_eval import EpochEndCallback, EpochRecord, read_epochs


# TrainingArguments fields renamed since the oldest transformers pyproject.toml allows (5.0):
# new name -> the name before. activation_checkpointing arrived in 5.23.
OLDER_NAMES = {"activation_checkpointing": "gradient_checkpointing"}


@dataclass(frozen=True)
class TrainResult:
    out: str  # the run folder
    final: str  # OUT/final: the last weights (adapters for LoRA) + tokenizer (+ projector)
    merged: str | None  # OUT/merged: LoRA folded into the base, a plain checkpoint; None otherwise
    checkpoints: list[str]  # checkpoint-N folders, oldest first
    epochs: list[EpochRecord]  # one per finished epoch (OUT/epochs.jsonl)
    stopped_early: bool  # the regression gate stopped training
    quantized: str | None = None  # OUT/final-TYPE.gguf of a quantization-aware run (qat)


def training_arguments(cfg: DistillTrainConfig):
    """transformers' TrainingArguments for cfg: every field that names a TrainingArguments field in
    its metadata sets that field (distill_config.training_argument_fields), then the settings this
    trainer fixes (checkpoints every epoch, no Trainer evaluation, our own progress bar)."""
    from transformers import TrainingArguments

    cuda = torch.cuda.is_available()
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1  # torchrun / accelerate launch with >1 process
    mapped = {target: getattr(cfg, name) for name, targets in training_argument_fields().items()
              for target in targets}
    # Values the fields leave open, resolved for this machine and run.
    mapped["bf16"] = cfg.bf16 if cfg.bf16 is not None else bool(cuda and torch.cuda.is_bf16_supported())
    mapped["activation_checkpointing"] = cfg.gradient_checkpointing and not cfg.qlora  # QLoRA's prep enables it
    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    for new, old in OLDER_NAMES.items():  # the floor version of transformers spells some fields otherwise
        if new in mapped and new not in known:
            mapped[old] = mapped.pop(new)
    return TrainingArguments(
        output_dir=cfg.out, **mapped,
        logging_strategy="steps", save_strategy="epoch", eval_strategy="no",
        remove_unused_columns=False,  # example_index and the top-k rows reach compute_loss
        disable_tqdm=True, include_num_input_tokens_seen="non_padding",  # train_progress.TrainProgress instead
        use_cpu=not cuda, ddp_backend="gloo" if launched and not cuda else None,
        ddp_find_unused_parameters=False,
    )


def _main_say(args, say: Callable[[str], None]) -> Callable[[str], None]:
    return say if args.process_index == 0 else (lambda _msg: None)


def dry_run_config(cfg: DistillTrainConfig) -> DistillTrainConfig:
    """The run `--dry-run` makes of cfg: in OUT/dry-run (its own top-k store too), one epoch of one
    optimizer step (train() cuts the data to batch_size x grad_accum x processes), no curriculum
    order (it indexes the whole data), at most 4 evaluation questions, no gate."""
    out = Path(cfg.out) / "dry-run"
    return replace(cfg, out=str(out), epochs=1, order_file=None, gate=False,
                   topk_store=str(out / f"topk-k{cfg.topk}") if cfg.topk is not None else None,
                   eval_limit=min(cfg.eval_limit or 4, 4))


def train(cfg: DistillTrainConfig, callbacks: Sequence = (), say: Callable[[str], None] = print,
          progress: bool = False, dry_run: bool = False, store_only: bool = False) -> TrainResult:
    """Train (or resume) the run cfg describes; see the module docstring. `progress` draws one
    progress bar (train_progress.TrainProgress) in place of the Trainer's printed logs. dry_run:
    build everything (student, teacher or its store, trainer, checkpoint, evaluation) and run one
    optimizer step, in OUT/dry-run (dry_run_config). store_only: fill the top-k store and stop (no
    checkpoints; `final` is ""), which a served teacher's store needs before a multi-process launch."""
    if dry_run:
        cfg = dry_run_config(cfg)
    from transformers import AutoConfig, AutoTokenizer, PrinterCallback, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    from tourney.harness.questions import file_sha256
    from tourney.trainers.features import FeatureProjector, load_projector
    from tourney.trainers.kd_trainer import DistillLoss, DistillTrainer, load_teacher, prepare_store, store_is_complete
    from tourney.trainers.losses import check_vocab_compatible
    from tourney.trainers.train_progress import TrainProgress
    from tourney.trainers.sft import (SFTCollator, SFTDataset, check_environment, epoch_orders, load_sft_data,
                              load_student, merge_lora, resolve_checkpoint)

    check_environment(cfg)  # QLoRA without a GPU or bitsandbytes fails here, before any loading
    if progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # loading/saving bars: ours is the one users read
    args = training_arguments(cfg)  # also joins the process group under torchrun / accelerate
    say = _main_say(args, say)
    if dry_run:  # a dry run starts afresh each time (a config fixed since the last one must not be refused)
        with args.main_process_first(local=False, desc="dry run"):
            if args.process_index == 0:
                _clear_dry_run(Path(cfg.out))
    out = Path(cfg.out)
    check_same_run(cfg, write=args.process_index == 0)
    student_path = resolve_checkpoint(cfg.student)
    tokenizer = AutoTokenizer.from_pretrained(student_path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    teacher_path = resolve_checkpoint(cfg.teacher) if cfg.teacher and cfg.method != "sft" else None
    if cfg.served_teacher:  # its tokenizer is checked against the student's through the server
        teacher_path = None
    if cfg.teacher and cfg.method == "sft":
        say("note: method sft trains on the solutions alone; the teacher is not used")
    if teacher_path:
        # Token-level KD and hidden-state matching both compare the two models position by position.
        check_vocab_compatible(tokenizer, AutoTokenizer.from_pretrained(teacher_path))
    data = load_sft_data(cfg, tokenizer)
    if dry_run:  # exactly one optimizer step's examples
        n = cfg.batch_size * cfg.grad_accum * args.world_size
        data = replace(data, rows=data.rows[:n], examples=data.examples[:n])
    orders = epoch_orders(cfg, data.rows)
    cut = f" ({data.truncated} cut to max_len)" if data.truncated else ""
    say(f"{len(data.examples)} examples from {cfg.data}{cut}")

    store = teacher = None
    if cfg.topk is not None:
        source = {"data_sha256": file_sha256(cfg.data), "max_len": cfg.max_len, "examples": len(data.examples),
                  "chat": cfg.chat}
        if cfg.served_teacher and args.world_size > 1 and not store_is_complete(cfg, len(data.examples), None):
            raise ConfigError(
                f"the top-k store {cfg.store_dir()} lacks examples; fill it from {cfg.teacher} in one process first "
                "(the same command without the launcher, with --store-only): filled here, it would keep the other "
                f"{args.world_size - 1} process(es) waiting at a barrier, for hours at scale, past ddp_timeout")
        with args.main_process_first(local=False, desc="top-k store"):
            store = prepare_store(cfg, data.examples, teacher_path=teacher_path, pad_id=pad_id,
                                  device=args.device, source=source, say=say, tokenizer=tokenizer,
                                  vocab_size=AutoConfig.from_pretrained(student_path).vocab_size)
    if store_only:
        if store is None:
            raise ConfigError("--store-only fills a top-k store: it needs --topk K")
        say(f"top-k store {store.folder}: {store.num_examples} examples; stopping before training (--store-only)")
        return TrainResult(out=str(out), final="", merged=None, checkpoints=[], epochs=[], stopped_early=False)
    attn = "eager" if cfg.attention else None  # SDPA kernels never materialise attention maps
    if teacher_path and store is None:
        teacher = load_teacher(teacher_path, args.device, attn_implementation=attn)

    set_seed(cfg.seed)  # LoRA and projector initialisation
    local = args.local_process_index if torch.cuda.is_available() else None
    model = load_student(cfg, student_path, attn_implementation=attn, local_device=local)
    if cfg.qat:
        from tourney.trainers.qat import apply_qat, plan_types

        kinds = apply_qat(model, plan_types(student_path, cfg.qat))
        mix = sorted({k: sum(v == k for v in kinds.values()) for k in kinds.values()}.items())
        say(f"quantization-aware training for {cfg.qat}: " + ", ".join(f"{n} matrices {k}" for k, n in mix))
    last = get_last_checkpoint(cfg.out) if out.is_dir() else None
    projector = distill_loss = None
    if cfg.uses_features:
        s_cfg, t_cfg = AutoConfig.from_pretrained(student_path), teacher.config
        layer_map = cfg.feature_config().resolve_layer_map(s_cfg.num_hidden_layers, t_cfg.num_hidden_layers)
        projector = FeatureProjector(layer_map, s_cfg.hidden_size, t_cfg.hidden_size)
        if last is not None:
            projector.load_state_dict(load_projector(last).state_dict())
        projector.to(args.device)
    if cfg.method != "sft":
        distill_loss = DistillLoss(cfg, teacher=teacher, projector=projector)

    epoch_cb = EpochEndCallback(cfg, say=say)
    trainer = DistillTrainer(
        model=model, args=args, train_dataset=SFTDataset(data.examples), data_collator=SFTCollator(pad_id, store),
        processing_class=tokenizer, orders=orders, distill_loss=distill_loss, projector=projector,
        callbacks=[epoch_cb, *callbacks],
    )
    if progress:  # one bar with loss and tokens/s instead of the Trainer's printed log dicts
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(TrainProgress())
    if last is not None:
        say(f"resuming from {last}")
    trainer.train(resume_from_checkpoint=last)

    final = out / "final"
    trainer.save_model(str(final))
    merged = None
    if cfg.uses_lora and cfg.merge:
        merged = out / "merged"
        if trainer.is_world_process_zero():
            merge_lora(final, merged)
            say(f"merged adapters into {merged}")
    trainer.accelerator.wait_for_everyone()
    epochs = read_epochs(out)
    say(f"final weights in {final}")
    quantized = out / f"final-{cfg.qat}.gguf" if cfg.qat else None
    if quantized is not None and trainer.is_world_process_zero():
        from tourney.models.gguf_quantize import describe, export_quantized

        for line in describe(export_quantized(final, quantized, cfg.qat)):
            say(line)
    if dry_run:
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        say(f"dry run: {len(data.examples)} examples, {trainer.state.global_step} optimizer step(s), "
            f"loss {losses[-1] if losses else float('nan'):.4f}; built and saved in {out}")
    return TrainResult(out=str(out), final=str(final), merged=None if merged is None else str(merged),
                       checkpoints=[str(p) for p in _checkpoints(out)], epochs=epochs,
                       stopped_early=any(r.stopped for r in epochs),
                       quantized=None if quantized is None else str(quantized))


def _clear_dry_run(folder: Path) -> None:
    """Everything a previous dry run left in OUT/dry-run but its top-k store (costly to refill)."""
    import shutil

    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if p.name.startswith("topk-k"):
            continue
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def _checkpoints(out: Path) -> list[Path]:
    found = [p for p in out.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))
