"""VLLMBackend: the missing-extra error everywhere; a smoke test only with vLLM and a CUDA GPU."""
from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from tourney.models.registry import MINI_DIR, load_backend
from tourney.models.types import BackendError, GenConfig
from tourney.models.vllm_backend import VLLMBackend, _to_generations

HAVE_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.skipif(HAVE_VLLM, reason="vllm is installed, so the missing-extra error cannot occur")
def test_without_vllm_load_backend_names_the_extra() -> None:
    with pytest.raises(BackendError, match=r"tourney\[vllm\]") as info:
        load_backend("vllm:x")
    assert "GPU" in str(info.value) and "vllm:x" in str(info.value)


def _smoke_model() -> str:
    """A local model vLLM can load: $TOURNEY_VLLM_MODEL, else the shipped miniature student."""
    model = os.environ.get("TOURNEY_VLLM_MODEL") or str(MINI_DIR / "student")
    if not (Path(model).exists() or os.environ.get("TOURNEY_VLLM_MODEL")):
        pytest.skip(f"no local model for the vLLM smoke test (set TOURNEY_VLLM_MODEL; {model} is absent)")
    return model


@pytest.mark.slow
def test_vllm_smoke() -> None:
    pytest.importorskip("vllm")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA GPU")
    backend = load_backend(f"vllm:{_smoke_model()}", gpu_memory_utilization=0.3, max_model_len=512)
    try:
        out = backend.generate(["1 + 1 =", "The sky is"], GenConfig(max_tokens=4, n=2, logprobs=2))
        assert [len(gens) for gens in out] == [2, 2]
        g = out[0][0]
        assert 1 <= g.completion_tokens <= 4 and g.finish_reason in ("stop", "length")
        assert g.token_logprobs is not None and len(g.token_logprobs) == g.completion_tokens
        assert g.top_logprobs is not None and all(len(t) <= 2 for t in g.top_logprobs)
        assert g.prompt_tokens > 0 and g.latency_s > 0
        [[a, b]] = backend.score_choices(["1 + 1 ="], [[" 2", " 2 2"]])
        assert a < 0 and b < 0 and math.isfinite(a + b)
    finally:
        backend.close()


# -- the RequestOutput -> Generation mapping, on stand-ins shaped like vLLM's objects ----------

def _lp(logprob: float, token: str) -> NS:
    return NS(logprob=logprob, rank=1, decoded_token=token)


def _request_output(metrics: NS | None) -> NS:
    completion = NS(
        text=" 2", token_ids=[7, 8], finish_reason="length",
        logprobs=[{7: _lp(-0.1, " 2"), 9: _lp(-2.5, " 3")}, {8: _lp(-0.7, "."), 5: _lp(-0.6, "!"), 4: _lp(-3.0, "?")}],
    )
    return NS(prompt_token_ids=[1, 2, 3], outputs=[completion], metrics=metrics, prompt_logprobs=None)


def test_request_output_mapping_uses_engine_metrics() -> None:
    out = _request_output(NS(arrival_time=10.0, first_token_time=10.25, finished_time=11.0))
    [g] = _to_generations(out, GenConfig(logprobs=1), batch_wall_s=99.0)
    assert g.text == " 2" and g.finish_reason == "length"
    assert (g.prompt_tokens, g.completion_tokens) == (3, 2)
    assert g.latency_s == 1.0 and g.ttft_s == 0.25 and g.batch_latency_s == 99.0
    assert g.token_logprobs == [-0.1, -0.7]  # the sampled token's, even when it is not the top one
    assert g.top_logprobs == [{" 2": -0.1}, {"!": -0.6}]


def test_request_output_mapping_reads_v1_request_state_stats() -> None:
    """V1: arrival on the frontend's wall clock, token timestamps on the engine core's monotonic
    clock; per-request latency is TTFT plus the first-to-last-token span, inside a longer batch."""
    stats = NS(arrival_time=1.7e9, queued_ts=500.0, scheduled_ts=500.1, first_token_ts=500.3,
               last_token_ts=501.8, first_token_latency=0.4, num_generation_tokens=2)
    [g] = _to_generations(_request_output(stats), GenConfig(), batch_wall_s=5.0)
    assert g.ttft_s == 0.4 and g.latency_s == pytest.approx(1.9) and g.batch_latency_s == 5.0


def test_request_output_without_metrics_falls_back_to_batch_time() -> None:
    [g] = _to_generations(_request_output(None), GenConfig(), batch_wall_s=2.0)
    assert g.latency_s == 2.0 and g.ttft_s is None and g.batch_latency_s == 2.0
    assert g.token_logprobs is None and g.top_logprobs is None


def test_score_choices_sums_continuation_prompt_logprobs() -> None:
    class Tok:  # one token per character; a BOS (id 0) before a prompt
        def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
            return ([0] if add_special_tokens else []) + [ord(c) for c in text]

    class LLM:
        def get_tokenizer(self) -> Tok:
            return Tok()

        def generate(self, prompts: list[dict], params: dict, use_tqdm: bool) -> list[NS]:
            assert params["prompt_logprobs"] >= 0
            # position p's logprob is -p, so a continuation's score shows which positions counted
            return [NS(prompt_logprobs=[None] + [{t: _lp(-float(p), "")} for p, t in enumerate(d["prompt_token_ids"]) if p])
                    for d in prompts]

    backend = object.__new__(VLLMBackend)  # skip __init__: no vLLM here
    backend._llm, backend._SamplingParams = LLM(), dict
    # "ab" -> ids [0, a, b]; choice "c" is position 3; choice "cd" positions 3 and 4
    assert backend.score_choices(["ab"], [["c", "cd"]]) == [[-3.0, -7.0]]


def test_options_are_checked_before_vllm_is_needed(monkeypatch) -> None:
    """Our options against the constructor's signature (no vLLM needed for that), then the
    pass-through ones against vllm.LLM and EngineArgs, here a stand-in module of that shape."""
    import dataclasses
    import sys

    from tourney.errors import ConfigError

    with pytest.raises(ConfigError, match=r"option 'gpu_memory_utilization': Input should be less than or equal to 1"):
        load_backend("vllm:x", gpu_memory_utilization=1.5)

    @dataclasses.dataclass
    class EngineArgs:
        model: str = ""
        enforce_eager: bool = False

    class LLM:
        def __init__(self, model, tensor_parallel_size=1, dtype="auto", gpu_memory_utilization=0.9, **kwargs):
            self.kwargs = kwargs

    monkeypatch.setitem(sys.modules, "vllm", NS(LLM=LLM, EngineArgs=EngineArgs, SamplingParams=object))
    with pytest.raises(ConfigError, match=r"unknown option 'enforce_eagre' .*did you mean enforce_eager\?"):
        load_backend("vllm:x", enforce_eagre=True)
    # disable_log_stats=False is the backend's own default: V1 fills per-request metrics only then
    assert load_backend("vllm:x", enforce_eager=True)._llm.kwargs == {"enforce_eager": True, "disable_log_stats": False}
