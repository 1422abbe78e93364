
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


# -- per-sequence timing, per-step logprobs, seeding ---------------------------------------------

def test_per_sequence_latency_inside_one_batch_follows_its_length(mini_teacher):
    """One batch of a one-step and a long-chain question: each row is timed at the step that ended
    it (a continuously batching server's view), so the longer answer is the slower one; the batch's
    wall time stays available as batch_latency_s."""
    prompts = ["Question: Sam has 22 eggs. Sam sells 7 eggs. How many eggs does Sam have now?\nAnswer:",
               "Question: Ava has 12 coins. Ava finds 3 more coins. Ava loses 5 coins. The number of coins "
               "doubles. How many coins does Ava have now?\nAnswer:",
               "Question: Eli has 60 cards. Eli loses 1 cards. How many cards does Eli have now?\nAnswer:"]
    backend = load_backend(f"hf:{mini_teacher}", batch_size=3)
    gens = [g for [g] in backend.generate(prompts, GenConfig(max_tokens=80))]
    assert all(g.finish_reason == "stop" for g in gens)
    lengths = [g.completion_tokens for g in gens]
    assert len(set(lengths)) >= 2, lengths
    wall = gens[0].batch_latency_s
    assert all(g.batch_latency_s == wall for g in gens)
    assert len({g.ttft_s for g in gens}) == 1  # prefill is shared: every row's first token comes together
    for a in gens:
        assert 0 < a.ttft_s <= a.latency_s <= wall
        for b in gens:
            if a.completion_tokens < b.completion_tokens:
                assert a.latency_s < b.latency_s
    assert max(g.latency_s for g in gens) < wall or max(lengths) == 80


def test_step_logprobs_equal_the_stacked_logits(backend):
    """The per-step gathering gives what log-softmax over generate's stacked raw logits gives."""
    import torch

    cfg = GenConfig(max_tokens=10, logprobs=4)
    gens = [g for [g] in backend.generate(PROMPTS, cfg)]
    enc = backend.tokenizer(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        res = backend.model.generate(**enc, max_new_tokens=10, do_sample=False, return_dict_in_generate=True,
                                     output_logits=True, pad_token_id=backend.tokenizer.pad_token_id,
                                     temperature=None, top_p=None, top_k=None)
    lp = torch.stack(res.logits, 1).float().log_softmax(-1)
    new = res.sequences[:, enc["input_ids"].shape[1]:]
    for row, g in enumerate(gens):
        want = [float(lp[row, i, t]) for i, t in enumerate(new[row, : g.completion_tokens].tolist())]
        assert g.token_logprobs == pytest.approx(want, abs=1e-5)
        top = lp[row, : g.completion_tokens].topk(4, -1)
        for got, vals in zip(g.top_logprobs, top.values.tolist()):
            # keyed by decoded text, so two ids that decode alike share one entry
            assert max(got.values()) == pytest.approx(vals[0], abs=1e-5)
            assert all(any(abs(v - w) < 1e-5 for w in vals) for v in got.values())


def test_sampled_batches_draw_different_streams_reproducibly(tiny_checkpoint):
    import torch

    one = load_backend(f"hf:{tiny_checkpoint}", batch_size=1)
    cfg = GenConfig(max_tokens=12, temperature=1.0, seed=3)
    same = [PROMPTS[1]] * 4  # four batches of one identical prompt
    before = torch.random.get_rng_state()
    first = [g.text for [g] in one.generate(same, cfg)]
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's RNG is left alone
    assert len(set(first)) > 1  # each batch has its own stream (one seed for all replayed one sample)
    assert [g.text for [g] in one.generate(same, cfg)] == first  # and the run repeats exactly
    other = [g.text for [g] in one.generate(same, GenConfig(max_tokens=12, temperature=1.0, seed=4))]
    assert other != first
