"""The documented configuration of the real pair, validated and turned into commands."""
from __future__ import annotations

import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tourney.errors import DataError

REFERENCE_FILE = Path(__file__).parent / "configs" / "reference_pair.toml"
GIB = 1024**3


@dataclass(frozen=True)
class ServedModel:
    role: str
    model: str
    params_b: float
    dtype_bytes: int
    tensor_parallel_size: int
    gpu_memory_gib: float
    port: int
    base_url: str
    max_model_len: int
    serve_args: tuple[str, ...]

    @property
    def spec(self) -> str:
        return f"openai:{self.model}@{self.base_url}"

    def weight_gib_per_gpu(self) -> float:
        return self.params_b * 1e9 * self.dtype_bytes / GIB / self.tensor_parallel_size

    def serve_command(self) -> str:
        args = ["vllm", "serve", self.model, "--tensor-parallel-size", str(self.tensor_parallel_size),
                "--port", str(self.port), "--max-model-len", str(self.max_model_len), *self.serve_args]
        return shlex.join(args)

    def validate(self, where: str) -> None:
        tp = self.tensor_parallel_size
        if tp < 1 or tp & (tp - 1):
            raise DataError(f"{where}: tensor_parallel_size must be a power of two, got {tp}")
        # Weights must leave room for activations and the KV cache on every GPU.
        if self.weight_gib_per_gpu() > 0.85 * self.gpu_memory_gib:
            raise DataError(f"{where}: {self.weight_gib_per_gpu():.0f} GiB of weights per GPU does not fit "
                             f"{self.gpu_memory_gib} GiB GPUs with tensor_parallel_size={tp}")
        if not self.base_url.startswith(("http://", "https://")) or not self.base_url.rstrip("/").endswith("/v1"):
            raise DataError(f"{where}: base_url must be an http(s) URL ending in /v1, got {self.base_url!r}")
        if f":{self.port}/" not in self.base_url:
            raise DataError(f"{where}: base_url {self.base_url!r} does not use port {self.port}")


@dataclass(frozen=True)
class ReferencePair:
    teacher: ServedModel
    student: ServedModel
    eval: dict

    def eval_command(self, role: str, out: str) -> str:
        """The `tourney eval` command for one model; the student's records token logprobs
        (`--logprobs 0`), which the routing signals read."""
        m = getattr(self, role)
        e = self.eval
        logprobs = ["--logprobs", "0"] if role == "student" else []
        return shlex.join(["tourney", "eval", "--model", m.spec, "--data", e["data"], "--chat",
                           "--max-tokens", str(e["max_tokens"]), "--temperature", str(e["temperature"]),
                           "--top-p", str(e["top_p"]), "--concurrency", str(e["concurrency"]), *logprobs,
                           "--out", out])


FIELDS = {f: t for f, t in ServedModel.__annotations__.items() if f != "role"}


def load_reference(path: str | Path = REFERENCE_FILE) -> ReferencePair:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"{path}: not valid TOML: {exc}") from None
    models = {}
    for role in ("teacher", "student"):
        table = raw.get(role)
        if not isinstance(table, dict):
            raise DataError(f"{path}: missing [{role}] table")
        missing = [f for f in FIELDS if f not in table]
        if missing:
            raise DataError(f"{path}: [{role}] lacks {', '.join(missing)}")
        m = ServedModel(role=role, **{**table, "serve_args": tuple(table["serve_args"])})
        m.validate(f"{path} [{role}]")
        models[role] = m
    for key in ("data", "max_tokens", "temperature", "top_p", "concurrency"):
        if key not in raw.get("eval", {}):
            raise DataError(f"{path}: [eval] lacks {key}")
    return ReferencePair(teacher=models["teacher"], student=models["student"], eval=raw["eval"])
