"""Distil a student on a mixed tournament set: option-level KD on multiple choice, token-level KD
or plain CE on the text, in one loop, so that recipes differ only in what they learn from.

The loss is the design's alpha * T^2 * KL + (1 - alpha) * CE, per answer token:

    loss = ( sum over answer tokens t of w_t * l_t
             + sum over multiple-choice rows q of n_q * option_alpha * T^2 * KL_q ) / (answer tokens)

- l_t: cross-entropy of the teacher's text (its answer, its reason, a worked solution, "#### N",
  the EOS), or with token_alpha > 0 token-level KD against the teacher's logits (forward KL at
  token_temperature, computed online: the teacher must share the student's tokenizer);
- w_t = 1 - option_alpha on a multiple-choice row's tokens, 1 elsewhere;
- KL_q: the teacher's distribution over the options (its option log-likelihoods where it
  committed, harness.option_scores) against the student's, at option_temperature
  (choice_kd.option_kl); the student's come from scoring each option as a continuation of the
  row's context, one extra forward pass over the C options. n_q, the row's answer tokens, gives
  the option term the weight its CE gave up.

option_alpha = 0 is plain SFT on the teacher's answers (hard labels); the same rows, epochs and
steps with option_alpha > 0 are soft labels at an equal budget.

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
from tourney.trainers.choice_kd import option_kl
from tourney.trainers.pretrain import batches_for_epoch, resume_epoch, save_checkpoint, save_epoch
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
    max_len: int = 256  # longer open-ended examples are cut; a multiple-choice one is an error
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
    weights: torch.Tensor  # (B, S) weight of each target's token loss: 1 - option_alpha on multiple choice
    mc_rows: torch.Tensor  # (M,) batch rows that are multiple choice
    mc_tokens: torch.Tensor  # (M,) answer tokens of each (the weight its option term carries)
    mc_hard: torch.Tensor  # (M,)
    mc_soft: torch.Tensor | None  # (M, C) teacher option log-likelihoods; None if any row lacks them
    option_ids: torch.Tensor  # (M * C, W) context + each option, right-padded
    option_mask: torch.Tensor  # (M * C, W)
    option_targets: torch.Tensor  # (M * C, W) aligned targets on the option's tokens only, -100 elsewhere


def _pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max((len(x) for x in seqs), default=1)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, x in enumerate(seqs):
        ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
        mask[i, : len(x)] = 1
    return ids, mask


def make_batch(examples: Sequence[Example], pad_id: int, option_alpha: float = 0.0) -> Batch:
    """The teacher's texts as targets, and each multiple-choice row's options as continuations of
    its context (scored by the student only when option_alpha > 0)."""
    ids, mask = _pad([e.ids for e in examples], pad_id)
    targets = torch.full_like(ids, IGNORE)
    weights = torch.zeros(ids.shape, dtype=torch.float)
    rows, n_tokens, hard, soft, option_seqs, spans = [], [], [], [], [], []
    for i, e in enumerate(examples):
        n = len(e.ids)
        targets[i, e.start - 1: n - 1] = torch.tensor(e.ids[e.start:])
        weights[i, e.start - 1: n - 1] = 1.0 if e.answer_at is None else 1.0 - option_alpha
        if e.answer_at is None:
            continue
        rows.append(i)
        n_tokens.append(n - e.start)
        hard.append(e.hard)
        soft.append(e.soft)
        if option_alpha > 0:
            for opt in e.options:
                option_seqs.append(e.ids[: e.answer_at] + list(opt))
                spans.append((e.answer_at, e.answer_at + len(opt)))
    o_ids, o_mask = _pad(option_seqs, pad_id) if option_seqs else (torch.zeros((0, 1), dtype=torch.long),) * 2
    o_targets = torch.full_like(o_ids, IGNORE)
    for j, (a, b) in enumerate(spans):
        o_targets[j, a - 1: b - 1] = o_ids[j, a:b]
    have_soft = bool(soft) and all(x is not None for x in soft)
    return Batch(ids, mask, targets, weights, torch.tensor(rows, dtype=torch.long),
                 torch.tensor(n_tokens, dtype=torch.float), torch.tensor(hard, dtype=torch.long),
                 torch.tensor(soft, dtype=torch.float) if have_soft else None, o_ids, o_mask, o_targets)


def token_losses(student_logits: torch.Tensor, targets: torch.Tensor, teacher_logits: torch.Tensor | None,
                 alpha: float, temperature: float) -> torch.Tensor:
    """Per target token (N,): CE, or alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE (the
    per-token form of losses.kd_loss with kind forward, whose mean it equals)."""
    mask = targets != IGNORE
    s = student_logits[mask].float()
    ce = F.cross_entropy(s, targets[mask], reduction="none")
    if teacher_logits is None or alpha == 0:
        return ce
    t_log = F.log_softmax(teacher_logits[mask].detach().float() / temperature, dim=-1)
    s_log = F.log_softmax(s / temperature, dim=-1)
    kl = (t_log.exp() * (t_log - s_log)).sum(-1)
    return alpha * temperature**2 * kl + (1 - alpha) * ce


def option_logliks(option_logits: torch.Tensor, batch: Batch, n_options: int) -> torch.Tensor:
    """(M * C, W, V) logits of the option sequences -> (M, C) summed log-likelihood of each option."""
    mask = batch.option_targets != IGNORE
    logp = option_logits.float().log_softmax(-1)
    picked = logp.gather(-1, batch.option_targets.clamp(min=0)[..., None])[..., 0]
    return (picked * mask).sum(-1).reshape(-1, n_options)


def batch_loss(cfg: OptionDistillConfig, student_logits: torch.Tensor, batch: Batch,
               teacher_logits: torch.Tensor | None = None,
               option_logits: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """(sum over answer tokens of weight * token loss + sum over multiple-choice rows of
    n_tokens * option_alpha * T^2 * KL over the options) / number of answer tokens (module doc)."""
    mask = batch.targets != IGNORE
    n = int(mask.sum())
    per_token = token_losses(student_logits, batch.targets, teacher_logits, cfg.token_alpha, cfg.token_temperature)
    total = (per_token * batch.weights[mask]).sum()
    parts = {"token": float(per_token.detach().mean()) if n else 0.0}
    if cfg.option_alpha > 0 and batch.mc_rows.numel():
        if batch.mc_soft is None:
            raise ValueError("option_alpha > 0 but some multiple-choice rows have no teacher option scores")
        s = option_logliks(option_logits, batch, batch.mc_soft.shape[1])
        per_row = option_kl(s, batch.mc_soft, cfg.option_temperature)  # (M,)
        total = total + cfg.option_alpha * cfg.option_temperature**2 * (per_row * batch.mc_tokens).sum()
        parts["option_kd"] = float(per_row.detach().mean())
    return total / max(1, n), parts


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
    done = resume_epoch(out, model, optim, log)
    step = done * steps_per_epoch
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for epoch in range(done + 1, cfg.epochs + 1):
        model.train()
        t0, tokens, sums = time.perf_counter(), 0, {}
        for i, idx in enumerate(batches_for_epoch(len(examples), cfg.batch_size, cfg.seed, epoch)):
            batch = make_batch([examples[j] for j in idx], pad, cfg.option_alpha)
            for group in optim.param_groups:
                group["lr"] = _lr(step, total, cfg)
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            t_logits = o_logits = None
            if teacher is not None:
                with torch.no_grad():
                    t_logits = teacher(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            if batch.option_ids.shape[0]:  # the student's own option scores, for the soft labels
                o_logits = model(input_ids=batch.option_ids, attention_mask=batch.option_mask).logits
            loss, parts = batch_loss(cfg, logits, batch, t_logits, o_logits)
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
        save_epoch(out, epoch, model, tokenizer, optim)
    save_checkpoint(model, tokenizer, out / "final")
    return out / "final"


def _cut(e: Example, max_len: int) -> Example:
    if e.answer_at is not None:
        raise ConfigError(f"a multiple-choice example is {len(e.ids)} tokens, past max_len={max_len}; raise max_len")
    return Example(e.ids[:max_len], e.start)
