"""The contract every backend keeps: generation settings, one sample's result, the Backend protocol.

Names follow OpenAI/vLLM (`max_tokens`, `top_p`, `stop`, `n`, `logprobs`) so users already know them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, Sequence, Union, runtime_checkable

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from tourney.errors import BackendError  # noqa: F401 -- re-exported: a backend's error

# A prompt is either raw text (completion endpoints, base models) or a list of chat messages
# ({"role": ..., "content": ...}); a backend applies the model's chat template to the latter.
Message = dict[str, str]
Prompt = Union[str, Sequence[Message]]


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid", allow_inf_nan=False))
class GenConfig:
    """Sampling settings for one batch. Greedy by default so runs are reproducible."""

    max_tokens: int = Field(512, ge=1, description="New tokens per sample.")
    temperature: float = Field(0.0, ge=0, description="0 means greedy.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    stop: tuple[str, ...] = Field((), description="Generation ends before the first of these strings.")
    n: int = Field(1, ge=1, description="Samples per prompt.")
    logprobs: Optional[int] = Field(None, ge=0, le=20, description="None: no logprobs; 0: chosen-token "
                                                                   "logprobs; k > 0: also the top k.")
    seed: Optional[int] = Field(0, description="Per-request seed where the backend supports it.")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class Generation:
    """One sample for one prompt."""

    text: str
    token_logprobs: list[float] | None = None  # logprob of each generated token, when available
    top_logprobs: list[dict[str, float]] | None = None  # per position: token text -> logprob
    finish_reason: str | None = None  # "stop" | "length" | "error" | None
    latency_s: float = 0.0  # this sample's own time: request start to its last token (inside a batch, the
    # step that ended it, as a continuously batching server would return it)
    ttft_s: float | None = None  # time to first token, when the backend measures it
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None  # set when the request failed after its retries; text is then ""
    batch_latency_s: float | None = None  # wall time of the whole batch it was generated in (in-process)

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "token_logprobs": self.token_logprobs,
            "top_logprobs": self.top_logprobs,
            "finish_reason": self.finish_reason,
            "latency_s": self.latency_s,
            "ttft_s": self.ttft_s,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "error": self.error,
            "batch_latency_s": self.batch_latency_s,
        }


@runtime_checkable
class Backend(Protocol):
    """Batch in, same-length list out; the backend batches or parallelises inside.

    `generate` returns, for each prompt, `cfg.n` Generations. A request that fails after its
    retries yields Generations with `error` set rather than raising, so one bad request never
    loses the rest of the batch. `score_choices` returns the summed log-likelihood of each
    choice continuing its prompt.
    """

    spec: str

    def generate(self, prompts: Sequence[Prompt], cfg: GenConfig) -> list[list[Generation]]: ...

    def score_choices(
        self, prompts: Sequence[Prompt], choices: Sequence[Sequence[str]]
    ) -> list[list[float]]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ModelSpec:
    """A parsed spec string such as `hf:path`, `openai:model@http://host:port/v1`."""

    raw: str
    kind: str  # prefix: hf | gguf | openai | vllm | replay
    target: str  # what follows the prefix
