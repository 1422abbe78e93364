"""Hidden-state and attention distillation (FitNets / TinyBERT style) for student and teacher pairs.

Indexing follows Hugging Face outputs, and the two differ:
  - `hidden_states` (output_hidden_states=True) has n_layers + 1 entries: index 0 is the embedding
    output and index i the output of layer i. Layer maps use these indices (0 = embeddings).
  - `attentions` (output_attentions=True; needs attn_implementation="eager", since SDPA and flash
    kernels never materialise the maps) has n_layers entries: layer i is index i - 1.
The student's width usually differs from the teacher's, so each mapped layer gets a learned linear
projector from student width to teacher width, trained with the student and saved beside it.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from tourney.errors import DataError
from tourney.trainers.feature_config import (  # noqa: F401 -- the settings, re-exported beside their losses
    FEATURE_LOSSES, FeatureKDConfig, LayerIndex, default_layer_map, parse_layer_map)

PROJECTOR_FILE = "feature_projector.safetensors"


class FeatureProjector(torch.nn.Module):
    """One Linear(student_width -> teacher_width) per mapped student layer.

    A Linear is used even when the widths are equal: nothing makes the student's hidden basis
    line up with the teacher's, so a learned map (rotation, scale) is what lets the loss measure
    content rather than coordinates. For equal widths it starts as the identity, so step 0 is
    plain MSE / cosine on the raw features.
    """

    def __init__(self, layer_map: dict[int, int], student_width: int, teacher_width: int) -> None:
        super().__init__()
        self.layer_map = dict(sorted(layer_map.items()))
        self.student_width, self.teacher_width = student_width, teacher_width
        self.proj = torch.nn.ModuleDict(
            {str(s): torch.nn.Linear(student_width, teacher_width) for s in self.layer_map}
        )
        if student_width == teacher_width:
            with torch.no_grad():
                for lin in self.proj.values():
                    lin.weight.copy_(torch.eye(teacher_width))
                    lin.bias.zero_()

    def forward(self, student_layer: int, hidden: torch.Tensor) -> torch.Tensor:
        # (..., student_width) -> (..., teacher_width)
        return self.proj[str(student_layer)](hidden)


def save_projector(projector: FeatureProjector, checkpoint_dir: str | Path) -> Path:
    """Write `feature_projector.safetensors` into the student's checkpoint folder.

    The layer map and widths go into the file's metadata so load_projector needs nothing else.
    """
    from safetensors.torch import save_file

    path = Path(checkpoint_dir) / PROJECTOR_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "layer_map": json.dumps({str(s): t for s, t in projector.layer_map.items()}),
        "student_width": str(projector.student_width),
        "teacher_width": str(projector.teacher_width),
    }
    state = {k: v.detach().contiguous() for k, v in projector.state_dict().items()}
    save_file(state, str(path), metadata=meta)
    return path


def load_projector(checkpoint_dir: str | Path) -> FeatureProjector:
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(checkpoint_dir) / PROJECTOR_FILE
    if not path.exists():
        raise DataError(f"{path} not found: was the student trained with feature KD?")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    try:
        layer_map = {int(s): int(t) for s, t in json.loads(meta["layer_map"]).items()}
        sw, tw = int(meta["student_width"]), int(meta["teacher_width"])
    except (KeyError, ValueError) as e:
        raise DataError(f"{path}: metadata lacks a valid layer_map/student_width/teacher_width ({e})") from None
    projector = FeatureProjector(layer_map, sw, tw)
    projector.load_state_dict(load_file(str(path)))
    return projector


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # values (B, S), mask (B, S) bool -> scalar; 0 (not NaN) when nothing is unmasked
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp(min=1)


def feature_loss(
    student_hidden: tuple[torch.Tensor, ...],  # n_student + 1 tensors (B, S, D_s)
    teacher_hidden: tuple[torch.Tensor, ...],  # n_teacher + 1 tensors (B, S, D_t); detached here
    projector: FeatureProjector,
    cfg: FeatureKDConfig,
    mask: torch.Tensor,  # (B, S) positions that count: attention mask or answer-only mask
) -> torch.Tensor:  # scalar, unweighted: the trainer multiplies by cfg.weight
    """Mean over mapped layers of MSE or (1 - cosine) between projected student and teacher states.

    MSE is averaged over positions and teacher dimensions; cosine is in [0, 2] per position.
    The projector's map is the one used; cfg.layer_map, when given, must agree with it.
    """
    if cfg.layer_map is not None and dict(sorted(cfg.layer_map.items())) != projector.layer_map:
        raise ValueError(f"cfg.layer_map {cfg.layer_map} differs from the projector's {projector.layer_map}")
    _check_depth("student", student_hidden, max(projector.layer_map), offset=1)
    _check_depth("teacher", teacher_hidden, max(projector.layer_map.values()), offset=1)
    mask = mask.bool()
    losses = []
    for s_layer, t_layer in projector.layer_map.items():
        h_s = projector(s_layer, student_hidden[s_layer].float())  # (B, S, D_t)
        h_t = teacher_hidden[t_layer].detach().float()  # (B, S, D_t)
        if h_s.shape != h_t.shape:
            raise ValueError(
                f"student layer {s_layer} projects to {tuple(h_s.shape)} but teacher layer {t_layer} "
                f"is {tuple(h_t.shape)}; projector widths or sequence layout disagree"
            )
        if cfg.loss == "mse":
            per_pos = (h_s - h_t).pow(2).mean(-1)  # (B, S)
        else:
            per_pos = 1 - F.cosine_similarity(h_s, h_t, dim=-1, eps=1e-8)  # (B, S)
        losses.append(_masked_mean(per_pos, mask))
    return torch.stack(losses).mean()


def attention_loss(
    student_attn: tuple[torch.Tensor, ...],  # n_student tensors (B, H_s, S, S); layer i at i - 1
    teacher_attn: tuple[torch.Tensor, ...],  # n_teacher tensors (B, H_t, S, S); detached here
    layer_map: dict[int, int],  # student layer -> teacher layer, both >= 1
    mask: torch.Tensor,  # (B, S) query positions that count
) -> torch.Tensor:  # scalar, unweighted
    """MSE between head-averaged attention maps, over unmasked query rows and all key columns.

    Heads are averaged before comparing because the two models rarely have the same number of
    heads, nor any reason for head j of one to play head j's role in the other; the averaged map
    still says which earlier tokens each position reads. Padded keys hold zero attention in both
    models, so they add nothing to the error.
    """
    if 0 in layer_map:
        raise ValueError("layer 0 (embeddings) has no attention map")
    _check_depth("student", student_attn, max(layer_map), offset=0)
    _check_depth("teacher", teacher_attn, max(layer_map.values()), offset=0)
    mask = mask.bool()
    losses = []
    for s_layer, t_layer in sorted(layer_map.items()):
        a_s = student_attn[s_layer - 1].float().mean(1)  # (B, S, S)
        a_t = teacher_attn[t_layer - 1].detach().float().mean(1)  # (B, S, S)
        if a_s.shape != a_t.shape:
            raise ValueError(f"attention maps differ in shape: {tuple(a_s.shape)} vs {tuple(a_t.shape)}")
        losses.append(_masked_mean((a_s - a_t).pow(2).mean(-1), mask))
    return torch.stack(losses).mean()


def _check_depth(who: str, states: tuple[torch.Tensor, ...], deepest: int, offset: int) -> None:
    # offset 1: hidden_states carry the embeddings first; offset 0: attentions do not.
    if deepest + offset > len(states):  # hidden: deepest + 1 entries; attentions: deepest
        kind = "hidden states" if offset else "attention maps"
        raise ValueError(
            f"the layer map needs {who} layer {deepest} but only {len(states)} {kind} were given "
            f"(did the forward pass set output_{'hidden_states' if offset else 'attentions'}=True?)"
        )
