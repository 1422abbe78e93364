"""Train a miniature Qwen3-style model from scratch on worked solutions.

The loss covers the answer tokens only (after "Answer:"), because the question is given at test
time and modelling it would spend the tiny model's capacity on names and nouns. Checkpoints are
written every epoch (safetensors) together with the optimizer state, so a killed run resumes from
the last finished epoch with the same data order.
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from tourney.errors import ConfigError

from tourney.models.mini.arch import MiniArch, build_model

PROMPT = "Question: {question}\nAnswer:"


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid", allow_inf_nan=False))
class PretrainConfig:
    out_dir: str = Field(description="Checkpoint folder; epoch-N/ subfolders plus the final model at the top.")
    epochs: int = Field(4, ge=1, description="Passes over the data.")
    batch_size: int = Field(64, ge=1, description="Sequences per optimizer step.")
    lr: float = Field(3e-3, gt=0, lt=1, description="Peak learning rate (tiny models tolerate high rates).")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Cosine floor as a share of lr.")
    warmup_steps: int = Field(100, ge=0, description="Linear warm-up steps.")
    weight_decay: float = Field(0.05, ge=0, description="AdamW weight decay.")
    grad_clip: float = Field(1.0, gt=0, description="Gradient norm clip.")
    seed: int = Field(0, description="Initialisation and data order.")
    threads: Optional[int] = Field(None, ge=1, description="torch CPU threads; None keeps torch's default.")


def prompt_text(row: dict, chat: bool = False) -> str:
    """The prompt the harness sends for this row at evaluation (harness.prompts.template_for):
    "Question: ...\nAnswer:", with the options listed when the row has `choices`."""
    from tourney.harness.prompts import render, template_for
    from tourney.harness.types import Question

    choices = tuple(row.get("choices") or ()) or None
    q = Question(id=str(row.get("id", "")), question=row["question"], answer="", choices=choices)
    rendered = render(template_for(q, chat), q)
    return rendered if isinstance(rendered, str) else rendered[-1]["content"]


def encode_examples(tokenizer, rows: Sequence[dict], *, chat: bool = False) -> list[tuple[list[int], int]]:
    """(token ids, index of the first answer token) per row; the answer ends with EOS.

    The prompt is the one the harness sends at evaluation: the base template ("Question: ...
    Answer:", with the options for a multiple-choice row), or with `chat` the chat template's
    user message through the tokenizer's chat template with the generation prompt (instruct /
    thinking models such as Qwen3, whose EOS is the end-of-turn token). Training on one prompt
    and evaluating on another teaches the student a format it is never asked in.

    A row with `text` instead of a question is training text: every token is learnt (index 0).
    """
    if chat and not getattr(tokenizer, "chat_template", None):
        raise ConfigError("chat=True but the student's tokenizer has no chat template")
    out = []
    for r in rows:
        if "text" in r and "question" not in r:
            ids = tokenizer(r["text"], add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
            out.append((ids, 0))
            continue
        if chat:
            user = prompt_text(r, chat=True)
            text = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                                 add_generation_prompt=True)
            prompt_ids = tokenizer(text, add_special_tokens=False).input_ids
            sep = ""  # the assistant turn starts right after the template's header
        else:
            prompt_ids = tokenizer(prompt_text(r)).input_ids
            # The answer follows "Answer:" as a model writes it there: teacher outputs already
            # start with that space (generation continues the prompt), gold solutions do not.
            # Adding one more would train on "Answer:  20", a text the teacher never sees, so its
            # logits for KD there would be off-distribution and the student would learn the gap.
            sep = "" if r["solution"][:1].isspace() else " "
        answer_ids = tokenizer(sep + r["solution"], add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        out.append((prompt_ids + answer_ids, len(prompt_ids)))
    return out


def make_batch(examples: Sequence[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch; labels are -100 outside the answer so only answer tokens are learned."""
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (ids, start) in enumerate(examples):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, start : len(ids)] = torch.tensor(ids[start:])
        attention[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def batches_for_epoch(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """A seeded shuffle per epoch, so a resumed run sees exactly the order it would have seen."""
    order = list(range(n))
    random.Random(seed * 1000 + epoch).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def lr_at(step: int, total: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _last_epoch(out: Path) -> int:
    done = [int(p.name.split("-")[1]) for p in out.glob("epoch-*") if (p / "trainer_state.pt").exists()]
    return max(done, default=0)


def resume_epoch(out: Path, model, optim, log: Callable[[str], None]) -> int:
    """Load the last finished epoch's model and optimizer state from `out`; return that epoch (0: none)."""
    done = _last_epoch(out)
    if done:
        state = torch.load(out / f"epoch-{done}" / "trainer_state.pt", weights_only=True)
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optim"])
        log(f"resuming after epoch {done}")
    return done


def save_epoch(out: Path, epoch: int, model, tokenizer, optim) -> None:
    ckpt = out / f"epoch-{epoch}"
    save_checkpoint(model, tokenizer, ckpt)
    # Written last: its presence marks the epoch as complete for resumption.
    torch.save({"model": model.state_dict(), "optim": optim.state_dict()}, ckpt / "trainer_state.pt")


def pretrain(
    arch: MiniArch,
    tokenizer,
    rows: Sequence[dict],
    cfg: PretrainConfig,
    log: Callable[[str], None] = print,
):
    """Train from scratch (or resume from the last epoch in cfg.out_dir); returns the model."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(arch, vocab_size=len(tokenizer), eos_id=tokenizer.eos_token_id)
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    examples = encode_examples(tokenizer, rows)
    steps_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs

    start_epoch = resume_epoch(out, model, optim, log)

    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        model.train()
        t0, tokens, loss_sum = time.perf_counter(), 0, 0.0
        for i, idx in enumerate(batches_for_epoch(len(examples), cfg.batch_size, cfg.seed, epoch)):
            batch = make_batch([examples[j] for j in idx], tokenizer.pad_token_id)
            for group in optim.param_groups:
                group["lr"] = lr_at(step, total, cfg)
            loss = model(**batch).loss
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optim.step()
            step += 1
            tokens += int(batch["attention_mask"].sum())
            loss_sum += loss.item()
            if (i + 1) % 50 == 0 or i + 1 == steps_per_epoch:
                rate = tokens / (time.perf_counter() - t0)
                log(f"epoch {epoch}/{cfg.epochs} step {i + 1}/{steps_per_epoch} "
                    f"loss {loss_sum / (i + 1):.4f} lr {lr_at(step, total, cfg):.2e} {rate:,.0f} tok/s")
        save_epoch(out, epoch, model, tokenizer, optim)
    save_checkpoint(model, tokenizer, out / "final")
    (out / "pretrain_config.json").write_text(json.dumps({"arch": asdict(arch), "train": asdict(cfg)}, indent=2))
    return model


def save_checkpoint(model, tokenizer, path: Path) -> None:
    """Hugging Face layout: config.json, model.safetensors, tokenizer files."""
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path), safe_serialization=True)
    tokenizer.save_pretrained(str(path))
