"""The one majority rule, used by reports, the router and rejection sampling alike."""
import math

from tourney.harness.metrics import majority_correct
from tourney.harness.types import SampleResult
from tourney.harness.votes import Vote, answer_counts, majority_vote, mean_logprob
from tourney.routers.features.signals import self_consistency
from tourney.trainers.cot import CoTSample
from tourney.trainers.rejection import select


def row(sample, prediction, gold="5", error=None):
    return SampleResult(id="q", question="?", type="t", sample=sample, output="" if prediction is None else f"#### {prediction}",
                        prediction=prediction, gold=gold, correct=prediction == gold and error is None,
                        latency_s=0.0, ttft_s=None, prompt_tokens=1, completion_tokens=1, error=error)


def test_no_answer_never_wins_but_counts_in_the_share():
    v = majority_vote([None, None, "5", "5", None])
    assert v == Vote(answer="5", votes=2, total=5, first=2)
    assert v.share == 0.4


def test_tie_goes_to_the_first_answer_and_no_answer_has_no_winner():
    assert majority_vote(["7", "5", "5", "7"]).answer == "7"
    assert majority_vote([None, None]) == Vote(answer=None, votes=0, total=2, first=None)
    assert majority_vote([None, None]).share == 0.0
    assert answer_counts([None, "5", None]) == {None: 2, "5": 1}


def test_the_three_call_sites_agree_on_the_issue_example():
    # [None, None, '5', '5', error]: every vote in the project picks '5' with share 0.4.
    rows = [row(0, None), row(1, None), row(2, "5"), row(3, "5"), row(4, None, error="timeout")]
    assert majority_correct(rows) is True
    assert self_consistency(rows) == 0.4
    cot = [CoTSample(id="q", question="?", type="t", gold=None, output=r.output, answer_text=r.output,
                     prediction=r.prediction, correct=None, prompt_tokens=1, completion_tokens=1,
                     mean_logprob=None, sample=r.sample, error=r.error)
           for r in rows]
    selection = select({"q": cot}, verifier="majority")
    assert selection.stats.pass_rates[0].answer == "5"


def test_all_unanswered_is_not_correct():
    assert majority_correct([row(0, None), row(1, None)]) is False


def test_mean_logprob_keeps_minus_infinity_as_least_confident():
    assert mean_logprob(None) is None and mean_logprob([]) is None
    assert mean_logprob([-1.0, -3.0]) == -2.0
    assert mean_logprob([-1.0, -math.inf]) == -math.inf
    assert mean_logprob([-1.0, math.nan, -3.0]) == -2.0
