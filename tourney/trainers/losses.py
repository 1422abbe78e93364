"""Distillation losses: token-level KD (dense and top-k), choice-level KD, and a vocabulary check.

Conventions (torchtune's): logits are (B, S, V); labels are (B, S) and already *aligned* with the
logits, labels[b, t] being the target of logits[b, t], with -100 where no loss is taken (prompt,
padding). Hugging Face batches keep labels unshifted because the model shifts inside its own loss,
so pass `shift_labels(batch["labels"])` here. Every token-level loss is a mean over the unmasked
positions, and only those positions are gathered before any softmax: with a 150k vocabulary and
answer-only masks that is most of the memory saved.

Divergences follow TRL's GKD naming. Forward KL is KL(p_teacher || p_student) (mass-covering, the
classic Hinton KD); reverse KL is KL(p_student || p_teacher) (mode-seeking). The generalised JSD of
Agarwal et al. (2306.13649, Eq. 1) with mixture m = beta * p_teacher + (1 - beta) * p_student is
    JSD_beta = beta * KL(p_teacher || m) + (1 - beta) * KL(p_student || m),
and, as in TRL, beta = 0 means forward KL and beta = 1 means reverse KL. Note that those two ends
are special cases, not limits: the formula itself tends to 0 at both ends, so a sweep over beta is
discontinuous at 0 and 1 exactly as it is in TRL.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
KDKind = Literal["forward", "reverse", "jsd"]
KINDS: tuple[str, ...] = ("forward", "reverse", "jsd")


@dataclass(frozen=True)
class KDLoss:
    total: torch.Tensor  # alpha * T^2 * kd + (1 - alpha) * ce: the one to backpropagate
    kd: torch.Tensor  # divergence at temperature T per unmasked token, before the T^2 and alpha
    ce: torch.Tensor  # cross-entropy of the student against the labels, at T = 1


def shift_labels(labels: torch.Tensor) -> torch.Tensor:
    """(B, S) HF-style labels -> (B, S) targets aligned with the logits (logits[t] predicts t+1)."""
    pad = labels.new_full((labels.shape[0], 1), IGNORE_INDEX)
    return torch.cat([labels[:, 1:], pad], dim=1)


def _check(temperature: float, alpha: float, kind: str, beta: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not 0 <= beta <= 1:
        raise ValueError(f"beta must be in [0, 1], got {beta}")


def _effective_kind(kind: str, beta: float) -> str:
    # TRL's endpoints: JSD at beta 0 / 1 *is* forward / reverse KL (see the module docstring).
    if kind == "jsd" and beta == 0:
        return "forward"
    if kind == "jsd" and beta == 1:
        return "reverse"
    return kind


def _kl(p_log: torch.Tensor, q_log: torch.Tensor) -> torch.Tensor:
    """KL(p || q) over the last dim from log-probabilities: (N, V), (N, V) -> (N,)."""
    p = p_log.exp()
    # 0 * log 0 = 0: a token the first distribution never emits costs nothing, even where q_log
    # is -inf (vocabulary columns masked to -inf would otherwise turn the sum into NaN).
    return torch.where(p > 0, p * (p_log - q_log), torch.zeros_like(p)).sum(-1)


def divergence(
    student_logprobs: torch.Tensor,  # (N, V) log-probabilities
    teacher_logprobs: torch.Tensor,  # (N, V) log-probabilities, no gradient expected
    kind: str,
    beta: float = 0.5,
) -> torch.Tensor:  # (N,) one divergence per position
    kind = _effective_kind(kind, beta)
    if kind == "forward":
        return _kl(teacher_logprobs, student_logprobs)
    if kind == "reverse":
        return _kl(student_logprobs, teacher_logprobs)
    b = torch.tensor(beta, dtype=student_logprobs.dtype, device=student_logprobs.device)
    # log m computed in log space: log(beta * p_t + (1 - beta) * p_s) without leaving logs.
    mix = torch.logsumexp(
        torch.stack([teacher_logprobs + torch.log(b), student_logprobs + torch.log1p(-b)]), dim=0
    )
    return b * _kl(teacher_logprobs, mix) + (1 - b) * _kl(student_logprobs, mix)


def _ce(student: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # student (N, V), targets (N,) -> scalar mean; 0 rather than NaN when nothing is unmasked.
    if targets.numel() == 0:
        return student.sum() * 0
    return F.cross_entropy(student, targets)


def _mean(values: torch.Tensor) -> torch.Tensor:
    # (N,) -> scalar; a batch with no answer token contributes 0, not NaN.
    return values.sum() / max(values.numel(), 1)


def kd_loss(
    student_logits: torch.Tensor,  # (B, S, V)
    teacher_logits: torch.Tensor,  # (B, S, V); detached here, so no gradient reaches the teacher
    labels: torch.Tensor,  # (B, S) aligned targets, -100 = ignored (see shift_labels)
    *,
    temperature: float,
    alpha: float,
    kind: KDKind = "forward",
    beta: float = 0.5,
) -> KDLoss:
    """Hinton KD: alpha * T^2 * D(teacher_T, student_T) + (1 - alpha) * CE(student, labels).

    The T^2 keeps the soft term's gradient on the same scale as the CE's when T changes (the
    softened gradients shrink as 1/T^2). `kd` is reported without it, so logs compare across T.
    """
    _check(temperature, alpha, kind, beta)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ; token-level KD needs one sequence layout and "
            "one vocabulary (see check_vocab_compatible)"
        )
    mask = labels != IGNORE_INDEX  # (B, S)
    student = student_logits[mask].float()  # (N, V)
    teacher = teacher_logits.detach()[mask].float()  # (N, V)
    s_log = F.log_softmax(student / temperature, dim=-1)
    t_log = F.log_softmax(teacher / temperature, dim=-1)
    kd = _mean(divergence(s_log, t_log, kind, beta))
    ce = _ce(student, labels[mask])
    return KDLoss(total=alpha * temperature**2 * kd + (1 - alpha) * ce, kd=kd, ce=ce)


def sparse_kd_loss(
    student_logits: torch.Tensor,  # (B, S, V)
    teacher_topk_ids: torch.Tensor,  # (B, S, k) token ids of the teacher's top-k
    teacher_topk_logprobs: torch.Tensor,  # (B, S, k) the teacher's log-probs at T = 1 (fp16 is fine)
    labels: torch.Tensor,  # (B, S) aligned targets, -100 = ignored
    *,
    temperature: float,
    alpha: float,
    kind: KDKind = "forward",
    beta: float = 0.5,
) -> KDLoss:
    """kd_loss with a teacher known only by its top-k per position (offline logits).

    Approximation: the teacher's mass outside its top-k is dropped and the rest renormalised, i.e.
    p_teacher_T = softmax(logprobs / T) over the k ids (exact for what is kept, since log-probs
    differ from logits by a per-position constant). The student's log-softmax is over the full
    vocabulary at T and the divergence is summed over the k ids only:
      - forward: sum_k p_t * (log p_t - log q_s). With q_s unnormalised on the support this is
        >= -log(student mass on the support) >= 0, so it also pulls the student's stray mass
        into the teacher's top-k, like the dense loss does.
      - reverse / jsd: the student is renormalised over the k ids first; unnormalised, the loss
        would reward the student for moving mass *outside* the support (where it is not counted).
    With k = V nothing is dropped and every kind equals kd_loss up to float rounding.
    """
    _check(temperature, alpha, kind, beta)
    if teacher_topk_ids.shape != teacher_topk_logprobs.shape:
        raise ValueError(
            f"top-k ids {tuple(teacher_topk_ids.shape)} and log-probs "
            f"{tuple(teacher_topk_logprobs.shape)} must have the same shape"
        )
    if teacher_topk_ids.shape[:2] != student_logits.shape[:2]:
        raise ValueError(
            f"top-k tensors {tuple(teacher_topk_ids.shape)} do not cover the student's (B, S) = "
            f"{tuple(student_logits.shape[:2])}"
        )
    mask = labels != IGNORE_INDEX  # (B, S)
    student = student_logits[mask].float()  # (N, V)
    ids = teacher_topk_ids[mask].long()  # (N, k)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= student.shape[-1]):
        raise ValueError(
            f"teacher top-k ids span [{int(ids.min())}, {int(ids.max())}] but the student's "
            f"vocabulary has {student.shape[-1]} entries; was the store built with another tokenizer?"
        )
    t_log = F.log_softmax(teacher_topk_logprobs.detach()[mask].float() / temperature, dim=-1)
    s_log = F.log_softmax(student / temperature, dim=-1).gather(-1, ids)  # (N, k)
    if _effective_kind(kind, beta) != "forward":
        s_log = s_log - torch.logsumexp(s_log, dim=-1, keepdim=True)
    kd = _mean(divergence(s_log, t_log, kind, beta))
    ce = _ce(student, labels[mask])
    return KDLoss(total=alpha * temperature**2 * kd + (1 - alpha) * ce, kd=kd, ce=ce)


def choice_distillation_loss(
    student_choice_logliks: torch.Tensor,  # (B, C) log-likelihood of each option under the student
    teacher_choice_logliks: torch.Tensor,  # (B, C) the same under the teacher
    temperature: float = 1.0,
    choice_mask: torch.Tensor | None = None,  # (B, C) bool, False = padding option
) -> torch.Tensor:  # scalar
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)) over the options, mean over questions.

    Only one number per option crosses from teacher to student, so the two may use different
    tokenizers (the teacher's numbers can come from any Backend.score_choices). Both sides must
    score options the same way (both summed or both length-normalised), or the softmaxes compare
    different things. The T^2 matches kd_loss so the two can be mixed with one weight.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if student_choice_logliks.shape != teacher_choice_logliks.shape:
        raise ValueError(
            f"student {tuple(student_choice_logliks.shape)} and teacher "
            f"{tuple(teacher_choice_logliks.shape)} choice scores differ in shape"
        )
    student = student_choice_logliks.float() / temperature
    teacher = teacher_choice_logliks.detach().float() / temperature
    if choice_mask is not None:
        if not bool(choice_mask.any(-1).all()):
            raise ValueError("every question needs at least one unmasked option")
        student = student.masked_fill(~choice_mask, float("-inf"))
        teacher = teacher.masked_fill(~choice_mask, float("-inf"))
    kl = _kl(F.log_softmax(teacher, -1), F.log_softmax(student, -1))  # (B,)
    return temperature**2 * kl.mean()


class _Tokenizer(Protocol):
    def get_vocab(self) -> dict[str, int]: ...


def check_vocab_compatible(student_tokenizer: _Tokenizer, teacher_tokenizer: _Tokenizer) -> None:
    """Raise ValueError unless both tokenizers map the same tokens to the same ids.

    Token-level KD compares distributions id by id, so a mismatch would silently distil the wrong
    tokens. This checks the tokenizers only: the models' logit widths may still be padded past the
    tokenizer's size, which kd_loss's shape check catches.
    """
    vs, vt = student_tokenizer.get_vocab(), teacher_tokenizer.get_vocab()
    ns = len(student_tokenizer) if hasattr(student_tokenizer, "__len__") else len(vs)
    nt = len(teacher_tokenizer) if hasattr(teacher_tokenizer, "__len__") else len(vt)
    problems: list[str] = []
    if ns != nt or len(vs) != len(vt):
        problems.append(f"sizes differ (student {ns}, teacher {nt})")
    differing = [t for t in vs if vt.get(t) != vs[t]] + [t for t in vt if t not in vs]
    if differing:
        shown = ", ".join(f"{t!r}: student {vs.get(t)} / teacher {vt.get(t)}" for t in differing[:5])
        problems.append(f"{len(differing)} tokens map to different ids, e.g. {shown}")
    if problems:
        raise ValueError(
            "student and teacher vocabularies are incompatible for token-level distillation: "
            + "; ".join(problems)
            + ". Use choice-level distillation (choice_distillation_loss over each option's "
            "log-likelihood) or sequence-level distillation (fine-tune the student on the "
            "teacher's generated text) instead."
        )
