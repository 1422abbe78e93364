"""routers.features.prior: a difficulty prior learned from other pairs' runs, read as `prior_accuracy` by a
fitted router, saved inside ROUTER.json, and computed the same way offline and at run time."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tourney.errors import ConfigError
from tourney.routers.policies.calibrate import CalibratedRouter
from tourney.routers.fitting.fit import CalibrateConfig, calibrate_runs, describe
from tourney.routers.features.prior import DifficultyPrior
from tourney.routers.evaluation.rundata import routing_data

from tests.routers.fakes import write_run

TOPICS = ["algebra", "botany", "chess", "dance", "europe", "fungi"]


def runs(tmp_path, name: str, n: int, seed: int):
    """A pair whose student fails the questions about the first three topics (hard ones), and the
    teacher gets most of them; other pairs find the same topics hard."""
    rng = np.random.default_rng(seed)
    s_rows, t_rows = [], []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        hard = i % len(TOPICS) < 3
        q = f"question {i} on {topic} and {TOPICS[(i * 7) % 6]} matters?"
        s_right = bool(rng.random() < (0.2 if hard else 0.8))
        t_right = bool(rng.random() < (0.7 if hard else 0.9))
        s_rows.append({"id": f"q{i}", "question": q, "output": f"#### {i}", "prediction": str(i), "correct": s_right,
                       "completion_tokens": 5 + int(rng.integers(0, 5))})
        t_rows.append({"id": f"q{i}", "question": q, "output": f"#### {i}", "prediction": str(i), "correct": t_right})
    return write_run(tmp_path / f"{name}-s", "s", s_rows), write_run(tmp_path / f"{name}-t", "t", t_rows)


def test_the_prior_learns_difficulty_from_other_runs(tmp_path):
    other = runs(tmp_path, "other", 120, 1)
    prior = DifficultyPrior.fit(other)
    acc = prior.accuracy(["question 500 on algebra and chess matters?", "question 501 on europe and fungi matters?"])
    assert acc[0] < acc[1]
    data = routing_data(*runs(tmp_path, "new", 30, 2)).with_prior(prior)
    assert "prior_accuracy" in data.available_signals()
    assert routing_data(*runs(tmp_path, "new2", 30, 2)).features[0]["prior_accuracy"] is None


def test_calibrate_with_prior_runs_saves_the_prior_and_scores_alike(tmp_path):
    other = runs(tmp_path, "other", 120, 1)
    s, t = runs(tmp_path, "new", 60, 2)
    out = tmp_path / "router.json"
    cfg = CalibrateConfig(student=str(s), teacher=str(t), target="share=0.5", out=str(out),
                          signals=("prior_accuracy", "length"), prior_runs=tuple(map(str, other)))
    bundle = calibrate_runs(cfg)
    assert bundle.data["prior_runs"] == list(map(str, other))
    saved = json.loads(out.read_text())["model"]
    assert "prior" in saved and saved["prior"]["n_rows"] == 240
    router = CalibratedRouter.load(out)
    data = routing_data(s, t)  # no prior filled: the router brings its own
    offline = data.router_confidence(router)
    live = [router.confidence(rows) for rows in data.student_rows]
    assert np.allclose(offline, live)
    with pytest.raises(ConfigError, match="read inside a fitted router"):
        calibrate_runs(cfg.model_copy(update={"signals": ("prior_accuracy",)}))


def test_dev_questions_the_prior_saw_get_out_of_fold_values_and_routing_recalls(tmp_path):
    other = runs(tmp_path, "other", 120, 1)
    prior = DifficultyPrior.fit(other)
    seen = routing_data(*other).texts
    assert set(prior.out_of_fold) == set(seen)  # every question it was fitted on, once
    recalled, dev = prior.accuracy(seen), prior.dev_accuracy(seen)
    y = routing_data(*other).student_correct + routing_data(*other).teacher_correct
    # recalled values sit closer to the question's own outcomes than out-of-fold ones
    assert np.mean(np.abs(recalled - y / 2)) < np.mean(np.abs(dev - y / 2))
    new = ["question 999 on algebra and botany matters?"]
    assert np.array_equal(prior.dev_accuracy(new), prior.accuracy(new))  # unseen: the same either way
    assert np.array_equal(DifficultyPrior.fit(other).dev_accuracy(seen), dev)  # deterministic
    data = routing_data(*other)
    assert np.allclose([f["prior_accuracy"] for f in data.with_prior(prior, dev=True).features], dev)
    assert np.allclose([f["prior_accuracy"] for f in data.with_prior(prior).features], recalled)


def shared_outcome_pairs(tmp_path):
    """Two pairs with the same outcomes on the same 160 questions, drawn per question (not per
    topic): a recalled prior value predicts a question's outcome, a value learnt from other
    questions' wording does not."""
    rng = np.random.default_rng(5)
    n = 160
    qs = [f"item {i} about {TOPICS[i % 6]} {TOPICS[(i * 5) % 6]}?" for i in range(n)]
    s_ok, t_ok = rng.random(n) < 0.4, rng.random(n) < 0.8

    def pair(name):
        rows = lambda ok, lens: [{"id": f"q{i}", "question": q, "output": f"#### {i}", "prediction": str(i),  # noqa: E731
                                  "correct": bool(ok[i]), "completion_tokens": int(lens[i])} for i, q in enumerate(qs)]
        return (write_run(tmp_path / f"{name}-s", "s", rows(s_ok, rng.integers(5, 9, n))),
                write_run(tmp_path / f"{name}-t", "t", rows(t_ok, rng.integers(5, 9, n))))

    return pair("other"), pair("new")


def test_a_split_calibration_scores_its_held_out_questions_as_routing_does(tmp_path):
    """Held-out figures computed from out-of-fold prior values would differ from what routing,
    which recalls, then does."""
    other, (s, t) = shared_outcome_pairs(tmp_path)
    cfg = CalibrateConfig(student=str(s), teacher=str(t), target="share=0.5", out=str(tmp_path / "r.json"),
                          signals=("prior_accuracy", "length"), prior_runs=tuple(map(str, other)), split=0.5)
    bundle = calibrate_runs(cfg)
    router = CalibratedRouter.load(tmp_path / "r.json")
    held = set(bundle.data["heldout_ids"])
    data = routing_data(s, t)
    idx = [i for i, q in enumerate(data.ids) if q in held]
    live = np.array([router.confidence(data.student_rows[i]) for i in idx])
    assert np.allclose(data.router_confidence(router)[idx], live)
    # the held-out figures calibrate reports are those of the scores routing gives (recalled values)
    again = CalibratedRouter.load(tmp_path / "r.json")
    view = data.subset(idx).policy_view(again)
    again.evaluate(view.score, data.student_correct[idx], data.teacher_correct[idx], kept=view.kept, up=view.up,
                   route=view.route)
    assert again.heldout == bundle.router.heldout


def test_prior_covers_seen_trusts_recalled_values_and_new_does_not(tmp_path):
    other, (s, t) = shared_outcome_pairs(tmp_path)
    acc = {}
    for covers in ("new", "seen"):
        cfg = CalibrateConfig(student=str(s), teacher=str(t), target="share=0.5", out=str(tmp_path / f"{covers}.json"),
                              signals=("prior_accuracy", "length"), prior_runs=tuple(map(str, other)), split=0.5,
                              prior_covers=covers)
        bundle = calibrate_runs(cfg)
        assert bundle.data["prior_covers"] == covers
        said = {"new": "dev values out of fold", "seen": "dev values recalled"}[covers]
        assert f"difficulty prior from 2 run(s), read by the router; {said}" in describe(bundle)
        acc[covers] = bundle.router.heldout.accuracy
    # every held-out question is in the prior's runs: the router fitted on recalled values uses
    # what they know; the one fitted as for new questions learnt that the wording says nothing
    assert acc["seen"] > acc["new"] + 0.05


def test_the_words_default_keeps_the_prior_only_where_it_clearly_helps(tmp_path):
    """1,000 questions whose outcomes the other pair shares question by question: recalled prior
    values (--prior-covers seen) carry them and the words router keeps the prior; out-of-fold ones
    (new) carry nothing the words do not, and the two-standard-error test leaves it out."""
    from dataclasses import replace

    from tourney.routers.fitting.policy_select import _words_default
    from tourney.routers.fitting.select import (
        ANSWER_MIN_QUESTIONS, Candidate, GAIN, candidates, out_of_fold, routing_scores,
    )

    rng = np.random.default_rng(11)
    n = ANSWER_MIN_QUESTIONS
    s_ok, t_ok = rng.random(n) < 0.4, rng.random(n) < 0.7
    hedge = rng.random(n) < 0.5

    def pair(name):
        rows = [{"id": f"q{i}", "question": f"item {i} about {TOPICS[i % 6]}?", "type": f"t{i % 3}",
                 "output": "Perhaps (A), or maybe (B)." if hedge[i] else "The answer is (B).", "prediction": "B",
                 "correct": bool(s_ok[i]), "completion_tokens": 9} for i in range(n)]
        t_rows = [{**r, "correct": bool(t_ok[i])} for i, r in enumerate(rows)]
        return write_run(tmp_path / f"{name}-s", "s", rows), write_run(tmp_path / f"{name}-t", "t", t_rows)

    other, new = pair("other"), pair("new")
    prior = DifficultyPrior.fit(other)
    picked = {}
    for covers in ("seen", "new"):
        dev = routing_data(*new).with_prior(prior, dev=covers == "new")
        offered = [c.signals for c in candidates(dev) if c.answer and c.l2 == 10.0]
        assert () in offered and ("prior_accuracy",) in offered  # both words routers, in either mode
        table = []
        for signals in ((), ("prior_accuracy",)):
            c = Candidate(signals, kind=GAIN, text=True, answer=True, l2=10.0)
            table.append(replace(c, apgr=routing_scores(dev, out_of_fold(dev, c, repeats=1)[0])[0], eligible=True))
        notes: list[str] = []
        picked[covers] = _words_default(dev, table, seed=0, l2=1.0, notes=notes).signals
        assert bool(notes) == (picked[covers] == ())
    assert picked == {"seen": ("prior_accuracy",), "new": ()}
    # told that the questions routed are seen, the words router keeps the prior without the test
    # (its recall is what routing will see), even where these values carry nothing
    notes = []
    told_seen = replace(dev, prior_out_of_fold=False)
    assert _words_default(told_seen, table, seed=0, l2=1.0, notes=notes).signals == ("prior_accuracy",) and not notes


def test_a_prior_for_new_questions_is_offered_only_beside_the_words(tmp_path):
    from tourney.routers.fitting.select import candidates

    other, new = shared_outcome_pairs(tmp_path)
    prior = DifficultyPrior.fit(other)
    reads = lambda data: [c for c in candidates(data) if "prior_accuracy" in c.signals]  # noqa: E731
    seen = routing_data(*new).with_prior(prior)
    assert reads(seen) and not any(c.answer for c in reads(seen))  # 160 questions: no words router
    assert reads(routing_data(*new).with_prior(prior, dev=True)) == []
    assert routing_data(*new).with_prior(prior, dev=True).subset(range(10)).prior_out_of_fold
