"""OpenAIBackend against llama.cpp's OpenAI-compatible server (llama-cpp-python), started on
127.0.0.1 for this module: the same GGUF served over HTTP must answer as it does in-process.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Iterator

import pytest

from tourney.models.gguf_export import export_gguf
from tourney.models.registry import load_backend
from tourney.models.types import GenConfig
from tests.llama_server import LlamaServer, build_tiny_qwen3, llama_server, missing_server_modules

pytestmark = pytest.mark.integration

MISSING = missing_server_modules()
if MISSING:
    pytest.skip(f"llama.cpp server extras not importable ({', '.join(MISSING)}): "
                "pip install 'tourney[llamacpp]'", allow_module_level=True)
if importlib.util.find_spec("torch") is None:
    pytest.skip("torch is needed to build the tiny model", allow_module_level=True)

PROMPTS = ["Question: Mia has 7 pens.", "Ava has 1", "Answer: 3 + 4 ="]
# llama-cpp-python's server applies repeat_penalty=1.1 unless the request says otherwise, and
# OpenAI-style clients do not send that field; the in-process backend mirrors it for the comparison.
SERVER_REPEAT_PENALTY = 1.1


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ckpt = build_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3"))
    return export_gguf(ckpt, ckpt / "model.gguf")


@pytest.fixture(scope="module")
def server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    with llama_server(tiny_gguf, n_ctx=512, timeout_s=90, extra_args=["--n_threads", "1", "--n_threads_batch", "1"],
                      log_dir=tmp_path_factory.mktemp("llama-server-log")) as s:
        yield s


@pytest.fixture(scope="module")
def local(tiny_gguf: Path):
    b = load_backend(f"gguf:{tiny_gguf}", n_threads=1, logprobs=True, repeat_penalty=SERVER_REPEAT_PENALTY)
    yield b
    b.close()


@pytest.fixture
def remote(server: LlamaServer):
    # concurrency > 1 on purpose: requests overlap, which the server must queue, not truncate
    b = load_backend(server.spec("mini"), concurrency=4, timeout_s=60, max_retries=1)
    b.check()
    yield b
    b.close()


def test_server_greedy_equals_in_process(remote, local) -> None:
    cfg = GenConfig(max_tokens=12)
    over_http, in_process = remote.generate(PROMPTS, cfg), local.generate(PROMPTS, cfg)
    for prompt, [r], [g] in zip(PROMPTS, over_http, in_process):
        assert r.error is None, r.error
        assert r.text == g.text, prompt
        assert r.finish_reason == g.finish_reason
        assert r.ttft_s is not None and 0 < r.ttft_s <= r.latency_s
        assert r.completion_tokens >= 1


def test_server_chat_prompts(remote, local) -> None:
    chats = [[{"role": "user", "content": "Ava has 3 pens. How many pens does Ava have now?"}],
             [{"role": "user", "content": "Ben has 10 coins."}]]
    cfg = GenConfig(max_tokens=8)
    over_http, in_process = remote.generate(chats, cfg), local.generate(chats, cfg)
    for [r], [g] in zip(over_http, in_process):
        assert r.error is None, r.error
        assert r.text == g.text
        assert r.ttft_s is not None


@pytest.mark.xfail(
    strict=True,
    reason="llama-cpp-python's echo logprobs pair each prompt token with the next position's "
    "distribution (off by one; abetlen/llama-cpp-python#1983), so scores over its server are wrong",
)
def test_server_scores_equal_in_process(remote, local) -> None:
    prompts, choices = ["Question: Mia has 7 pens.\nAnswer:"], [[" 7", " 12", " 7 pens"]]
    over_http, in_process = remote.score_choices(prompts, choices), local.score_choices(prompts, choices)
    assert over_http[0] == pytest.approx(in_process[0], abs=1e-3)


def test_stop_sequences_reach_the_server(remote, local) -> None:
    # A stop taken from the middle of the greedy output (not its end: a stop completed by the last
    # allowed token ends as "length" in llama.cpp): the server must end before it, leaving the stop
    # out, as the in-process backend and a replay of the uncut text (harness.test_stop) do.
    [[whole]] = remote.generate(PROMPTS[:1], GenConfig(max_tokens=12))
    assert len(whole.text) >= 6, whole.text
    stop = whole.text[len(whole.text) // 2: len(whole.text) // 2 + 2]
    cfg = GenConfig(max_tokens=12, stop=(stop,))
    [[r]], [[g]] = remote.generate(PROMPTS[:1], cfg), local.generate(PROMPTS[:1], cfg)
    assert r.text == g.text == whole.text[: whole.text.find(stop)]
    assert r.finish_reason == g.finish_reason == "stop"
