"""Token-level KD and CE over chunks of positions: losses.kd_loss / sparse_kd_loss / answer CE with
the same value and gradient, and never more than one chunk of (positions x vocabulary) in fp32.

Why. With Qwen3's vocabulary (V = 151,936) one fp32 (positions x V) tensor is 4.9 GB at 8,192
positions, and the unchunked losses hold several at once (the upcast copies, two log-softmaxes,
p, p * (log p - log q), and as many again saved for backward).

What we take from torchtune's ForwardKLWithChunkedOutputLoss, and where we differ. torchtune
upcasts and reduces one chunk at a time, which bounds the *forward*'s temporaries; but each chunk's
autograd graph (its fp32 softmax and log-softmax) stays alive until backward, so the memory
saved for backward still grows with the sequence. Here each chunk's gradient is computed right
away, inside the forward (torch.autograd.grad on that chunk alone), written into the input's
gradient buffer, and the chunk's graph is freed before the next chunk starts. Backward then only
scales the stored gradient. The loss is a sum over positions, so this is exact: the same per-
position maths as losses.py (its divergence function is reused), only the summation order
differs.

Two student inputs:
  - logits (B, S, V), as the model returns them (any dtype): the gradient buffer is (B, S, V) in
    that dtype, which any loss on materialised logits must hand back to the lm_head.
  - HeadInput(hidden (B, S, H), weight (V, H)): the final hidden states and the output
    projection; logits exist one chunk at a time and nothing of size S x V is ever allocated
    (gradients: hidden (B, S, H), and the weight's (V, H) only when it is trained).
Teachers: logits or HeadInput (dense KD), TopKTeacher (the offline top-k store), or None (CE).

`kd` and `ce` of the returned KDLoss are detached values for logging; backpropagate `total`.
A loss built here supports one backward pass (its stored gradient is scaled in place).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch
import torch.nn.functional as F

from tourney.trainers.losses import IGNORE_INDEX, KDKind, KDLoss, _check, _effective_kind, divergence

# 256 positions x 151,936 x 4 bytes = 156 MB per fp32 chunk tensor; one chunk's forward and
# gradient peak at about 5 of them against a top-k teacher, 9 against dense teacher logits
# (benchmarks/loss_memory.py measures the whole loss).
DEFAULT_CHUNK_SIZE = 256


@dataclass(frozen=True)
class HeadInput:
    """Logits given as the output projection of the final hidden states: weight @ hidden (+ bias)."""

    hidden: torch.Tensor  # (B, S, H) after the model's final norm
    weight: torch.Tensor  # (V, H) lm_head.weight
    bias: torch.Tensor | None = None  # (V,) or None (Qwen3 has none)


@dataclass(frozen=True)
class TopKTeacher:
    """A teacher known by its top-k per position (offline_logits store, collated to the batch)."""

    ids: torch.Tensor  # (B, S, k) token ids
    logprobs: torch.Tensor  # (B, S, k) log-probabilities at T = 1


Student = Union[torch.Tensor, HeadInput]
Teacher = Union[torch.Tensor, HeadInput, TopKTeacher, None]


def _shape(x: Student) -> tuple[int, int, int]:
    """(B, S, V) of a logits tensor or a HeadInput."""
    if isinstance(x, HeadInput):
        if x.hidden.ndim != 3 or x.weight.ndim != 2 or x.hidden.shape[-1] != x.weight.shape[-1]:
            raise ValueError(f"HeadInput needs hidden (B, S, H) and weight (V, H), got "
                             f"{tuple(x.hidden.shape)} and {tuple(x.weight.shape)}")
        return x.hidden.shape[0], x.hidden.shape[1], x.weight.shape[0]
    if x.ndim != 3:
        raise ValueError(f"logits must be (B, S, V), got {tuple(x.shape)}")
    return x.shape[0], x.shape[1], x.shape[2]


def _rows(x: Student, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The logits at positions (b, t) as a (C, V) tensor in the input's dtype."""
    if isinstance(x, HeadInput):
        return F.linear(x.hidden[b, t], x.weight, x.bias)
    return x[b, t]


@dataclass(frozen=True)
class _Plan:
    """Everything one chunked loss needs besides the student tensors that receive gradients."""

    student: Student
    teacher: Teacher
    labels: torch.Tensor  # (B, S) aligned targets
    temperature: float
    alpha: float
    kind: str
    beta: float
    chunk_size: int

    def chunk_terms(self, s_rows: torch.Tensor, b: torch.Tensor, t: torch.Tensor):
        """(sum of divergences, sum of CE) over one chunk of positions, both fp32 scalars."""
        temp = self.temperature
        s = s_rows.float()
        targets = self.labels[b, t]
        ce = F.cross_entropy(s, targets, reduction="sum")
        if self.teacher is None:
            return s.new_zeros(()), ce
        s_log = F.log_softmax(s / temp, dim=-1)
        if isinstance(self.teacher, TopKTeacher):
            t_log = F.log_softmax(self.teacher.logprobs[b, t].detach().float() / temp, dim=-1)
            s_log = s_log.gather(-1, self.teacher.ids[b, t].long())
            if _effective_kind(self.kind, self.beta) != "forward":  # as sparse_kd_loss
                s_log = s_log - torch.logsumexp(s_log, dim=-1, keepdim=True)
        else:
            with torch.no_grad():
                t_log = F.log_softmax(_rows(self.teacher, b, t).float() / temp, dim=-1)
        return divergence(s_log, t_log, self.kind, self.beta).sum(), ce


def _grad_leaves(student: Student) -> list[torch.Tensor]:
    if isinstance(student, HeadInput):
        return [x for x in (student.hidden, student.weight, student.bias) if x is not None]
    return [student]


class _ChunkedLoss(torch.autograd.Function):
    """Forward runs every chunk with its own small graph and keeps only the input gradients."""

    @staticmethod
    def forward(ctx, plan: _Plan, *leaves: torch.Tensor):  # leaves: _grad_leaves(plan.student)
        need = [bool(x) for x in ctx.needs_input_grad[1:]]
        b_all, t_all = (plan.labels != IGNORE_INDEX).nonzero(as_tuple=True)  # (N,), (N,)
        n = int(b_all.numel())
        head = isinstance(plan.student, HeadInput)
        # Each position's gradient is written once; a trained projection's is summed over chunks
        # in fp32 (addmm_ into one buffer, so no chunk allocates a second (V, H) tensor).
        grads = [None if not nd else torch.zeros(x.shape, dtype=torch.float32 if head and i else x.dtype,
                                                 device=x.device)
                 for i, (x, nd) in enumerate(zip(leaves, need))]
        a, t2 = plan.alpha, plan.temperature**2
        kd_sum = torch.zeros((), dtype=torch.float32, device=plan.labels.device)
        ce_sum = torch.zeros_like(kd_sum)
        for start in range(0, n, plan.chunk_size):
            b, t = b_all[start: start + plan.chunk_size], t_all[start: start + plan.chunk_size]
            hid = leaves[0][b, t] if head else None  # (C, H)
            rows = F.linear(hid, *leaves[1:]) if head else leaves[0][b, t]  # (C, V), input dtype
            with torch.enable_grad():
                # The chunk's logits are the leaf: its graph starts and ends in this iteration.
                rows = rows.detach().requires_grad_(any(need))
                kd_c, ce_c = plan.chunk_terms(rows, b, t)
                if any(need):
                    (g,) = torch.autograd.grad((a * t2 * kd_c + (1 - a) * ce_c) / n, [rows])
            kd_sum += kd_c.detach()
            ce_sum += ce_c.detach()
            if not any(need):
                continue
            if not head:
                grads[0][b, t] = g
                continue
            weight = leaves[1]
            if need[0]:  # d/d hidden = g @ W (the linear's backward, chunk by chunk)
                grads[0][b, t] = (g @ weight).to(grads[0].dtype)
            if need[1]:
                grads[1].addmm_(g.t().float(), hid.float())
            if len(leaves) > 2 and need[2]:
                grads[2] += g.float().sum(0)
            del g
        denom = max(n, 1)
        kd, ce = kd_sum / denom, ce_sum / denom
        total = a * t2 * kd + (1 - a) * ce
        ctx.grads = [None if g is None else g.to(x.dtype) for g, x in zip(grads, leaves)]
        ctx.mark_non_differentiable(kd, ce)
        return total, kd, ce

    @staticmethod
    def backward(ctx, grad_total, _grad_kd, _grad_ce):
        grads, ctx.grads = ctx.grads, None
        if grads is None:
            raise RuntimeError("a chunked loss supports one backward pass (its gradient was already used)")
        if bool(grad_total != 1):  # in place: the buffers are not needed again
            grads = [None if g is None else g.mul_(grad_total.to(g.dtype)) for g in grads]
        return (None, *grads)


def chunked_kd_loss(
    student: Student,  # logits (B, S, V) or HeadInput
    teacher: Teacher,  # logits (B, S, V), HeadInput or TopKTeacher; None: CE alone
    labels: torch.Tensor,  # (B, S) aligned targets, -100 = ignored (losses.shift_labels)
    *,
    temperature: float = 1.0,
    alpha: float = 0.0,
    kind: KDKind = "forward",
    beta: float = 0.5,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> KDLoss:
    """kd_loss (dense teacher) or sparse_kd_loss (top-k teacher) computed chunk by chunk; see the
    module docstring. With teacher None it is the answer CE (alpha must then be 0)."""
    _check(temperature, alpha, kind, beta)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if teacher is None and alpha != 0:
        raise ValueError(f"alpha={alpha} weights a KD term but no teacher was given")
    bsz, seq, vocab = _shape(student)
    if labels.shape != (bsz, seq):
        raise ValueError(f"labels {tuple(labels.shape)} do not match the student's (B, S) = {(bsz, seq)}")
    if isinstance(teacher, TopKTeacher):
        if teacher.ids.shape != teacher.logprobs.shape or teacher.ids.shape[:2] != (bsz, seq):
            raise ValueError(f"top-k ids {tuple(teacher.ids.shape)} and log-probs {tuple(teacher.logprobs.shape)} "
                             f"must both be (B, S, k) with (B, S) = {(bsz, seq)}")
        ids = teacher.ids[labels != IGNORE_INDEX]
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
            raise ValueError(f"teacher top-k ids span [{int(ids.min())}, {int(ids.max())}] but the student's "
                             f"vocabulary has {vocab} entries; was the store built with another tokenizer?")
    elif teacher is not None and _shape(teacher) != (bsz, seq, vocab):
        raise ValueError(f"student {(bsz, seq, vocab)} and teacher {_shape(teacher)} (B, S, V) differ; token-level "
                         "KD needs one sequence layout and one vocabulary (see check_vocab_compatible)")
    plan = _Plan(student, teacher, labels, temperature, alpha, kind, beta, chunk_size)
    total, kd, ce = _ChunkedLoss.apply(plan, *_grad_leaves(student))
    return KDLoss(total=total, kd=kd, ce=ce)


def chunked_ce(student: Student, labels: torch.Tensor, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> torch.Tensor:
    """Mean cross-entropy over the unmasked positions, chunk by chunk (kd_trainer.answer_ce's value)."""
    return chunked_kd_loss(student, None, labels, chunk_size=chunk_size).total
