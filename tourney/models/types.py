"""The contract every backend keeps: generation settings, one sample's result, the Backend protocol.

Names follow OpenAI/vLLM (`max_tokens`, `top_p`, `stop`, `n`, `logprobs`) so users already know them.
"""
from __future__ import annotations

import re
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Sequence, Union

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
    replaced_surrogates: int = 0  # lone UTF-16 surrogates in the text, replaced by U+FFFD (see clean_text)
    # Set where the text was cut at a stop sequence after generation (recorded outputs, cut_at_stop):
    # the whole output, and the character offset in it where `text` ends.
    raw_text: str | None = None
    cut_at: int | None = None

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
            "replaced_surrogates": self.replaced_surrogates,
            "raw_text": self.raw_text,
            "cut_at": self.cut_at,
        }


def cut_at_stop(text: str, stop: Sequence[str]) -> int | None:
    """Where generation with these stop sequences would have ended `text`: the start of the
    earliest stop sequence in it (the stop itself is not part of the output, as in vLLM, llama.cpp
    and OpenAI), or None when none occurs."""
    found = [i for i in (text.find(s) for s in stop if s) if i != -1]
    return min(found) if found else None


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> tuple[str, int]:
    """`text` with every lone UTF-16 surrogate replaced by U+FFFD, and how many there were.

    A server may send one as a JSON escape ("\\ud800"); Python decodes it into a str that no
    UTF-8 file can hold, so one such character would fail every write of the run. Backends call
    this on model output at the boundary. (Paired escapes decode to one real character and are
    left alone.)
    """
    cleaned, count = _LONE_SURROGATE.subn("\ufffd", text)
    return cleaned, count


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do beyond `generate`, and how it wants to be called: declared here, in
    the contract (as lm-eval's `LM` declares the request types it answers), so that callers read
    it instead of probing for methods."""

    server: bool = False  # a remote server: requests are independent, `concurrency` of them in flight
    concurrency: int = 1  # requests it keeps in flight (servers); 1 for in-process backends
    # Prompts per `generate` call that suit it: an in-process backend's forward batch, whose
    # padding makes a batch's outputs depend on its composition (callers that resume send whole
    # batches again, in the same order); None: any list at once (servers, and engines that
    # schedule the whole list themselves, such as vLLM's offline LLM).
    batch_size: int | None = None
    recorded: bool = False  # answers recorded per question: call generate_questions, not generate
    choice_scoring: bool = False  # score_choices works (else it raises BackendError)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {self.batch_size}")


# `on_done(index, samples)` returns at once. It may hand back a concurrent.futures.Future: the
# prompt's slot stays taken (no new request starts in its place) until that future is done, and
# its exception stops the generation. So a caller can record answers in a thread of its own
# without the backend parking a thread per slot to wait (models.openai_backend awaits it on its
# event loop; thread-based backends call `settle`).
OnDone = Callable[[int, "list[Generation]"], "Future[None] | None"]


def settle(waiting: "Future[None] | None") -> None:
    """Wait for what `on_done` handed back (nothing, or a future), raising its exception."""
    if waiting is not None:
        waiting.result()


def settle_once(future: "Future[None]", error: BaseException | None = None) -> bool:
    """Settle `future` (a result of None, or `error`) unless it is settled already; whether this
    call did it. A future handed out by `on_done` can be settled from two sides (the caller
    recording or stopping, a backend's worker cancelled while it waits), and whoever comes second
    must neither raise InvalidStateError nor replace the first outcome: cancellation counts as
    settled. The check and the set are one step under the future's own lock, so no interleaving
    of the two sides can fail."""
    try:
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
    except InvalidStateError:  # settled first by the other side: its outcome stands
        return False
    return True


class Backend(Protocol):
    """Batch in, same-length list out; the backend batches or parallelises inside.

    `generate` returns, for each prompt, `cfg.n` Generations. A request that fails after its
    retries yields Generations with `error` set rather than raising, so one bad request never
    loses the rest of the batch. `score_choices` returns the summed log-likelihood of each
    choice continuing its prompt.

    Backends subclass this protocol to inherit the defaults of the optional parts: `check`
    (nothing to reach), `generate_each` (batches of `capabilities.batch_size`, one after
    another), `generate_questions` and `score_choices` (refused unless declared).
    """

    spec: str
    capabilities: Capabilities

    def generate(self, prompts: Sequence[Prompt], cfg: GenConfig) -> list[list[Generation]]: ...

    def close(self) -> None: ...

    def check(self) -> None:
        """Raise BackendError unless the model can answer (a server is reachable). In-process
        backends were loaded by their constructor: nothing to do."""

    def generate_each(self, prompts: Sequence[Prompt], cfg: GenConfig, on_done: OnDone) -> None:
        """Generate every prompt's samples and call `on_done(index, samples)` as soon as one
        prompt's samples are all in, in completion order. A server backend calls it where the
        prompt's last request finished, and starts no other request in that slot until what
        `on_done` handed back is settled (OnDone), so a caller that records each answer before
        settling it never holds more unrecorded answers than requests in flight. An exception
        from `on_done` or its future stops the generation (requests not yet started are never
        sent) and is raised here."""
        size = self.capabilities.batch_size or max(len(prompts), 1)
        for start in range(0, len(prompts), size):
            for k, gens in enumerate(self.generate(prompts[start: start + size], cfg)):
                settle(on_done(start + k, gens))

    def requests_in_flight(self) -> int:
        """Requests running right now (servers); 0 where the backend does not count them."""
        return 0

    def generate_questions(self, questions: Sequence[Any], cfg: GenConfig) -> list[list[Generation]]:
        """Recorded outputs are looked up by question (id, then text), not by rendered prompt;
        only backends with `capabilities.recorded` answer this."""
        raise BackendError(f"{self.spec}: this backend generates from prompts, not recorded questions")

    def score_choices(
        self, prompts: Sequence[Prompt], choices: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        """The summed log-likelihood of each choice continuing its prompt (capabilities.choice_scoring)."""
        raise BackendError(f"{self.spec}: this backend cannot score choices")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed spec string such as `hf:path`, `openai:model@http://host:port/v1`."""

    raw: str
    kind: str  # prefix: hf | gguf | openai | vllm | replay
    target: str  # what follows the prefix
