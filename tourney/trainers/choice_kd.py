"""Option-level (soft-label) distillation for multiple choice: the teacher's distribution over the
options A/B/C/D against the student's, as the design describes it (Hinton et al. 2015):

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, hard)

`teacher` are the teacher's option log-likelihoods where it commits to its letter (any backend's
`score_choices`, see harness.option_scores: only four numbers per question cross over, so the two
models may use different tokenizers); `student` are the student's logits of the option letters at
the same point; `hard` is the index of the hard label (the teacher's own answer, when the
questions have no gold). T^2 keeps the KL term's gradient on the scale of the CE term's as T
changes, so one alpha means the same at every temperature. alpha = 0 is hard-label training on
the four letters, alpha = 1 pure soft labels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class OptionKDLoss:
    total: torch.Tensor  # alpha * T^2 * kd + (1 - alpha) * ce, mean over questions
    kd: torch.Tensor  # KL at temperature T, mean over questions, before T^2 and alpha
    ce: torch.Tensor  # cross-entropy against the hard labels at T = 1


def option_kd_loss(
    student: torch.Tensor,  # (B, C) the student's logits of the C option letters
    teacher: torch.Tensor,  # (B, C) the teacher's option log-likelihoods (or logits)
    hard: torch.Tensor,  # (B,) long: index of the hard label per question
    temperature: float = 1.0,
    alpha: float = 0.5,
) -> OptionKDLoss:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if student.shape != teacher.shape or student.dim() != 2:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} must both be (B, C)")
    if hard.shape != student.shape[:1]:
        raise ValueError(f"hard labels {tuple(hard.shape)} must be ({student.shape[0]},)")
    kd = option_kl(student, teacher, temperature).mean()
    ce = F.cross_entropy(student.float(), hard.long())
    return OptionKDLoss(total=alpha * temperature**2 * kd + (1 - alpha) * ce, kd=kd, ce=ce)


def option_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(B,) KL(softmax(teacher / T) || softmax(student / T)) per question, from (B, C) scores."""
    t_log = F.log_softmax(teacher.detach().float() / temperature, dim=-1)
    s_log = F.log_softmax(student.float() / temperature, dim=-1)
    return (t_log.exp() * (t_log - s_log)).sum(-1)


def letter_token_ids(tokenizer, letters: Sequence[str], space: str = " ") -> list[int]:
    """The token id of each option letter as the model writes it after `space` (" A", " B", ...).

    Option-level KD reads one logit per option at one position, so each letter must be a single
    token (it is in Qwen3's vocabulary and in the miniature one); otherwise a clear error."""
    ids = []
    for letter in letters:
        toks = tokenizer(space + letter, add_special_tokens=False).input_ids
        if len(toks) != 1:
            raise ValueError(f"option letter {space + letter!r} is {len(toks)} tokens in this tokenizer; "
                             "option-level distillation needs each letter to be one token")
        ids.append(toks[0])
    if len(set(ids)) != len(ids):
        raise ValueError(f"option letters {list(letters)} share token ids {ids}")
    return ids


def gather_option_logits(logits: torch.Tensor, positions: torch.Tensor, letter_ids: Sequence[int]) -> torch.Tensor:
    """(B, S, V) logits, (B,) the position whose logits predict each letter -> (B, C)."""
    rows = logits[torch.arange(logits.shape[0], device=logits.device), positions]  # (B, V)
    return rows[:, list(letter_ids)]
