"""Spec strings to backends. Each prefix names a module imported only when used, so a CPU install
never imports vLLM or llama.cpp."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tourney.models.options import option_error
from tourney.models.types import Backend, BackendError, ModelSpec

# prefix -> "module:factory"; the factory takes (ModelSpec, **options) and returns a Backend.
BACKENDS: dict[str, str] = {
    "hf": "tourney.models.hf_backend:HFBackend",
    "openai": "tourney.models.openai_backend:OpenAIBackend",
    "gguf": "tourney.models.gguf_backend:GGUFBackend",
    "vllm": "tourney.models.vllm_backend:VLLMBackend",
    "replay": "tourney.models.replay_backend:ReplayBackend",
}

MINI_DIR = Path(__file__).parent / "mini" / "checkpoints"

# Short names for the shipped miniature pair (and the distilled student once it exists).
ALIASES: dict[str, str] = {
    "mini-teacher": f"hf:{MINI_DIR / 'teacher'}",
    "mini-student": f"hf:{MINI_DIR / 'student'}",
    "mini-distilled": f"hf:{MINI_DIR / 'distilled'}",
}


def replays_recordings(spec: str) -> bool:
    """Whether `spec` returns recorded outputs (replay:) instead of drawing samples: K samples
    from it need no temperature."""
    return ALIASES.get(spec.strip(), spec.strip()).startswith("replay:")


def parse_spec(spec: str) -> ModelSpec:
    """Split `prefix:target`; resolve aliases. Raises BackendError naming the spec."""
    raw = spec
    spec = ALIASES.get(spec.strip(), spec.strip())
    prefix, sep, target = spec.partition(":")
    if not sep or prefix not in BACKENDS:
        known = ", ".join(f"{p}:..." for p in BACKENDS) + ", " + ", ".join(ALIASES)
        raise BackendError(f"unknown model spec {raw!r}: expected one of {known}")
    if not target:
        raise BackendError(f"model spec {raw!r} has nothing after '{prefix}:'")
    return ModelSpec(raw=raw, kind=prefix, target=target)


def load_backend(spec: str, **options: Any) -> Backend:
    """Build the backend a spec names. Options go to the backend's constructor."""
    parsed = parse_spec(spec)
    module_name, _, factory_name = BACKENDS[parsed.kind].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # an optional extra is missing
        extra = {"vllm": "vllm", "gguf": "llamacpp"}.get(parsed.kind, "")
        hint = f" (pip install 'tourney[{extra}]')" if extra else ""
        raise BackendError(f"model spec {spec!r} needs a package that is not installed: {exc}{hint}") from exc
    factory = getattr(module, factory_name)
    try:
        return factory(parsed, **options)
    except ValidationError as exc:  # the constructor's options (models.options.checked_options)
        raise option_error(exc, factory, spec) from None


# Backend options that change how fast answers come, never what they are: a run directory may be
# resumed with other values (every other option is part of the run's identity).
THROUGHPUT_OPTIONS = frozenset({"concurrency", "timeout_s", "max_retries", "backoff_s", "api_key_env", "verbose"})


def output_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options that can change a backend's outputs (device, dtype, batch padding, chat
    template options, server-specific sampling fields...), for a run's identity."""
    return {k: v for k, v in sorted(options.items()) if k not in THROUGHPUT_OPTIONS}


def default_options(spec: str, chat: bool = False, batch_size: int = 16, concurrency: int = 8) -> dict[str, Any]:
    """Backend options for a spec as the commands build them: a server gets `concurrency`
    requests in flight; an in-process transformers model batches `batch_size` prompts (vLLM's
    offline engine takes the whole list and schedules it itself)."""
    kind = parse_spec(spec).kind
    if kind == "openai":
        return {"concurrency": concurrency, "chat": chat}
    if kind == "hf":
        return {"chat": chat, "batch_size": batch_size}
    if kind in ("vllm", "gguf"):
        return {"chat": chat}
    return {}
