"""Export a Hugging Face Qwen3ForCausalLM checkpoint to a GGUF file that llama.cpp loads as `qwen3`.

Our own small exporter over the `gguf` package's GGUFWriter: it handles exactly the dense Qwen3
layout the miniature pair uses (and the real dense Qwen3 checkpoints), and refuses anything else
with an error naming the file and field, rather than writing a file llama.cpp misreads.

Qwen3 uses NeoX-style rotary embeddings in both transformers and llama.cpp, so unlike Llama the
q/k projection weights are copied as they are, with no head permutation. The logits test in
tests/models/test_gguf.py is what proves the mapping right.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from tourney.models.types import BackendError

ARCH = "qwen3"

# Per-layer HF suffix -> GGUF name (llama.cpp's LLM_ARCH_QWEN3 tensor names).
LAYER_TENSORS: dict[str, str] = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
GLOBAL_TENSORS: dict[str, str] = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}


def _fail(path: Path, what: str) -> BackendError:
    return BackendError(f"cannot export {path}: {what}")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise _fail(path, "file is missing")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise _fail(path, f"not valid JSON ({exc})") from None


def _field(cfg: dict[str, Any], path: Path, key: str, kind: type = int) -> Any:
    if key not in cfg or cfg[key] is None:
        raise _fail(path, f"field {key!r} is missing")
    try:
        return kind(cfg[key])
    except (TypeError, ValueError):
        raise _fail(path, f"field {key!r} should be {kind.__name__}, got {cfg[key]!r}") from None


def _check_config(cfg: dict[str, Any], path: Path) -> dict[str, Any]:
    """Validate config.json and return the hyperparameters llama.cpp needs."""
    if cfg.get("model_type") != ARCH:
        raise _fail(path, f"field 'model_type' is {cfg.get('model_type')!r}; only 'qwen3' is supported")
    if cfg.get("attention_bias"):
        raise _fail(path, "field 'attention_bias' is true; llama.cpp's qwen3 has no attention biases")
    if cfg.get("use_sliding_window"):
        raise _fail(path, "field 'use_sliding_window' is true; llama.cpp's qwen3 has no sliding window")
    # transformers 5 nests rope settings in `rope_parameters`; 4.x keeps `rope_theta`/`rope_scaling`.
    rope = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling") or {}
    rope_type = rope.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if rope_type != "default":
        raise _fail(path, f"rope type {rope_type!r} is not supported; only plain RoPE is exported")
    theta = rope.get("rope_theta", cfg.get("rope_theta"))
    if theta is None:
        raise _fail(path, "field 'rope_theta' (or rope_parameters.rope_theta) is missing")
    hp = {k: _field(cfg, path, k) for k in (
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
        "num_attention_heads", "max_position_embeddings")}
    hp["num_key_value_heads"] = int(cfg.get("num_key_value_heads") or hp["num_attention_heads"])
    hp["head_dim"] = int(cfg.get("head_dim") or hp["hidden_size"] // hp["num_attention_heads"])
    hp["rms_norm_eps"] = _field(cfg, path, "rms_norm_eps", float)
    hp["rope_theta"] = float(theta)
    hp["tie_word_embeddings"] = bool(cfg.get("tie_word_embeddings", False))
    return hp


def _iter_weights(ckpt: Path) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (HF name, float32 array) from model.safetensors or a sharded index; never pickle."""
    from safetensors import safe_open

    single, index = ckpt / "model.safetensors", ckpt / "model.safetensors.index.json"
    if single.is_file():
        files = [single]
    elif index.is_file():
        weight_map = _read_json(index).get("weight_map") or {}
        if not weight_map:
            raise _fail(index, "field 'weight_map' is missing or empty")
        files = [ckpt / name for name in sorted(set(weight_map.values()))]
    else:
        raise _fail(ckpt, "neither model.safetensors nor model.safetensors.index.json exists")
    for file in files:
        if not file.is_file():
            raise _fail(file, "safetensors shard is missing")
        # torch, not numpy, because numpy has no bfloat16 and real checkpoints ship in bf16
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                yield name, f.get_tensor(name).float().numpy()


def _gguf_name(hf_name: str, n_layers: int, path: Path) -> str:
    if hf_name in GLOBAL_TENSORS:
        return GLOBAL_TENSORS[hf_name]
    parts = hf_name.split(".", 3)  # model.layers.N.suffix
    if len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[2].isdigit():
        layer, suffix = int(parts[2]), parts[3]
        if layer < n_layers and suffix in LAYER_TENSORS:
            return f"blk.{layer}.{LAYER_TENSORS[suffix]}"
    # Dropping an unknown tensor would silently change the model, so refuse instead.
    raise _fail(path, f"tensor {hf_name!r} has no qwen3 GGUF counterpart")


def _token_text(tok: str | dict[str, Any] | None) -> str | None:
    return tok.get("content") if isinstance(tok, dict) else tok


def _tokenizer_metadata(ckpt: Path, n_vocab: int, cfg: dict[str, Any]) -> dict[str, Any]:
    """Tokens in id order, their types, merges, special ids and the chat template."""
    import gguf

    tj_path = ckpt / "tokenizer.json"
    tj = _read_json(tj_path)
    model = tj.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise _fail(tj_path, f"field 'model.type' is {model.get('type')!r}; a byte-level BPE is required")
    if "ByteLevel" not in json.dumps(tj.get("pre_tokenizer")):
        raise _fail(tj_path, "field 'pre_tokenizer' has no ByteLevel step; llama.cpp's gpt2 model needs one")
    if model.get("ignore_merges"):
        raise _fail(tj_path, "field 'model.ignore_merges' is true; llama.cpp's qwen2 tokenizer applies all merges")
    by_id: dict[int, str] = {int(i): t for t, i in model["vocab"].items()}
    types: dict[int, int] = {i: gguf.TokenType.NORMAL for i in by_id}
    for added in tj.get("added_tokens") or []:
        i = int(added["id"])
        by_id[i] = added["content"]
        types[i] = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
    if max(by_id) >= n_vocab:
        raise _fail(tj_path, f"token id {max(by_id)} does not fit the model's {n_vocab} embedding rows")
    # llama.cpp wants one token per embedding row; rows past the tokenizer (padding) are unused.
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(n_vocab)]
    token_types = [int(types.get(i, gguf.TokenType.UNUSED)) for i in range(n_vocab)]
    # tokenizers >= 0.20 writes merges as pairs; older files as "a b" strings.
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]

    tc_path = ckpt / "tokenizer_config.json"
    tc = _read_json(tc_path) if tc_path.is_file() else {}
    ids = {t: i for i, t in by_id.items()}

    def special_id(name: str) -> int | None:
        text = _token_text(tc.get(f"{name}_token"))
        if text is not None:
            if text not in ids:
                raise _fail(tc_path, f"field '{name}_token' is {text!r}, which is not in the vocabulary")
            return ids[text]
        value = cfg.get(f"{name}_token_id")
        return int(value[0] if isinstance(value, list) else value) if value is not None else None

    template = tc.get("chat_template")
    jinja = ckpt / "chat_template.jinja"  # transformers >= 4.50 saves the template here
    if template is None and jinja.is_file():
        template = jinja.read_text()
    return {
        "tokens": tokens, "token_types": token_types, "merges": merges,
        "eos": special_id("eos"), "bos": special_id("bos"), "pad": special_id("pad"),
        "chat_template": template if isinstance(template, str) else None,
    }


def export_gguf(checkpoint_dir: str | os.PathLike[str], out_path: str | os.PathLike[str], dtype: str = "f32") -> Path:
    """Write `checkpoint_dir` (config.json, model.safetensors, tokenizer.json) as GGUF at `out_path`.

    dtype "f32" keeps every weight exact (the logit-match test uses it); "f16" halves the file and
    keeps 1-D norm weights in f32, as llama.cpp expects for them.
    """
    import gguf

    if dtype not in ("f32", "f16"):
        raise ValueError(f"dtype must be 'f32' or 'f16', got {dtype!r}")
    ckpt, out = Path(checkpoint_dir), Path(out_path)
    if not ckpt.is_dir():
        raise _fail(ckpt, "checkpoint directory does not exist")
    cfg_path = ckpt / "config.json"
    cfg = _read_json(cfg_path)
    hp = _check_config(cfg, cfg_path)

    weights: dict[str, np.ndarray] = {}
    for hf_name, array in _iter_weights(ckpt):
        if hf_name == "lm_head.weight" and hp["tie_word_embeddings"]:
            continue  # tied: llama.cpp reuses token_embd when `output` is absent
        weights[_gguf_name(hf_name, hp["num_hidden_layers"], ckpt)] = array
    expected = {"token_embd.weight", "output_norm.weight"} | {
        f"blk.{i}.{name}" for i in range(hp["num_hidden_layers"]) for name in LAYER_TENSORS.values()}
    if not hp["tie_word_embeddings"]:
        expected.add("output.weight")
    missing = sorted(expected - set(weights))
    if missing:
        raise _fail(ckpt, f"weights are missing tensors {missing[:4]}{' ...' if len(missing) > 4 else ''}")
    n_vocab = weights["token_embd.weight"].shape[0]
    tok = _tokenizer_metadata(ckpt, n_vocab, cfg)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")  # a crash never leaves a truncated file at `out`
    writer = gguf.GGUFWriter(str(tmp), ARCH)
    try:
        writer.add_name(ckpt.resolve().name)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else gguf.LlamaFileType.ALL_F32)
        writer.add_context_length(hp["max_position_embeddings"])
        writer.add_embedding_length(hp["hidden_size"])
        writer.add_block_count(hp["num_hidden_layers"])
        writer.add_feed_forward_length(hp["intermediate_size"])
        writer.add_head_count(hp["num_attention_heads"])
        writer.add_head_count_kv(hp["num_key_value_heads"])
        writer.add_key_length(hp["head_dim"])
        writer.add_value_length(hp["head_dim"])
        writer.add_rope_dimension_count(hp["head_dim"])
        writer.add_layer_norm_rms_eps(hp["rms_norm_eps"])
        writer.add_rope_freq_base(hp["rope_theta"])

        writer.add_tokenizer_model("gpt2")  # byte-level BPE
        writer.add_tokenizer_pre("qwen2")  # Qwen2's split regex, which models/mini/tokenizer.py uses
        writer.add_token_list(tok["tokens"])
        writer.add_token_types(tok["token_types"])
        writer.add_token_merges(tok["merges"])
        for key, adder in (("eos", writer.add_eos_token_id), ("bos", writer.add_bos_token_id),
                           ("pad", writer.add_pad_token_id)):
            if tok[key] is not None:
                adder(tok[key])
        writer.add_add_bos_token(False)  # Qwen prompts start without BOS, as in transformers
        if tok["chat_template"]:
            writer.add_chat_template(tok["chat_template"])

        for name in sorted(weights, key=_tensor_order):
            array = weights[name]
            if dtype == "f16" and array.ndim > 1:
                array = array.astype(np.float16)
            writer.add_tensor(name, np.ascontiguousarray(array))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    writer.close()
    os.replace(tmp, out)
    return out


def _tensor_order(name: str) -> tuple[int, str]:
    """Globals first, then blocks in numeric order, so files read naturally in gguf dumps."""
    if name.startswith("blk."):
        return int(name.split(".")[1]) + 1, name
    return 0, name


def main_export(checkpoint: str, out: str, dtype: str = "f32") -> Path:
    """CLI hook for `tourney export-gguf CHECKPOINT OUT [--dtype f16]`."""
    path = export_gguf(checkpoint, out, dtype=dtype)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, {dtype})")
    return path
