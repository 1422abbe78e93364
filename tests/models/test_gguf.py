"""GGUF export and the in-process llama.cpp backend, on a tiny random-weight Qwen3.

The export is right when llama.cpp, reading only the GGUF file, tokenizes like the HF tokenizer and
produces the logits transformers produces; everything after that (greedy text, logprobs, scores)
follows and is checked against transformers too.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tourney.models.gguf_export import LAYER_TENSORS, export_gguf
from tourney.models.types import BackendError, GenConfig, ModelSpec
from tests.llama_server import build_tiny_qwen3

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")
HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None
# llama.cpp stores the KV cache in f16 by default, which alone moves logits by ~1e-3 relative;
# with an f32 cache the only differences left are float32 summation order (~1e-6).
F32_KV = {"type_k": 0, "type_v": 0}  # GGML_TYPE_F32
needs_llama = pytest.mark.skipif(not HAVE_LLAMA, reason="llama-cpp-python is not installed (tourney[llamacpp])")

TEXTS = [
    "Ava has 12 shells. She finds 305 more shells.",
    "Question: How many coins does Ben have now?\nAnswer: 48 + 7 = 55\n#### 55",
    "  two  spaces,\n\nblank line\ttab 0123456789",
    "it's 1,000! What's   that?? (x*y) = 9-3",
    "café naïve ✓ 日本",  # bytes outside the training text: byte-level fallback tokens
]
PROMPTS = ["Question: Mia has 7 pens.", "Ava has 1", "Answer: 3 + 4 ="]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3"))


@pytest.fixture(scope="module")
def tiny_gguf(tiny: Path) -> Path:
    return export_gguf(tiny, tiny / "model-f32.gguf")


@pytest.fixture(scope="module")
def hf(tiny: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny), dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(str(tiny))


def _field(reader, key: str):
    return reader.get_field(key).contents()


def _hf_weights(ckpt: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(ckpt / "model.safetensors"))


# -- export, read back with gguf's own reader -------------------------------------------------


def test_export_metadata(tiny: Path, tiny_gguf: Path) -> None:
    cfg = json.loads((tiny / "config.json").read_text())
    tj = json.loads((tiny / "tokenizer.json").read_text())
    r = gguf.GGUFReader(str(tiny_gguf))
    assert _field(r, "general.architecture") == "qwen3"
    expect = {
        "context_length": 512, "embedding_length": 64, "block_count": 2, "feed_forward_length": 128,
        "attention.head_count": 4, "attention.head_count_kv": 2,
        "attention.key_length": 16, "attention.value_length": 16,
    }
    for key, value in expect.items():
        assert _field(r, f"qwen3.{key}") == value, key
    assert _field(r, "qwen3.attention.layer_norm_rms_epsilon") == pytest.approx(cfg["rms_norm_eps"])
    assert _field(r, "qwen3.rope.freq_base") == pytest.approx(10000.0)

    assert _field(r, "tokenizer.ggml.model") == "gpt2"
    assert _field(r, "tokenizer.ggml.pre") == "qwen2"
    tokens = _field(r, "tokenizer.ggml.tokens")
    vocab = {**tj["model"]["vocab"], **{t["content"]: t["id"] for t in tj["added_tokens"]}}
    assert len(tokens) == cfg["vocab_size"] == len(vocab)
    assert all(tokens[i] == t for t, i in vocab.items())
    types = _field(r, "tokenizer.ggml.token_type")
    special = {t["id"] for t in tj["added_tokens"] if t["special"]}
    assert special == {0, 1, 2}
    assert all(types[i] == (gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL) for i in range(len(types)))
    assert _field(r, "tokenizer.ggml.merges") == [" ".join(m) for m in tj["model"]["merges"]]
    assert _field(r, "tokenizer.ggml.eos_token_id") == 0
    assert _field(r, "tokenizer.ggml.padding_token_id") == 0
    assert _field(r, "tokenizer.ggml.add_bos_token") is False
    assert "Question: {{ message['content'] }}" in _field(r, "tokenizer.chat_template")


def test_export_tensors_match_checkpoint(tiny: Path, tiny_gguf: Path) -> None:
    hf_w = _hf_weights(tiny)
    r = gguf.GGUFReader(str(tiny_gguf))
    got = {t.name: t for t in r.tensors}
    expected = {"token_embd.weight", "output_norm.weight"} | {f"blk.{i}.{n}" for i in range(2) for n in LAYER_TENSORS.values()}
    assert set(got) == expected  # tied embeddings: no `output`
    pairs = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight"}
    pairs |= {f"blk.{i}.{g}": f"model.layers.{i}.{h}" for i in range(2) for h, g in LAYER_TENSORS.items()}
    for gname, hname in pairs.items():
        t, w = got[gname], hf_w[hname]
        assert t.tensor_type == gguf.GGMLQuantizationType.F32
        assert list(t.shape) == list(reversed(w.shape)), gname  # GGUF lists dims fastest-first
        np.testing.assert_array_equal(np.asarray(t.data).reshape(w.shape), w, err_msg=gname)


def test_export_f16_keeps_norms_f32(tiny: Path, tmp_path: Path) -> None:
    r = gguf.GGUFReader(str(export_gguf(tiny, tmp_path / "m16.gguf", dtype="f16")))
    for t in r.tensors:
        want = gguf.GGMLQuantizationType.F32 if len(t.shape) == 1 else gguf.GGMLQuantizationType.F16
        assert t.tensor_type == want, t.name
    assert _field(r, "general.file_type") == gguf.LlamaFileType.MOSTLY_F16


def test_export_errors_name_file_and_field(tiny: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(tiny, bad, ignore=shutil.ignore_patterns("*.gguf"))
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "model_type": "llama"}))
    with pytest.raises(BackendError, match=r"config\.json.*model_type.*'llama'"):
        export_gguf(bad, tmp_path / "x.gguf")
    (bad / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "rms_norm_eps"}))
    with pytest.raises(BackendError, match=r"config\.json.*rms_norm_eps.*missing"):
        export_gguf(bad, tmp_path / "x.gguf")
    (bad / "config.json").write_text(json.dumps(cfg))
    (bad / "tokenizer.json").unlink()
    with pytest.raises(BackendError, match=r"tokenizer\.json.*missing"):
        export_gguf(bad, tmp_path / "x.gguf")
    (bad / "model.safetensors").unlink()
    with pytest.raises(BackendError, match=r"model\.safetensors"):
        export_gguf(bad, tmp_path / "x.gguf")
    with pytest.raises(BackendError, match="does not exist"):
        export_gguf(tmp_path / "nowhere", tmp_path / "x.gguf")
    with pytest.raises(ValueError, match="dtype"):
        export_gguf(tiny, tmp_path / "x.gguf", dtype="q8_0")
    assert not list(tmp_path.glob("x.gguf*"))  # no partial file left behind


# -- llama.cpp reads the file ------------------------------------------------------------------


@pytest.fixture(scope="module")
def llm(tiny_gguf: Path):
    Llama = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (tourney[llamacpp])").Llama
    model = Llama(str(tiny_gguf), n_ctx=512, n_threads=1, n_threads_batch=1, logits_all=True, verbose=False, **F32_KV)
    yield model
    model.close()


def _hf_logits(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].double().numpy()


def _llama_logits(llm, ids: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    return np.asarray(llm.scores[: len(ids)], dtype=np.float64)


@needs_llama
def test_llama_tokenizer_matches_hf(llm, hf) -> None:
    _, tok = hf
    for text in TEXTS:
        assert llm.tokenize(text.encode(), add_bos=False, special=False) == tok.encode(text), text


@needs_llama
def test_llama_logits_match_transformers(llm, hf) -> None:
    model, tok = hf
    worst = 0.0
    for text in TEXTS[:4]:
        ids = tok.encode(text)
        ref, got = _hf_logits(model, ids), _llama_logits(llm, ids)
        scale = np.abs(ref).max()
        assert scale > 1.0  # the random model is not near-uniform, so this comparison has teeth
        worst = max(worst, float(np.abs(ref - got).max() / scale))
        assert (ref.argmax(-1) == got.argmax(-1)).all()
    assert worst < 1e-4, f"max |logit diff| / max |logit| = {worst:.2e}"


@needs_llama
def test_llama_logits_untied_output(tmp_path: Path) -> None:
    Llama = pytest.importorskip("llama_cpp").Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ckpt = build_tiny_qwen3(tmp_path / "untied", tie_word_embeddings=False, seed=1)
    path = export_gguf(ckpt, tmp_path / "untied.gguf")
    assert "output.weight" in {t.name for t in gguf.GGUFReader(str(path)).tensors}
    model = AutoModelForCausalLM.from_pretrained(str(ckpt), dtype=torch.float32).eval()
    ids = AutoTokenizer.from_pretrained(str(ckpt)).encode(TEXTS[1])
    llm = Llama(str(path), n_ctx=128, n_threads=1, n_threads_batch=1, logits_all=True, verbose=False, **F32_KV)
    try:
        ref, got = _hf_logits(model, ids), _llama_logits(llm, ids)
    finally:
        llm.close()
    assert np.abs(ref - got).max() / np.abs(ref).max() < 1e-4


# -- GGUFBackend against transformers ----------------------------------------------------------


@pytest.fixture(scope="module")
def backend(tiny_gguf: Path):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (tourney[llamacpp])")
    from tourney.models.registry import load_backend

    b = load_backend(f"gguf:{tiny_gguf}", n_threads=1, logprobs=True, **F32_KV)
    yield b
    b.close()


def _hf_greedy(hf, prompt: str, n: int) -> list[int]:
    """Greedy continuation ids from transformers, ending where llama.cpp ends: llama.cpp treats
    <|im_end|> as end-of-generation as well as <|endoftext|> (as Qwen3's generation_config does)."""
    model, tok = hf
    stop = [tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")]
    ids = tok(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                             eos_token_id=stop, pad_token_id=tok.pad_token_id)
    new = out[0, ids.shape[1]:].tolist()
    cut = [k for k, t in enumerate(new) if t in stop]
    return new[: cut[0]] if cut else new


def _as_llama_text(llm, ids: list[int]) -> str:
    """What llama-cpp-python prints for `ids`: control tokens render as nothing, and the invalid
    UTF-8 a random model emits is dropped (transformers would show U+FFFD instead)."""
    return llm.detokenize(ids).decode("utf-8", errors="ignore")


@needs_llama
def test_backend_greedy_equals_transformers(backend, hf, llm) -> None:
    _, tok = hf
    for prompt in PROMPTS:
        [[g]] = backend.generate([prompt], GenConfig(max_tokens=12))
        ref = _hf_greedy(hf, prompt, 12)
        assert backend._sampled[: len(ref)] == ref, prompt  # token ids, as sampled by llama.cpp
        # Streaming decodes chunk by chunk, and llama-cpp-python drops a multi-byte character that
        # a random model splits oddly across tokens; the token ids above are the exact check.
        ascii_only = lambda t: t.encode("ascii", "ignore")  # noqa: E731
        assert ascii_only(g.text) == ascii_only(_as_llama_text(llm, ref)), prompt
        assert g.completion_tokens == len(ref)
        assert g.prompt_tokens == len(tok.encode(prompt))
        assert g.finish_reason == ("length" if len(ref) == 12 else "stop")
        assert g.ttft_s is not None and 0 < g.ttft_s <= g.latency_s
        assert g.token_logprobs is None and g.error is None


@needs_llama
def test_backend_logprobs_and_scores_match_transformers(backend, hf) -> None:
    model, tok = hf
    prompt = PROMPTS[0]
    [[g]] = backend.generate([prompt], GenConfig(max_tokens=5, logprobs=3))
    ref = _hf_greedy(hf, prompt, 5)
    assert g.token_logprobs is not None and g.top_logprobs is not None
    assert len(g.token_logprobs) == len(g.top_logprobs) == len(ref)
    ids = tok.encode(prompt) + ref
    lp = torch.log_softmax(torch.tensor(_hf_logits(model, ids)), -1).numpy()
    for k, (token, value, top) in enumerate(zip(ref, g.token_logprobs, g.top_logprobs)):
        expect = lp[len(ids) - len(ref) + k - 1, token]
        assert value == pytest.approx(expect, abs=1e-3)
        # keys are token texts, so tokens that print alike (partial UTF-8) share a key
        assert 1 <= len(top) <= 3 and max(top.values()) == pytest.approx(value, abs=1e-6)  # greedy = top-1

    choices = [" 7", " 12 pens", ""]
    scores = backend.score_choices([prompt], [choices])[0]
    n_prompt = len(tok.encode(prompt))
    for choice, score in zip(choices, scores):
        full = tok.encode(prompt + choice)
        assert full[:n_prompt] == tok.encode(prompt)  # the boundary falls between tokens here
        lp = torch.log_softmax(torch.tensor(_hf_logits(model, full)), -1).numpy()
        expect = sum(lp[k - 1, full[k]] for k in range(n_prompt, len(full)))
        assert score == pytest.approx(expect, abs=1e-3), choice
    assert scores[2] == 0.0


@needs_llama
def test_backend_chat_uses_the_gguf_template(backend) -> None:
    cfg = GenConfig(max_tokens=8)
    [[chat]], [[plain]] = backend.generate([[{"role": "user", "content": "Ava has 3 pens."}]], cfg), \
        backend.generate(["Question: Ava has 3 pens.\nAnswer:"], cfg)
    assert chat.text == plain.text and chat.prompt_tokens == plain.prompt_tokens
    assert chat.completion_tokens == plain.completion_tokens and chat.ttft_s is not None


@needs_llama
def test_backend_sampling_is_seeded_per_sample(backend) -> None:
    cfg = GenConfig(max_tokens=12, temperature=1.0, n=3, seed=5)
    first, again = backend.generate(PROMPTS[:1], cfg)[0], backend.generate(PROMPTS[:1], cfg)[0]
    assert [g.text for g in first] == [g.text for g in again]  # same seeds, same samples
    assert len({g.text for g in first}) > 1  # seed + i: samples differ


@needs_llama
def test_backend_errors(tiny_gguf: Path, tmp_path: Path) -> None:
    from tourney.models.gguf_backend import GGUFBackend

    with pytest.raises(BackendError, match="no GGUF file"):
        GGUFBackend(ModelSpec(raw="gguf:x", kind="gguf", target=str(tmp_path / "x.gguf")))
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file")
    with pytest.raises(BackendError, match="could not load"):
        GGUFBackend(ModelSpec(raw="gguf:junk", kind="gguf", target=str(tmp_path / "junk.gguf")))
    b = GGUFBackend(ModelSpec(raw="gguf:t", kind="gguf", target=str(tiny_gguf)), n_ctx=64, n_threads=1)
    try:
        with pytest.raises(BackendError, match="logprobs=True"):
            b.generate(["x"], GenConfig(max_tokens=2, logprobs=0))
        with pytest.raises(BackendError, match="logprobs=True"):
            b.score_choices(["x"], [["y"]])
        [[g]] = b.generate(["Ava has 12 shells. " * 20], GenConfig(max_tokens=2))  # over n_ctx
        assert g.error and g.finish_reason == "error" and g.text == ""
    finally:
        b.close()
    with pytest.raises(BackendError, match="closed"):
        b.generate(["x"], GenConfig(max_tokens=1))


def test_missing_llama_cpp_names_the_extra(monkeypatch: pytest.MonkeyPatch, tiny_gguf: Path) -> None:
    import sys

    from tourney.models.gguf_backend import GGUFBackend

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` raise ImportError
    with pytest.raises(BackendError, match=r"pip install 'tourney\[llamacpp\]'"):
        GGUFBackend(ModelSpec(raw=f"gguf:{tiny_gguf}", kind="gguf", target=str(tiny_gguf)))


@needs_llama
def test_backend_options_are_checked(tiny_gguf: Path) -> None:
    """Ours against the signature, llama.cpp's own against Llama's: a typo is one line listing
    the valid names, not a TypeError from inside llama-cpp-python."""
    from tourney.errors import ConfigError
    from tourney.models.registry import load_backend

    with pytest.raises(ConfigError, match=r"option 'n_ctx': Input should be greater than or equal to 1"):
        load_backend(f"gguf:{tiny_gguf}", n_ctx=0)
    with pytest.raises(ConfigError, match=r"unknown option 'n_gpu_layer' \(neither ours nor llama_cpp.Llama's\)"
                                          r".*n_gpu_layers"):
        load_backend(f"gguf:{tiny_gguf}", n_gpu_layer=0)
    load_backend(f"gguf:{tiny_gguf}", n_ctx=64, n_threads=1, n_batch=32).close()  # a real Llama option passes
