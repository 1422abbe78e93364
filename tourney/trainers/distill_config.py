"""The one configuration of a student training run: SFT, logit KD, feature KD, or both KDs.

Written once. Each field carries its type, its range (checked by pydantic before any model is
loaded), its documentation and, where transformers has the same setting, the `TrainingArguments`
field it maps onto (`training_arguments` in the field's metadata; trainers.distill builds the
Trainer's arguments from exactly those). The command line (`tourney distill train`, one option
per field, help from the field's doc), recipe files (`--config FILE`, trainers.recipe) and tests
all build this same class.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import ConfigDict, Field, field_validator
from pydantic.dataclasses import dataclass

from tourney.errors import ConfigError
from tourney.trainers.feature_config import FEATURE_LOSSES, FeatureKDConfig, LayerIndex, parse_layer_map

METHODS = ("sft", "kd", "feature", "kd+feature")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# transformers' schedulers that need no extra arguments.
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt")
REPORT_TO = ("none", "tensorboard", "wandb")
KD_KINDS = ("forward", "reverse", "jsd")  # trainers.losses.KINDS, without importing torch here
CONFIG_FILE = "distill_config.json"
# Fields a resumed run may change: they steer evaluation and logging, not the weights.
RESUMABLE_CHANGES = frozenset({"out", "eval_data", "eval_limit", "eval_max_tokens", "eval_batch_size", "gate",
                               "gate_stop", "gate_alpha", "gate_min_delta", "logging_steps", "merge",
                               "save_total_limit", "report_to"})
# Fields renamed since a run folder may have recorded them: old name -> new name.
RENAMED = {"temperature": "kd_temperature"}


def _field(default: Any, doc: str, *, hf: str | tuple[str, ...] | None = None, alias: bool = True,
           flags: tuple[str, ...] = (), **constraints: Any) -> Any:
    """A documented field. `hf`: the TrainingArguments field(s) it maps onto, whose first name is
    also accepted as a flag and recipe key unless `alias=False` (the same name, another meaning);
    `flags`: extra command-line spellings (older names) besides --field-name."""
    extra: dict[str, Any] = {}
    if hf:
        extra["training_arguments"] = [hf] if isinstance(hf, str) else list(hf)
        if not alias:
            extra["alias"] = False
    if flags:
        extra["flags"] = list(flags)
    return Field(default, description=doc, json_schema_extra=extra or None, **constraints)


@dataclass(config=ConfigDict(extra="forbid", allow_inf_nan=False))
class DistillTrainConfig:
    # -- model and data ------------------------------------------------------------------------
    student: str = _field(..., "Student checkpoint: folder, hf:PATH, Hub id, or an alias (mini-student).")
    data: str = _field(..., "sft.jsonl from `distill select` (or gold/GSM8K-style JSONL).")
    out: str = _field(..., "Run folder: checkpoint-N/ per epoch, eval/, epochs.jsonl, final/, merged/; "
                           "rerun to resume after the last finished epoch.")
    teacher: Optional[str] = _field(None, "Teacher checkpoint (same forms), or a served teacher openai:MODEL@URL "
                                          "(method kd with topk: the store is filled from its prompt logprobs); "
                                          "needed by every method but sft.")
    method: Literal[METHODS] = _field("sft", "sft, kd (logits), feature (hidden states) or kd+feature.")
    chat: bool = _field(False, "Prompts through the student's chat template (instruct students), as "
                               "`eval --chat` sends them.")

    # -- parameter-efficient fine-tuning -------------------------------------------------------
    lora: bool = _field(False, "Train LoRA adapters instead of all weights.")
    qlora: bool = _field(False, "LoRA on a 4-bit (NF4) base via bitsandbytes; CUDA only; implies lora.")
    lora_r: int = _field(16, "Adapter rank.", ge=1)
    lora_alpha: float = _field(32.0, "Adapter scale numerator (scale = alpha / r).", gt=0)
    lora_dropout: float = _field(0.05, "Dropout on the adapter input.", ge=0, lt=1)
    lora_targets: tuple[str, ...] = _field(LORA_TARGETS, "Module names that get adapters (comma-separated "
                                                         "on the command line).", min_length=1)

    # -- optimisation --------------------------------------------------------------------------
    epochs: int = _field(3, "Passes over the data.", hf="num_train_epochs", ge=1)
    lr: float = _field(1e-4, "Peak learning rate; about 1e-5 suits full fine-tuning of big models.",
                       hf="learning_rate", gt=0, lt=1)
    batch_size: int = _field(8, "Sequences per device per micro-step.", hf="per_device_train_batch_size", ge=1)
    grad_accum: int = _field(1, "Micro-steps per optimizer step.", hf="gradient_accumulation_steps", ge=1)
    max_len: int = _field(1024, "Tokens per sequence; longer answers are cut (and counted in the log).", ge=8)
    warmup_ratio: float = _field(0.0, "Share of all optimizer steps spent warming up (transformers reads a "
                                      "warmup_steps below 1 as this share).", hf="warmup_steps", alias=False,
                                 ge=0, lt=1)
    weight_decay: float = _field(0.0, "AdamW weight decay.", hf="weight_decay", ge=0)
    lr_scheduler: Literal[LR_SCHEDULERS] = _field("cosine", "Learning-rate schedule (transformers' names).",
                                                  hf="lr_scheduler_type")
    max_grad_norm: float = _field(1.0, "Gradient clipping norm (0: no clipping).", hf="max_grad_norm", ge=0)

    # -- logit distillation (kd, kd+feature) ---------------------------------------------------
    alpha: float = _field(0.5, "KD weight: loss = alpha * T^2 * KD + (1 - alpha) * CE.", ge=0, le=1)
    # 1, not 2: on the miniature pair's dev split the logit-KD recipe scores 0.880 at T 1 against
    # 0.848 at T 2 (benchmarks/RESULTS.md, distillation table).
    kd_temperature: float = _field(1.0, "Softmax temperature T of both models in the KD term.", gt=0)
    kd_kind: Literal[KD_KINDS] = _field("forward", "forward KL(p_t||p_s), reverse KL(p_s||p_t), or jsd.")
    beta: float = _field(0.5, "jsd: mixture weight of the teacher (0 = forward, 1 = reverse).", ge=0, le=1)
    topk: Optional[int] = _field(None, "Offline KD from a store of the teacher's top-k logits, built once "
                                       "(default: the teacher online, in memory).", ge=1)
    topk_store: Optional[str] = _field(None, "Top-k store folder (default OUT/topk-kK).")
    teacher_hash: Optional[str] = _field(None, "Names the teacher's weights in the store (default: hashed; a served "
                                               "teacher's: none).")
    teacher_concurrency: int = _field(8, "Served teacher: requests in flight while filling the top-k store.", ge=1)
    kd_chunk_size: Optional[int] = _field(None, "Compute the KD / CE loss over chunks of this many positions: the "
                                                "same value and gradient, one chunk's memory (methods other than "
                                                "sft, which keeps the model's own loss; default: all at once).",
                                          ge=1)

    # -- feature distillation (feature, kd+feature) --------------------------------------------
    feature_layer_map: Optional[dict[LayerIndex, LayerIndex]] = _field(
        None, "Student layer -> teacher layer, as 1:2,2:4 (0 = embeddings; default evenly spaced).",
        flags=("--layer-map",), min_length=1)
    feature_loss: Literal[FEATURE_LOSSES] = _field("mse", "Hidden-state loss: mse or cosine.")
    feature_weight: float = _field(1.0, "Weight of the hidden-state loss in the total.", ge=0)
    attention: bool = _field(False, "Also match head-averaged attention maps (loads eager attention).")
    attention_weight: float = _field(1.0, "Weight of the attention loss in the total.", ge=0)

    # -- data order ----------------------------------------------------------------------------
    seed: int = _field(0, "Model init (LoRA, projector), shuffles, and the default per-epoch order.",
                       hf=("seed", "data_seed"), ge=0)
    order_file: Optional[str] = _field(None, "order.json from `distill curriculum`, or a list of index lists "
                                             "(default: a seeded shuffle per epoch).", flags=("--order",))

    # -- evaluation after each epoch -----------------------------------------------------------
    eval_data: Optional[str] = _field(None, "Question file evaluated on every epoch's checkpoint (default: none).")
    eval_limit: Optional[int] = _field(None, "Evaluate the first N questions only.", ge=1)
    eval_max_tokens: int = _field(256, "Generation budget per answer.", ge=1)
    eval_batch_size: int = _field(16, "Questions per generate call.", ge=1)
    gate: bool = _field(False, "Compare each epoch's evaluation with the previous epoch's (needs eval_data).")
    gate_stop: bool = _field(True, "With gate: stop training when significantly worse (--no-gate-stop: flag only).")
    gate_alpha: float = _field(0.05, "Significance level of the gate.", gt=0, lt=1)
    gate_min_delta: float = _field(0.0, "Flag only accuracy drops larger than this fraction.", ge=0, lt=1)

    # -- runtime -------------------------------------------------------------------------------
    logging_steps: int = _field(10, "Optimizer steps between loss logs.", hf="logging_steps", ge=1)
    report_to: Literal[REPORT_TO] = _field("none", "Where the trainer logs losses: none, tensorboard "
                                                   "(OUT/runs/) or wandb.", hf="report_to")
    bf16: Optional[bool] = _field(None, "bf16 mixed precision (default: on where CUDA supports it).", hf="bf16")
    gradient_checkpointing: bool = _field(False, "Trade compute for activation memory.",
                                          hf="activation_checkpointing")
    deterministic: bool = _field(False, "torch deterministic algorithms (transformers' full_determinism).",
                                 hf="full_determinism")
    merge: bool = _field(True, "After LoRA training, also write OUT/merged, a plain checkpoint for hf:.")
    save_total_limit: Optional[int] = _field(None, "Keep only the newest N checkpoints (default: all).",
                                             hf="save_total_limit", ge=1)

    # -- quantization-aware training -----------------------------------------------------------
    qat: Optional[Literal["q4_0", "q8_0"]] = _field(
        None, "Train the student quantization-aware for this GGUF type (weights rounded as llama.cpp's "
              "quantizer rounds them in every forward pass, straight-through gradients; trainers.qat), then "
              "write OUT/final-TYPE.gguf through llama.cpp's quantizer. Epoch evaluations and checkpoints "
              "hold the float32 latent weights; the GGUF file is the quantized student.")

    @field_validator("lora_targets", mode="before")
    @classmethod
    def _split_targets(cls, v: Any) -> Any:
        return tuple(t.strip() for t in v.split(",") if t.strip()) if isinstance(v, str) else v

    @field_validator("feature_layer_map", mode="before")
    @classmethod
    def _parse_layer_map(cls, v: Any) -> Any:
        return parse_layer_map(v) if isinstance(v, str) else v

    def __post_init__(self) -> None:
        # Checks across fields; single-field ranges are in the fields above.
        if self.method != "sft" and not self.teacher:
            raise ValueError(f"method {self.method!r} needs a teacher")
        if self.topk is not None:
            if not self.uses_kd:
                raise ValueError(f"topk (an offline logit store) applies to method kd only, not {self.method!r}")
            if self.uses_features:
                raise ValueError("feature KD needs the teacher's hidden states online; use topk=None with kd+feature")
        if self.served_teacher and self.method != "sft" and (self.method != "kd" or self.topk is None):
            raise ValueError(f"a served teacher ({self.teacher}) gives top-k log-probabilities only: use method kd "
                             "with topk (feature KD and online KD need the teacher's model in this process)")
        if self.attention and not self.uses_features:
            raise ValueError("attention matching is part of feature KD: use method feature or kd+feature")
        if self.gate and not self.eval_data:
            raise ValueError("gate compares per-epoch evaluations: it needs eval_data")
        if self.qat and self.uses_lora:
            raise ValueError("qat trains every weight quantization-aware; it does not combine with lora/qlora")
        if self.attention and self.feature_layer_map and 0 in self.feature_layer_map:
            raise ValueError("attention distillation cannot map layer 0 of feature_layer_map: embeddings have "
                             "no attention")

    @property
    def uses_kd(self) -> bool:
        return self.method in ("kd", "kd+feature")

    @property
    def uses_features(self) -> bool:
        return self.method in ("feature", "kd+feature")

    @property
    def served_teacher(self) -> bool:
        return bool(self.teacher) and self.teacher.strip().startswith("openai:")

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


def training_argument_fields() -> dict[str, list[str]]:
    """Config field -> the TrainingArguments field(s) it sets, read from the fields' metadata."""
    out = {}
    for name, info in DistillTrainConfig.__pydantic_fields__.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("training_arguments"):
            out[name] = list(extra["training_arguments"])
    return out


def check_same_run(cfg: DistillTrainConfig, write: bool = True) -> None:
    """Record cfg in OUT/distill_config.json, or, when resuming (OUT has checkpoints), check that
    the recorded one matches (harness.rundir.check_same_run, the rule every resumable command uses).

    Resuming with another learning rate, method, data file or data contents (`data_sha256`, and
    the order file's) would silently mix two runs in one folder; only the evaluation and logging
    fields (RESUMABLE_CHANGES) may differ.
    """
    from tourney.harness.questions import file_sha256
    from tourney.harness.rundir import check_same_run as same_run, read_json_object, write_json_atomic

    path = Path(cfg.out) / CONFIG_FILE
    now = cfg.to_dict()
    for key, source in (("data_sha256", cfg.data), ("order_file_sha256", cfg.order_file)):
        now[key] = file_sha256(source) if source and Path(source).is_file() else None
    trained = any(p.is_dir() for p in Path(cfg.out).glob("checkpoint-*"))  # before that, nothing to mix
    if path.exists() and trained:
        old = read_json_object(path, "a distillation run's configuration")
        old = {RENAMED.get(k, k): v for k, v in old.items()}
        # Only what the recorded file knows: a field added since then cannot have differed.
        keys = [k for k in now if k not in RESUMABLE_CHANGES and k in old]
        same_run(path, {k: old[k] for k in keys}, {k: now[k] for k in keys},
                 remedy="use another out folder or delete this one", error=ConfigError)
    if write:  # one process writes (rank 0); the rename keeps readers from seeing half a file
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, json.loads(json.dumps(now)))
