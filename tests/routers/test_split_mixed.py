"""`route calibrate --split` works wherever `route calibrate` does: on a mixed set (multiple choice
with option scores, open questions with token logprobs) whose mixed-only signal is offered on the
whole set, discrete on the smaller calibration half, and blank on one side of the split."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tourney.routers.fitting.fit import CalibrateConfig, calibrate_runs
from tourney.routers.evaluation.rundata import routing_data
from tourney.routers.fitting.select import candidates
from tourney.routers.features.signals import MIXED_SIGNALS

from tests.routers.fakes import write_run


def mixed_runs(tmp_path, n_mc: int = 24, n_open: int = 36):
    rng = np.random.default_rng(3)
    s_rows, t_rows = [], []
    for i in range(n_mc + n_open):
        mc = i < n_mc
        right = bool(rng.random() < 0.5)
        row = {"id": f"q{i:03d}", "type": "mc" if mc else "open", "question": f"question {i} about {'ABC'[i % 3]}?",
               "output": "The answer is (B)." if mc else f"#### {i}", "prediction": "B" if mc else str(i),
               "gold": "B" if right else "C", "correct": right, "completion_tokens": 5 + i % 7}
        if mc:  # a handful of distinct option scores: a discrete signal
            row["choice_logliks"] = [-1.0, -0.2 - 0.1 * (i % 4), -3.0]
        else:
            row["token_logprobs"] = [-0.1 * (i % 5), -0.2]
        s_rows.append(row)
        t_rows.append({"id": row["id"], "type": row["type"], "question": row["question"], "output": "x",
                       "prediction": "B", "gold": "B", "correct": bool(rng.random() < 0.8)})
    s = write_run(tmp_path / "s", "student", s_rows, logprobs=0)
    t = write_run(tmp_path / "t", "teacher", t_rows)
    return s, t


@pytest.mark.parametrize("split", [None, 0.5, 0.6])
def test_calibrate_with_and_without_split_on_a_mixed_set(tmp_path, split):
    s, t = mixed_runs(tmp_path)
    cfg = CalibrateConfig(student=str(s), teacher=str(t), target="share=0.5", out=str(tmp_path / "r.json"),
                          split=split, seed=1)
    bundle = calibrate_runs(cfg)
    assert bundle.router.dev.n > 0
    assert (bundle.router.heldout is None) == (split is None)


def test_split_where_the_option_scores_are_blank_on_one_side(tmp_path):
    # the multiple-choice questions are few: with seed 0 a 0.9 split leaves some halves without them
    s, t = mixed_runs(tmp_path, n_mc=3, n_open=57)
    for seed in range(4):
        cfg = CalibrateConfig(student=str(s), teacher=str(t), target="share=0.5",
                              out=str(tmp_path / f"r{seed}.json"), split=0.5, seed=seed)
        assert calibrate_runs(cfg).router.heldout is not None


def test_no_candidate_breaks_ties_of_a_signal_no_regression_reads(tmp_path):
    s, t = mixed_runs(tmp_path)
    data = routing_data(s, t)
    assert set(MIXED_SIGNALS) & set(data.available_signals())
    for c in candidates(data):
        assert c.primary is None or c.primary in data.regression_signals()


@pytest.mark.parametrize("target, warned", [("share=0.2", True), ("share=0.8", False)])
def test_a_share_the_router_cannot_reach_is_said(tmp_path, target, warned):
    """The option score is blank on the 36 open questions (60%): one threshold escalates all of
    them, so the shares within reach are 0 and 0.6 up; 0.2 is out of reach and calibrate says so."""
    from tourney.routers.fitting.fit import describe

    s, t = mixed_runs(tmp_path)
    cfg = CalibrateConfig(student=str(s), teacher=str(t), target=target, signals=("mc_probability",),
                          out=str(tmp_path / "r.json"))
    bundle = calibrate_runs(cfg)
    share = bundle.router.dev.teacher_share
    assert (share == 0.0 or share >= 0.6) and (abs(share - float(target[6:])) > 0.05) == warned
    assert ("warning: the teacher share nearest" in describe(bundle)) == warned


def test_unread_answers_count_as_escalated_at_every_threshold(tmp_path):
    """The cascade escalates an answer it cannot read whatever the threshold, -inf included, so
    calibration counts them so too: at share=0 the dev share is the unread share, not 0."""
    s, t = mixed_runs(tmp_path)
    rows = [json.loads(x) for x in (s / "results.jsonl").read_text().splitlines()]
    for r in rows[:6]:  # six multiple-choice answers that name no option
        r.update(output="I am not sure.", prediction=None, correct=False)
    (s / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = CalibrateConfig(student=str(s), teacher=str(t), target="share=0", signals=("mc_probability",),
                          out=str(tmp_path / "r.json"))
    router = calibrate_runs(cfg).router
    assert router.threshold == -np.inf and router.dev.teacher_share == pytest.approx(6 / 60)
