"""The one configuration of a student training run: SFT, logit KD, feature KD, or both KDs.

Every field is documented where it is defined and range-checked in __post_init__, so a bad value
fails before any model is loaded. `tourney distill train` and `python -m tourney.cli.distill train` build
this from their options; tests build it directly.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from tourney.trainers.features import FEATURE_LOSSES, FeatureKDConfig
from tourney.trainers.losses import KINDS

METHODS = ("sft", "kd", "feature", "kd+feature")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CONFIG_FILE = "distill_config.json"
# Fields a resumed run may change: they steer evaluation and logging, not the weights.
RESUMABLE_CHANGES = frozenset({"out", "eval_data", "eval_limit", "eval_max_tokens", "eval_batch_size", "gate",
                               "gate_stop", "gate_alpha", "gate_min_delta", "logging_steps", "merge",
                               "save_total_limit"})


@dataclass
class DistillTrainConfig:
    student: str  # student checkpoint: folder, hf:PATH, Hub id, or a mini alias (mini-student)
    data: str  # sft.jsonl (question + solution rows; trainers.dataset.read_sft_jsonl formats)
    out: str  # run folder: checkpoint-N/ per epoch, eval/epoch-N/, epochs.jsonl, final/, merged/
    teacher: str | None = None  # teacher checkpoint (same forms); required by every method but sft
    method: str = "sft"  # "sft" | "kd" (logits) | "feature" (hidden states) | "kd+feature"
    chat: bool = False  # prompts through the chat template (instruct students), as `eval --chat` sends them

    # -- parameter-efficient fine-tuning -------------------------------------------------------
    lora: bool = False  # train LoRA adapters instead of all weights
    qlora: bool = False  # LoRA on a 4-bit (NF4) base via bitsandbytes; CUDA only; implies lora
    lora_r: int = 16  # adapter rank, >= 1
    lora_alpha: float = 32.0  # adapter scale numerator (scale = alpha / r), > 0
    lora_dropout: float = 0.05  # dropout on the adapter input, in [0, 1)
    lora_targets: tuple[str, ...] = LORA_TARGETS  # module names that get adapters

    # -- optimisation --------------------------------------------------------------------------
    epochs: int = 3  # passes over the data, >= 1
    lr: float = 1e-4  # peak learning rate, in (0, 1); ~1e-5 suits full fine-tuning of big models
    batch_size: int = 8  # sequences per device per micro-step, >= 1
    grad_accum: int = 1  # micro-steps per optimizer step, >= 1
    max_len: int = 1024  # tokens per sequence; longer answers are cut (and counted in the log)
    warmup_ratio: float = 0.0  # share of all steps spent warming up, in [0, 1)
    weight_decay: float = 0.0  # AdamW weight decay, >= 0
    lr_scheduler: str = "cosine"  # any transformers scheduler name (linear, cosine, constant, ...)

    # -- logit distillation (kd, kd+feature) --------------------------------------------------
    alpha: float = 0.5  # loss = alpha * T^2 * KD + (1 - alpha) * CE; in [0, 1]
    temperature: float = 2.0  # softmax temperature T of both models in the KD term, > 0
    kd_kind: str = "forward"  # "forward" KL(p_t||p_s), "reverse" KL(p_s||p_t), or "jsd"
    beta: float = 0.5  # jsd mixture weight of the teacher, in [0, 1] (0 = forward, 1 = reverse)
    topk: int | None = None  # None: online teacher in memory; k: offline top-k store, built once
    topk_store: str | None = None  # store folder; default OUT/topk-k{k}
    teacher_hash: str | None = None  # names the teacher's weights in the store; default: hashed

    # -- feature distillation (feature, kd+feature) -------------------------------------------
    feature_layer_map: dict[int, int] | None = None  # student layer -> teacher layer (0 = embeddings)
    feature_loss: str = "mse"  # "mse" or "cosine"
    feature_weight: float = 1.0  # weight of the hidden-state loss in the total, >= 0
    attention: bool = False  # also match head-averaged attention maps (loads eager attention)
    attention_weight: float = 1.0  # weight of the attention loss in the total, >= 0

    # -- data order ----------------------------------------------------------------------------
    seed: int = 0  # model init (LoRA, projector), shuffles, and the default per-epoch order
    order_file: str | None = None  # JSON from `tourney distill curriculum`, or a list of index lists

    # -- evaluation after each epoch -----------------------------------------------------------
    eval_data: str | None = None  # question file evaluated on each epoch's checkpoint; None: skip
    eval_limit: int | None = None  # first N questions only, >= 1
    eval_max_tokens: int = 256  # generation budget per answer, >= 1
    eval_batch_size: int = 16  # questions per generate call, >= 1
    gate: bool = False  # compare each epoch's eval with the previous epoch's (needs eval_data)
    gate_stop: bool = True  # with gate: stop training when significantly worse (False: flag only)
    gate_alpha: float = 0.05  # significance level of the gate, in (0, 1)
    gate_min_delta: float = 0.0  # flag only accuracy drops larger than this fraction, in [0, 1)

    # -- runtime -------------------------------------------------------------------------------
    logging_steps: int = 10  # optimizer steps between loss logs, >= 1
    bf16: bool | None = None  # bf16 mixed precision; None: on where CUDA supports it
    gradient_checkpointing: bool = False  # trade compute for activation memory
    deterministic: bool = False  # torch deterministic algorithms (transformers' full_determinism)
    merge: bool = True  # after LoRA training, also write OUT/merged, a plain checkpoint for hf:
    save_total_limit: int | None = None  # keep only the newest N checkpoints (None: all), >= 1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.method != "sft" and not self.teacher:
            raise ValueError(f"method {self.method!r} needs a teacher")
        for name in ("epochs", "batch_size", "grad_accum", "lora_r", "logging_steps", "eval_max_tokens",
                     "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_len < 8:
            raise ValueError(f"max_len must be >= 8, got {self.max_len}")
        if not 0 < self.lr < 1:
            raise ValueError(f"lr must be in (0, 1), got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not self.lora_alpha > 0:
            raise ValueError(f"lora_alpha must be > 0, got {self.lora_alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not self.lora_targets:
            raise ValueError("lora_targets must name at least one module")
        self.lora_targets = tuple(self.lora_targets)
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.kd_kind not in KINDS:
            raise ValueError(f"kd_kind must be one of {KINDS}, got {self.kd_kind!r}")
        if not 0 <= self.beta <= 1:
            raise ValueError(f"beta must be in [0, 1], got {self.beta}")
        if self.topk is not None:
            if self.topk < 1:
                raise ValueError(f"topk must be >= 1 (or None for an online teacher), got {self.topk}")
            if not self.uses_kd:
                raise ValueError(f"topk (an offline logit store) applies to method kd only, not {self.method!r}")
            if self.uses_features:
                raise ValueError("feature KD needs the teacher's hidden states online; use topk=None with kd+feature")
        if self.feature_loss not in FEATURE_LOSSES:
            raise ValueError(f"feature_loss must be one of {FEATURE_LOSSES}, got {self.feature_loss!r}")
        if self.attention and not self.uses_features:
            raise ValueError("attention matching is part of feature KD: use method feature or kd+feature")
        if self.feature_layer_map is not None:
            self.feature_layer_map = {int(s): int(t) for s, t in self.feature_layer_map.items()}
        self.feature_config()  # validates the layer map and weights
        if self.eval_limit is not None and self.eval_limit < 1:
            raise ValueError(f"eval_limit must be >= 1, got {self.eval_limit}")
        if self.gate and not self.eval_data:
            raise ValueError("gate compares per-epoch evaluations: it needs eval_data")
        if not 0 < self.gate_alpha < 1:
            raise ValueError(f"gate_alpha must be in (0, 1), got {self.gate_alpha}")
        if not 0 <= self.gate_min_delta < 1:
            raise ValueError(f"gate_min_delta must be in [0, 1), got {self.gate_min_delta}")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise ValueError(f"save_total_limit must be >= 1, got {self.save_total_limit}")

    @property
    def uses_kd(self) -> bool:
        return self.method in ("kd", "kd+feature")

    @property
    def uses_features(self) -> bool:
        return self.method in ("feature", "kd+feature")

    @property
    def uses_lora(self) -> bool:
        return self.lora or self.qlora

    def feature_config(self) -> FeatureKDConfig:
        return FeatureKDConfig(layer_map=self.feature_layer_map, loss=self.feature_loss,
                               weight=self.feature_weight, attention=self.attention,
                               attention_weight=self.attention_weight)

    def store_dir(self) -> Path:
        return Path(self.topk_store) if self.topk_store else Path(self.out) / f"topk-k{self.topk}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        if self.feature_layer_map is not None:
            d["feature_layer_map"] = {str(s): t for s, t in self.feature_layer_map.items()}
        return d


def parse_layer_map(text: str | None) -> dict[int, int] | None:
    """"1:2,2:4" -> {1: 2, 2: 4}; None or "" -> None (the default evenly spaced map)."""
    if not text:
        return None
    out: dict[int, int] = {}
    for part in text.split(","):
        s, sep, t = part.strip().partition(":")
        if not sep or not s.strip().isdigit() or not t.strip().isdigit():
            raise ValueError(f"layer map {text!r}: expected student:teacher pairs like 1:2,2:4")
        out[int(s)] = int(t)
    return out


def check_same_run(cfg: DistillTrainConfig, write: bool = True) -> None:
    """Record cfg in OUT/distill_config.json, or, when resuming (OUT has checkpoints), check that
    the recorded one matches.

    Resuming with another learning rate, data file or method would silently mix two runs in one
    folder; only the evaluation and logging fields (RESUMABLE_CHANGES) may differ.
    """
    path = Path(cfg.out) / CONFIG_FILE
    now = cfg.to_dict()
    trained = any(p.is_dir() for p in Path(cfg.out).glob("checkpoint-*"))  # before that, nothing to mix
    if path.exists() and trained:
        old = json.loads(path.read_text())
        names = [f.name for f in fields(cfg) if f.name not in RESUMABLE_CHANGES]
        differ = [n for n in names if old.get(n) != json.loads(json.dumps(now[n]))]
        if differ:
            shown = "; ".join(f"{n}: recorded {old.get(n)!r}, now {now[n]!r}" for n in differ)
            raise ValueError(f"{cfg.out} holds a different training run ({shown}); use another out "
                             "folder or delete this one")
    if write:  # one process writes (rank 0); the rename keeps readers from seeing half a file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(now, indent=2) + "\n")
        os.replace(tmp, path)
