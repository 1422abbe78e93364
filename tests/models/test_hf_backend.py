
import pytest

from tourney.models.registry import load_backend
from tourney.models.types import BackendError, GenConfig

PROMPTS = ["Question: Ava has 12 coins. Ava finds 3 more coins. How many coins does Ava have now?\nAnswer:",
           "Question: Ben has 7 pens.\nAnswer:",
           "Question: Mia has 45 shells. Mia loses 9 shells. Mia sells 2 shells. Mia finds 30 more shells. How many?\nAnswer:"]


@pytest.fixture(scope="module")
def backend(tiny_checkpoint):
    return load_backend(f"hf:{tiny_checkpoint}", batch_size=3)


def test_batched_greedy_equals_one_by_one(backend, tiny_checkpoint):
    cfg = GenConfig(max_tokens=12)
    batched = [g[0].text for g in backend.generate(PROMPTS, cfg)]
    single = load_backend(f"hf:{tiny_checkpoint}", batch_size=1)
    alone = [single.generate([p], cfg)[0][0].text for p in PROMPTS]
    assert batched == alone


def test_generation_fields(backend):
    gens = backend.generate(PROMPTS[:2], GenConfig(max_tokens=8, logprobs=3))
    for [g] in gens:
        assert g.completion_tokens <= 8 and g.prompt_tokens > 5
        assert g.finish_reason in ("stop", "length")
        assert g.latency_s > 0 and 0 < g.ttft_s <= g.latency_s
        assert len(g.token_logprobs) == g.completion_tokens
        assert all(lp <= 0 for lp in g.token_logprobs)
        assert len(g.top_logprobs) == g.completion_tokens and all(len(t) <= 3 for t in g.top_logprobs)
        # greedy picks the most likely token, so its logprob is the top-1 value
        for lp, top in zip(g.token_logprobs, g.top_logprobs):
            assert lp == pytest.approx(max(top.values()), abs=1e-5)


def test_score_choices_matches_generation_logprobs(backend):
    [[g]] = backend.generate(PROMPTS[:1], GenConfig(max_tokens=6, logprobs=0))
    ids = backend.tokenizer(g.text, add_special_tokens=False).input_ids
    if len(ids) != g.completion_tokens:
        pytest.skip("generated text does not re-tokenize to the same tokens")
    [[score, other]] = backend.score_choices(PROMPTS[:1], [[g.text, g.text + " 99"]])
    assert score == pytest.approx(sum(g.token_logprobs), abs=1e-3)
    assert other < score


def test_sampling_is_seeded_and_n_samples(backend):
    cfg = GenConfig(max_tokens=8, temperature=1.0, n=3, seed=7)
    a = backend.generate(PROMPTS[:2], cfg)
    b = backend.generate(PROMPTS[:2], cfg)
    assert [len(s) for s in a] == [3, 3]
    assert [[g.text for g in s] for s in a] == [[g.text for g in s] for s in b]


def test_chat_prompt_uses_the_template(backend):
    [[g]] = backend.generate([[{"role": "user", "content": "Ben has 7 pens."}]], GenConfig(max_tokens=4))
    assert g.prompt_tokens > 0


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(BackendError, match="no checkpoint folder"):
        load_backend(f"hf:{tmp_path / 'nope'}")


def test_stop_string_on_the_shipped_student(mini_student):
    backend = load_backend(f"hf:{mini_student}", batch_size=2)
    [[free], [cut]] = [backend.generate(PROMPTS[:1], GenConfig(max_tokens=40, stop=s))[0] for s in ((), ("\n####",))]
    assert "\n####" in free.text
    assert cut.text == free.text[: free.text.find("\n####")] and cut.finish_reason == "stop"
