"""Teacher top-k logits from a server with vLLM's shape (tests/vllm_shaped_server.py on 127.0.0.1):
the same store as the in-process teacher, resumable, concurrent, and KD that trains alike.
Response parsing is tested on hand-made bodies (no server)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.trainers.test_sft import FAST, write_sft
from tourney.errors import BackendError, ConfigError
from tourney.trainers.served_logits import ServedTeacherConfig, answer_positions, parse_prompt_logprobs

ROOT = Path(__file__).resolve().parents[2]


def _body(entries) -> dict:
    return {"choices": [{"index": 0, "text": "", "prompt_logprobs": entries}]}


def _entry(pairs: dict[int, float]) -> dict:
    return {str(i): {"logprob": v, "rank": r, "decoded_token": "x"}
            for r, (i, v) in enumerate(sorted(pairs.items(), key=lambda kv: -kv[1]), start=1)}


def test_parse_keeps_the_k_best_of_each_answer_position_one_entry_ahead():
    ids, start = [5, 6, 7, 8], 2  # answer tokens 7, 8: stored positions 1, 2 (entries 2, 3)
    assert list(answer_positions((ids, start))) == [1, 2]
    entries = [None, _entry({6: -0.1, 1: -2.0}), _entry({7: -3.0, 2: -0.5, 3: -1.5}), _entry({8: -0.2, 4: -4.0})]
    got = parse_prompt_logprobs(_body(entries), (ids, start), k=2, vocab_size=10, where="t")
    assert got.positions.tolist() == [1, 2]
    assert got.ids.tolist() == [[2, 3], [8, 4]]  # the prompt's own token 7 was third at entry 2: dropped
    assert got.logprobs.dtype == torch.float16
    torch.testing.assert_close(got.logprobs.float(), torch.tensor([[-0.5, -1.5], [-0.2, -4.0]]), atol=1e-3, rtol=0)


@pytest.mark.parametrize("entries,match", [
    ([None, _entry({6: -0.1})], "2 entries for a 3-token"),
    ([None, _entry({6: -0.1}), _entry({1: -0.1, 2: -0.2})], "lacks the prompt's own token"),
    ([None, _entry({6: -0.1}), _entry({7: -0.1})], "fewer than k=2"),
    ([None, _entry({6: -0.1}), _entry({7: -0.1, 99: -0.2})], "outside the student's vocabulary"),
    ([None, _entry({6: -0.1}), {"7": {"logprob": float("nan")}, "1": {"logprob": -1.0}}], "logprob"),
    ([None, _entry({6: -0.1}), {"7": {"logprob": 3.0}, "1": {"logprob": -1.0}}], "logprob"),
    (None, "no prompt_logprobs"),
])
def test_parse_refuses_what_a_vllm_server_would_not_send(entries, match):
    with pytest.raises(BackendError, match=match):
        parse_prompt_logprobs(_body(entries), ([5, 6, 7], 2), k=2, vocab_size=10, where="t")
    with pytest.raises(BackendError, match="choices"):
        parse_prompt_logprobs({"choices": []}, ([5, 6, 7], 2), k=2, vocab_size=10, where="t")


def test_spec_and_config_checks():
    cfg = ServedTeacherConfig.from_spec("openai:Qwen/Qwen3-235B-A22B@http://teacher:8000/v1", k=64)
    assert (cfg.model, cfg.base_url, cfg.root_url) == ("Qwen/Qwen3-235B-A22B", "http://teacher:8000/v1",
                                                       "http://teacher:8000")
    with pytest.raises(ConfigError, match="openai:MODEL@URL"):
        ServedTeacherConfig.from_spec("hf:/some/teacher", k=8)
    with pytest.raises(ConfigError, match="concurrency"):
        ServedTeacherConfig(model="m", base_url="http://h:1/v1", k=8, concurrency=0)


# -- against the server ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def teacher(tiny_checkpoint, tmp_path_factory) -> Path:
    """A teacher with the tiny checkpoint's tokenizer, wider and deeper than the student."""
    from tourney.models.mini.arch import MiniArch, build_model

    out = tmp_path_factory.mktemp("served-teacher")
    tok = AutoTokenizer.from_pretrained(str(tiny_checkpoint))
    tok.save_pretrained(str(out))
    torch.manual_seed(1)
    build_model(MiniArch(48, 96, 4, 2, 1, 24), vocab_size=len(tok), eos_id=tok.eos_token_id).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def server(teacher):
    from tests.vllm_shaped_server import vllm_shaped_server

    with vllm_shaped_server(teacher, alias="mini-teacher", max_logprobs=20, flaky=5) as s:
        yield s


@pytest.fixture(scope="module")
def examples(tiny_checkpoint, tmp_path_factory):
    from tourney.trainers.distill_config import DistillTrainConfig
    from tourney.trainers.sft import load_sft_data

    data = write_sft(tmp_path_factory.mktemp("served-data") / "sft.jsonl", n=24)
    tok = AutoTokenizer.from_pretrained(str(tiny_checkpoint))
    cfg = DistillTrainConfig(student=str(tiny_checkpoint), data=str(data), out="unused")
    return data, load_sft_data(cfg, tok).examples


def _in_process_store(folder, teacher, examples, k):
    from tourney.trainers.offline_logits import TopKStore, fill_store
    from tourney.trainers.pretrain import make_batch

    model = AutoModelForCausalLM.from_pretrained(str(teacher)).eval()
    store = TopKStore(folder, k=k, vocab_size=model.config.vocab_size, teacher="t")
    fill_store(store, model, [make_batch([e], 0) for e in examples])
    return store


def _served_store(folder, server, k, vocab):
    from tourney.trainers.offline_logits import TopKStore

    return TopKStore(folder, k=k, vocab_size=vocab, teacher=server.alias)


def _rows_equal(a, b, n, atol=2e-3):
    for i in range(n):
        x, y = a.get(i), b.get(i)
        assert torch.equal(x.positions, y.positions)
        assert torch.equal(x.ids, y.ids), i
        torch.testing.assert_close(x.logprobs.float(), y.logprobs.float(), atol=atol, rtol=0)


@pytest.mark.integration
def test_served_store_equals_the_in_process_store(server, teacher, examples, tmp_path):
    from tourney.trainers.served_logits import fill_store_from_server

    _, ex = examples
    ref = _in_process_store(tmp_path / "local", teacher, ex, k=8)
    store = _served_store(tmp_path / "served", server, 8, ref.vocab_size)
    cfg = ServedTeacherConfig(model=server.alias, base_url=server.base_url, k=8, concurrency=4, backoff_s=0.01)
    before = server.stats()["requests"]
    assert fill_store_from_server(store, ex, cfg, chunk_size=5) == len(ex)
    _rows_equal(store, ref, len(ex))
    stats = server.stats()
    assert stats["requests"] - before > len(ex)  # every 5th request was refused with 503 and retried
    assert 2 <= stats["max_in_flight"] <= 4  # concurrent, and bounded by the client
    assert fill_store_from_server(store, ex, cfg) == 0  # complete: nothing asked again


@pytest.mark.integration
def test_killed_fill_resumes_to_the_same_store(server, teacher, examples, tmp_path):
    data, ex = examples
    folder = tmp_path / "store"
    script = f"""
import sys, torch
sys.path.insert(0, {str(ROOT)!r})
from transformers import AutoTokenizer
from tourney.trainers.distill_config import DistillTrainConfig
from tourney.trainers.sft import load_sft_data
from tourney.trainers.offline_logits import TopKStore
from tourney.trainers.served_logits import ServedTeacherConfig, fill_store_from_server
tok = AutoTokenizer.from_pretrained({str(teacher)!r})
ex = load_sft_data(DistillTrainConfig(student={str(teacher)!r}, data={str(data)!r}, out="unused"), tok).examples
store = TopKStore({str(folder)!r}, k=8, vocab_size=len(tok), teacher={server.alias!r})
cfg = ServedTeacherConfig(model={server.alias!r}, base_url={server.base_url!r}, k=8, concurrency=2, backoff_s=0.01)
fill_store_from_server(store, ex, cfg, chunk_size=3)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list(folder.glob("shard-*.safetensors"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no cleanup of any kind
    proc.wait()
    from tourney.trainers.offline_logits import TopKStore
    from tourney.trainers.served_logits import fill_store_from_server

    partial = TopKStore.open(folder)
    had = partial.num_examples
    assert 0 < had < len(ex), proc.stderr.read().decode()[-2000:]
    cfg = ServedTeacherConfig(model=server.alias, base_url=server.base_url, k=8, concurrency=2, backoff_s=0.01)
    assert fill_store_from_server(partial, ex, cfg, chunk_size=3) == len(ex) - had
    whole = _served_store(tmp_path / "whole", server, 8, partial.vocab_size)
    fill_store_from_server(whole, ex, cfg, chunk_size=3)
    again = TopKStore.open(folder)
    assert again.num_examples == len(ex)
    _rows_equal(again, whole, len(ex), atol=0)
    names = sorted(p.name for p in folder.glob("shard-*"))
    assert names == sorted(p.name for p in (tmp_path / "whole").glob("shard-*"))  # same shard boundaries too
    from safetensors import safe_open

    for name in names:  # equal tensors and metadata (the header's key order is not fixed across processes)
        with safe_open(str(folder / name), "pt") as a, safe_open(str(tmp_path / "whole" / name), "pt") as b:
            assert a.metadata() == b.metadata() and sorted(a.keys()) == sorted(b.keys())
            assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())


@pytest.mark.integration
def test_errors_from_the_server_are_one_clear_line(server, examples, tmp_path):
    from tourney.trainers.served_logits import fill_store_from_server

    _, ex = examples
    store = _served_store(tmp_path / "s", server, 32, 300)
    cfg = ServedTeacherConfig(model=server.alias, base_url=server.base_url, k=32, backoff_s=0.01)
    with pytest.raises(BackendError, match=r"HTTP 400.*greater than max allowed: 20"):
        fill_store_from_server(store, ex, cfg)
    wrong = ServedTeacherConfig(model="other", base_url=server.base_url, k=8, backoff_s=0.01)
    with pytest.raises(BackendError, match="HTTP 404"):
        fill_store_from_server(_served_store(tmp_path / "w", server, 8, 300), ex, wrong)
    gone = ServedTeacherConfig(model="m", base_url="http://127.0.0.1:9/v1", k=8, max_retries=1, backoff_s=0.01)
    with pytest.raises(BackendError, match="failed after 2 attempts"):
        fill_store_from_server(_served_store(tmp_path / "g", server, 8, 300), ex, gone)


@pytest.mark.integration
def test_store_records_the_server_and_refuses_another_tokenizer(server, tiny_checkpoint, examples, tmp_path):
    from tourney.harness.synthetic import SynthConfig, generate
    from tourney.models.mini.tokenizer import train_tokenizer
    from tourney.trainers.distill_config import DistillTrainConfig
    from tourney.trainers.kd_trainer import prepare_store
    from tourney.trainers.served_logits import check_server_tokenizer, tokenizer_hash

    data, ex = examples
    tok = AutoTokenizer.from_pretrained(str(tiny_checkpoint))
    cfg = DistillTrainConfig(student=str(tiny_checkpoint), data=str(data), out=str(tmp_path / "run"), method="kd",
                             teacher=server.spec(), topk=8, teacher_concurrency=3)
    store = prepare_store(cfg, ex, teacher_path=None, pad_id=0, device="cpu", source={"d": 1}, say=lambda _m: None,
                          tokenizer=tok, vocab_size=len(tok))
    meta = json.loads((cfg.store_dir() / "meta.json").read_text())
    assert meta["teacher"] == "mini-teacher" and meta["tokenizer_hash"] == tokenizer_hash(tok)
    assert meta["source"] == {"server": server.base_url, "model": "mini-teacher", "tokenizer_check": "match"}
    assert store.num_examples == len(ex)

    other = train_tokenizer([r["solution"] for r in generate(SynthConfig(n=60, seed=9))], tmp_path / "tok",
                            vocab_size=120)
    with pytest.raises(ConfigError, match="student's tokenizer"):
        prepare_store(cfg, ex, teacher_path=None, pad_id=0, device="cpu", source={"d": 1}, say=lambda _m: None,
                      tokenizer=other, vocab_size=len(other))
    with pytest.raises(ConfigError, match="tokenizes differently"):
        check_server_tokenizer(ServedTeacherConfig(model=server.alias, base_url=server.base_url, k=8), other)


@pytest.mark.integration
def test_store_only_fills_the_store_and_trains_nothing(server, tiny_checkpoint, examples, tmp_path):
    from tourney.trainers.distill import train
    from tourney.trainers.distill_config import DistillTrainConfig
    from tourney.trainers.offline_logits import TopKStore

    data, ex = examples
    cfg = DistillTrainConfig(student=str(tiny_checkpoint), teacher=server.spec(), data=str(data),
                             out=str(tmp_path / "run"), method="kd", topk=4)
    said: list[str] = []
    result = train(cfg, say=said.append, store_only=True)
    assert result.checkpoints == [] and result.final == ""
    assert TopKStore.open(cfg.store_dir()).num_examples == len(ex)
    assert not list((tmp_path / "run").glob("checkpoint-*"))
    assert any("stopping before training (--store-only)" in s for s in said)


@pytest.mark.integration
@pytest.mark.slow
def test_kd_from_the_served_store_trains_like_the_in_process_teacher(server, tiny_checkpoint, teacher, examples,
                                                                      tmp_path):
    """Same data, seed and k: the per-step losses agree to 1e-4 and the trained weights to 1e-4
    (the two stores differ only by fp16 rounding of a few log-probabilities)."""
    from safetensors.torch import load_file

    from tourney.trainers.distill import train
    from tourney.trainers.distill_config import DistillTrainConfig

    data, _ = examples
    runs = {}
    for name, t in (("local", str(teacher)), ("served", server.spec())):
        cfg = DistillTrainConfig(student=str(tiny_checkpoint), teacher=t, data=str(data), out=str(tmp_path / name),
                                 method="kd", topk=8, alpha=0.5, kd_temperature=1.0, kd_chunk_size=16,
                                 **{**FAST, "batch_size": 6})
        runs[name] = train(cfg, say=lambda _m: None)
    logs = {}
    for name, r in runs.items():
        state = json.loads((Path(r.checkpoints[-1]) / "trainer_state.json").read_text())
        logs[name] = [h["loss"] for h in state["log_history"] if "loss" in h]
    assert len(logs["local"]) == len(logs["served"]) == 8
    assert max(abs(a - b) for a, b in zip(logs["local"], logs["served"])) < 1e-4
    wa, wb = (load_file(str(Path(r.final) / "model.safetensors")) for r in runs.values())
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-4
