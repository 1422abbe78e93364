"""routers.features.signals on hand-made samples."""
from __future__ import annotations

import math

import pytest

from tourney.harness.types import SampleResult
from tourney.routers.features.signals import (
    FEATURE_NAMES, SIGNALS, compute_signals, oriented, question_features,
)


def row(sample: int = 0, *, output: str = "x", prediction: str | None = "18",
        token_logprobs: list[float] | None = None, completion_tokens: int = 3,
        error: str | None = None, question: str = "q") -> SampleResult:
    return SampleResult(
        id="q1", question=question, type="arith", sample=sample, output=output,
        prediction=prediction, gold="18", correct=prediction == "18", latency_s=1.0, ttft_s=None,
        prompt_tokens=5, completion_tokens=completion_tokens, error=error,
        token_logprobs=token_logprobs,
    )


def test_logprob_signals_by_hand():
    rows = [row(1, token_logprobs=[-9.0]), row(0, token_logprobs=[-0.1, -0.5, -0.3])]  # sample 0 counts
    got = compute_signals(rows, ["mean_logprob", "min_logprob", "entropy_proxy"])
    assert got == pytest.approx({"mean_logprob": -0.3, "min_logprob": -0.5, "entropy_proxy": 0.3})


def test_every_logprob_signal_is_none_without_logprobs():
    for lp in (None, []):
        rows = [row(0, output="so #### 18", token_logprobs=lp)]
        names = ["mean_logprob", "min_logprob", "answer_logprob_mean", "answer_logprob_min", "entropy_proxy"]
        assert compute_signals(rows, names) == dict.fromkeys(names)


def test_answer_logprobs_take_the_span_after_the_last_marker():
    text = "The answer is 3.\nSo 3 + 4 = 7.\n#### 7\nmore"
    lp = [-i / 100 for i in range(len(text))]  # one token per character: the mapping is exact
    start, end = text.index("#### 7") + 5, text.index("\nmore")
    got = compute_signals([row(output=text, token_logprobs=lp)], ["answer_logprob_mean", "answer_logprob_min"])
    assert got["answer_logprob_mean"] == pytest.approx(sum(lp[start:end]) / (end - start))
    assert got["answer_logprob_min"] == pytest.approx(lp[end - 1])
    # Half as many tokens as characters: positions scale by 1/2, and the window is never empty.
    half = lp[: len(text) // 2]
    got = compute_signals([row(output=text, token_logprobs=half)], ["answer_logprob_min"])
    assert got["answer_logprob_min"] == pytest.approx(min(half[start // 2: math.ceil(end / 2)]))


def test_answer_logprobs_none_without_a_marker_or_answer():
    for text in ("I think 7", "the answer is   "):
        assert SIGNALS["answer_logprob_mean"]([row(output=text, token_logprobs=[-0.1] * 5)], None) is None
    boxed = "so \\boxed{42}"
    assert SIGNALS["answer_logprob_min"]([row(output=boxed, token_logprobs=[-0.5] * len(boxed))], None) == -0.5


def test_self_consistency_and_agreement_entropy_by_hand():
    rows = [row(0, prediction="18"), row(1, prediction="18"), row(2, prediction="20"),
            row(3, prediction=None)]
    got = compute_signals(rows, ["self_consistency", "answer_agreement_entropy"])
    assert got["self_consistency"] == 0.5  # 2 of 4 say 18
    # answers 18, 18, 20, none: -(1/2 ln 1/2 + 2 * 1/4 ln 1/4) = 1.5 ln 2
    assert got["answer_agreement_entropy"] == pytest.approx(1.5 * math.log(2))
    # an errored sample votes "no answer" whatever its prediction field says
    rows = [row(0, prediction="7"), row(1, prediction="7", error="timeout"), row(2, prediction="7")]
    assert compute_signals(rows, ["self_consistency"])["self_consistency"] == pytest.approx(2 / 3)
    all_agree = [row(i, prediction="5") for i in range(3)]
    assert compute_signals(all_agree, ["answer_agreement_entropy"])["answer_agreement_entropy"] == 0.0
    assert compute_signals([row(0), row(1, prediction=None)], ["self_consistency"])["self_consistency"] == 0.5
    assert compute_signals([row(0, prediction=None), row(1, prediction=None)],
                           ["self_consistency"])["self_consistency"] == 0.0


def test_agreement_signals_need_two_samples():
    got = compute_signals([row(0)], ["self_consistency", "answer_agreement_entropy"])
    assert got == {"self_consistency": None, "answer_agreement_entropy": None}


def test_length():
    assert SIGNALS["length"]([row(completion_tokens=12)], None) == 12.0
    assert SIGNALS["length"]([row(completion_tokens=0, output="abcde")], None) == 5.0
    assert SIGNALS["length"]([row(error="refused")], None) is None


def test_multiple_choice_signals():
    logliks = [math.log(0.2), math.log(0.5), math.log(0.3)]
    got = compute_signals([row()], ["mc_probability", "mc_margin"], choice_logliks=logliks)
    assert got == pytest.approx({"mc_probability": 0.5, "mc_margin": 0.2})
    # unnormalised log-likelihoods (summed over a choice's tokens) give the same softmax
    shifted = [x - 40.0 for x in logliks]
    assert compute_signals([row()], ["mc_probability"], choice_logliks=shifted)["mc_probability"] == pytest.approx(0.5)
    assert compute_signals([row()], ["mc_probability", "mc_margin"]) == {"mc_probability": None, "mc_margin": None}
    assert SIGNALS["mc_margin"]([row()], [-1.0]) == 1.0


def test_question_features():
    f = question_features("Tom has 3 apples and buys 5 more. How many in total?")
    assert f == {"question_numbers": 2.0, "question_words": 12.0, "question_op_words": 2.0}
    got = compute_signals([row(question="Each of 1,200 cats")], ["question_numbers", "question_op_words"])
    assert got == {"question_numbers": 1.0, "question_op_words": 1.0}


def test_unknown_names_and_orientation():
    with pytest.raises(ValueError, match="unknown signal"):
        compute_signals([row()], ["vibes"])
    with pytest.raises(ValueError, match="at least one sample"):
        compute_signals([], ["length"])
    assert oriented("length", 10.0) == -10.0 and oriented("mean_logprob", -0.2) == -0.2
    assert oriented("mc_margin", None) is None
    assert set(SIGNALS) < set(FEATURE_NAMES)


def test_answer_agreement_reads_the_first_answer_not_the_majority():
    # first says 18; the other four: 18, 20, 20, 20 -> 1 of 4 agree, though the majority has 3/5
    rows = [row(0), row(1), row(2, prediction="20"), row(3, prediction="20"), row(4, prediction="20")]
    got = compute_signals(rows, ["answer_agreement", "self_consistency"])
    assert got == pytest.approx({"answer_agreement": 0.25, "self_consistency": 0.6})
    assert compute_signals([row(0), row(1)], ["answer_agreement"])["answer_agreement"] == 1.0
    # a failed or unparsed first sample has no answer to agree with; a failed other one disagrees
    assert compute_signals([row(0, prediction=None), row(1, prediction=None)], ["answer_agreement"]) == {"answer_agreement": 0.0}
    assert compute_signals([row(0), row(1, error="timeout")], ["answer_agreement"]) == {"answer_agreement": 0.0}
    assert compute_signals([row(0)], ["answer_agreement"]) == {"answer_agreement": None}


def test_mean_length_over_the_samples_that_did_not_fail():
    rows = [row(0, completion_tokens=4), row(1, completion_tokens=8), row(2, completion_tokens=99, error="x")]
    assert compute_signals(rows, ["mean_length"]) == {"mean_length": 6.0}
    assert compute_signals([row(0)], ["mean_length"]) == {"mean_length": None}
    assert oriented("mean_length", 6.0) == -6.0 and oriented("answer_agreement", 0.5) == 0.5


@pytest.mark.parametrize("text, answer", [
    # a base model that runs on writes further "####" lines: the grader scores the first
    ("So 3 + 4 = 7.\n#### 7\nQuestion: and 5 + 6?\n#### 11", "7"),
    # a markdown heading is not an answer: the first "#### N" after it is
    ("#### Step 1\n2 * 3 = 6\n#### 6\n#### 60", "6"),
    # inside the thinking nothing counts
    ("<think>maybe\n#### 5</think>\nIt is 8.\n#### 8\n#### 9", "8"),
])
def test_answer_logprobs_read_the_answer_the_grader_scores(text, answer):
    from tourney.harness.scoring import extract_answer, hashes_answer_span

    assert extract_answer(text) == answer
    start, end = hashes_answer_span(text)
    assert text[start:end] == answer
    # one token per character, the grader's answer far more likely than anything else
    lp = [-0.01 if start <= i < end else -5.0 for i in range(len(text))]
    got = compute_signals([row(output=text, token_logprobs=lp)], ["answer_logprob_mean", "answer_logprob_min"])
    assert got == {"answer_logprob_mean": pytest.approx(-0.01), "answer_logprob_min": pytest.approx(-0.01)}


def test_answer_logprobs_without_an_accepted_hashes_line_take_the_last_marker():
    text = "#### Step 1\nthe answer is 4\nno, the answer is 5"
    from tourney.harness.scoring import extract_answer, hashes_answer_span

    assert hashes_answer_span(text) is None and extract_answer(text) == "5"
    start = text.rindex("is 5") + 3
    lp = [-0.01 if i >= start else -5.0 for i in range(len(text))]
    assert SIGNALS["answer_logprob_min"]([row(output=text, token_logprobs=lp)], None) == pytest.approx(-0.01)


def test_option_or_token_probability_reads_the_options_where_there_are_any():
    import math

    rows = [row(0, token_logprobs=[-0.1, -2.0])]
    with_options = compute_signals(rows, ["option_or_token_probability", "mc_probability"],
                                   choice_logliks=[math.log(0.7), math.log(0.2), math.log(0.1)])
    assert with_options["option_or_token_probability"] == pytest.approx(with_options["mc_probability"])
    assert with_options["option_or_token_probability"] == pytest.approx(0.7)
    open_question = compute_signals(rows, ["option_or_token_probability"])
    assert open_question["option_or_token_probability"] == pytest.approx(math.exp(-2.0))  # the weakest token
    assert compute_signals([row(0)], ["option_or_token_probability"]) == {"option_or_token_probability": None}
