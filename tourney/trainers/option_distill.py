"""Distil a student on a mixed tournament set: option-level KD on multiple choice, token-level KD
or plain CE on the text, in one loop, so that recipes differ only in what they learn from.

Every supervised position contributes one loss term and the batch loss is their mean:
- the option letter of a multiple-choice row: `choice_kd.option_kd_loss` over the option
  letters (option_alpha = 0: hard labels, the teacher's letter; > 0: its soft labels at
  option_temperature);
- every other answer token (a reason, a worked solution, "#### N", the EOS): cross-entropy, or
  with token_alpha > 0 token-level KD against the teacher's logits (`losses.kd_loss`, forward KL,
  computed online: the teacher must share the student's tokenizer).

The loop is `pretrain`'s (AdamW, warm-up then cosine, a seeded shuffle per epoch) and resumes
after a kill from the last finished epoch with the same order, to the same weights.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from tourney.errors import ConfigError
from tourney.trainers.choice_kd import option_kd_loss
from tourney.trainers.pretrain import batches_for_epoch, save_checkpoint
from tourney.trainers.teacher_labels import Example, encode_row, read_rows

IGNORE = -100


@dataclass(frozen=True)
class OptionDistillConfig:
    student: str  # checkpoint folder (or a mini alias) to start from
    data: str  # distillation rows (trainers.teacher_labels)
    out: str  # run folder: epoch-N/ checkpoints, final/, config.json
    teacher: str | None = None  # needed only for token-level KD (token_alpha > 0)
    option_alpha: float = 0.5  # weight of the soft option labels; 0 = hard labels only
    option_temperature: float = 2.0
    token_alpha: float = 0.0  # weight of token-level KD on the text; 0 = CE on the teacher's text
    token_temperature: float = 1.0
    epochs: int = 4
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    max_len: int = 256  # longer examples are cut (their letter must survive the cut)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("option_alpha", "token_alpha"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("option_temperature", "token_temperature", "lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.epochs < 1 or self.batch_size < 1 or self.max_len < 8:
            raise ConfigError("epochs and batch_size must be >= 1 and max_len >= 8")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.token_alpha > 0 and not self.teacher:
            raise ConfigError("token_alpha > 0 (token-level KD) needs a teacher")

    def identity(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "out"}


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, S)
    attention_mask: torch.Tensor  # (B, S)
    targets: torch.Tensor  # (B, S) aligned: targets[b, t] is predicted by logits[b, t]; -100 elsewhere
    mc_rows: torch.Tensor  # (M,) batch rows with an option letter
    mc_positions: torch.Tensor  # (M,) position whose logits predict that letter
    mc_letter_ids: torch.Tensor  # (M, C) token ids of the option letters
    mc_hard: torch.Tensor  # (M,)
    mc_soft: torch.Tensor | None  # (M, C) teacher option log-likelihoods, None if any is missing


def make_batch(examples: Sequence[Example], pad_id: int) -> Batch:
    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    targets = torch.full_like(ids, IGNORE)
    rows, pos, letters, hard, soft = [], [], [], [], []
    for i, e in enumerate(examples):
        n = len(e.ids)
        ids[i, :n] = torch.tensor(e.ids)
        mask[i, :n] = 1
        targets[i, e.start - 1: n - 1] = torch.tensor(e.ids[e.start:])
        if e.letter_at is not None:
            targets[i, e.letter_at - 1] = IGNORE  # the letter's loss is the option loss
            rows.append(i)
            pos.append(e.letter_at - 1)
            letters.append(list(e.letter_ids))
            hard.append(e.hard)
            soft.append(e.soft)
    have_soft = bool(soft) and all(s is not None for s in soft)
    return Batch(ids, mask, targets, torch.tensor(rows, dtype=torch.long), torch.tensor(pos, dtype=torch.long),
                 torch.tensor(letters, dtype=torch.long).reshape(len(rows), -1), torch.tensor(hard, dtype=torch.long),
                 torch.tensor(soft, dtype=torch.float) if have_soft else None)


def batch_loss(cfg: OptionDistillConfig, student_logits: torch.Tensor, batch: Batch,
               teacher_logits: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The mean over supervised positions of their loss terms (module doc), and parts to log."""
    from tourney.trainers.losses import kd_loss

    text = batch.targets != IGNORE
    n_text, n_mc = int(text.sum()), int(batch.mc_rows.numel())
    total = student_logits.sum() * 0
    parts: dict[str, float] = {}
    if n_text:
        if cfg.token_alpha > 0:
            r = kd_loss(student_logits, teacher_logits, batch.targets, temperature=cfg.token_temperature,
                        alpha=cfg.token_alpha, kind="forward")
            text_loss, parts["token_kd"] = r.total, float(r.kd.detach())
        else:
            text_loss = F.cross_entropy(student_logits[text].float(), batch.targets[text])
        parts["text"] = float(text_loss.detach())
        total = total + text_loss * n_text
    if n_mc:
        at = student_logits[batch.mc_rows, batch.mc_positions]  # (M, V)
        s = at.gather(1, batch.mc_letter_ids)  # (M, C)
        if cfg.option_alpha > 0 and batch.mc_soft is None:
            raise ValueError("option_alpha > 0 but some multiple-choice rows have no teacher option scores")
        soft = batch.mc_soft if batch.mc_soft is not None else s.detach()
        r = option_kd_loss(s, soft, batch.mc_hard, temperature=cfg.option_temperature, alpha=cfg.option_alpha)
        parts["option"], parts["option_kd"] = float(r.total.detach()), float(r.kd.detach())
        total = total + r.total * n_mc
    return total / max(1, n_text + n_mc), parts


def _lr(step: int, total: int, cfg: OptionDistillConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _check_same_run(cfg: OptionDistillConfig, out: Path) -> None:
    path = out / "config.json"
    if path.exists():
        old = json.loads(path.read_text())
        differ = sorted(k for k in set(old) | set(cfg.identity()) if old.get(k) != cfg.identity().get(k))
        if differ:
            raise ConfigError(f"{out} holds a run with other settings ({', '.join(differ)} differ); "
                              "use another --out or delete it")
    else:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cfg.identity(), indent=2, sort_keys=True) + "\n")


def _resolve(spec: str) -> str:
    from tourney.models.registry import ALIASES

    return ALIASES.get(spec, spec).removeprefix("hf:")


def train(cfg: OptionDistillConfig, log: Callable[[str], None] = print) -> Path:
    """Train (or resume) and return the final checkpoint folder (OUT/final)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(cfg.out)
    _check_same_run(cfg, out)
    torch.manual_seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(_resolve(cfg.student))
    rows = read_rows(cfg.data)
    examples = [encode_row(tokenizer, r, f"{cfg.data}: row {r.id}") for r in rows]
    examples = [e if len(e.ids) <= cfg.max_len else _cut(e, cfg.max_len) for e in examples]
    model = AutoModelForCausalLM.from_pretrained(_resolve(cfg.student), dtype=torch.float32)
    teacher = None
    if cfg.token_alpha > 0:
        teacher = AutoModelForCausalLM.from_pretrained(_resolve(cfg.teacher), dtype=torch.float32).eval()
        teacher.requires_grad_(False)
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    steps_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    done = max([int(p.name.split("-")[1]) for p in out.glob("epoch-*") if (p / "trainer_state.pt").exists()], default=0)
    if done:
        state = torch.load(out / f"epoch-{done}" / "trainer_state.pt", weights_only=True)
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optim"])
        log(f"resuming after epoch {done}")
    step = done * steps_per_epoch
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for epoch in range(done + 1, cfg.epochs + 1):
        model.train()
        t0, tokens, sums = time.perf_counter(), 0, {}
        for i, idx in enumerate(batches_for_epoch(len(examples), cfg.batch_size, cfg.seed, epoch)):
            batch = make_batch([examples[j] for j in idx], pad)
            for group in optim.param_groups:
                group["lr"] = _lr(step, total, cfg)
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            t_logits = None
            if teacher is not None:
                with torch.no_grad():
                    t_logits = teacher(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            loss, parts = batch_loss(cfg, logits, batch, t_logits)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optim.step()
            step += 1
            tokens += int(batch.attention_mask.sum())
            for k, v in {"loss": float(loss.detach()), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v
            if (i + 1) % 50 == 0 or i + 1 == steps_per_epoch:
                shown = " ".join(f"{k} {v / (i + 1):.4f}" for k, v in sums.items())
                log(f"epoch {epoch}/{cfg.epochs} step {i + 1}/{steps_per_epoch} {shown} "
                    f"{tokens / (time.perf_counter() - t0):,.0f} tok/s")
        ckpt = out / f"epoch-{epoch}"
        save_checkpoint(model, tokenizer, ckpt)
        # Written last: its presence marks the epoch as complete for resumption.
        torch.save({"model": model.state_dict(), "optim": optim.state_dict()}, ckpt / "trainer_state.pt")
    save_checkpoint(model, tokenizer, out / "final")
    return out / "final"


def _cut(e: Example, max_len: int) -> Example:
    if e.letter_at is not None and e.letter_at >= max_len:
        raise ConfigError(f"an example's option letter sits at token {e.letter_at}, past max_len={max_len}")
    return Example(e.ids[:max_len], e.start, e.letter_at, e.hard, e.soft, e.letter_ids)
