"""routers.fitting.combined: the logistic regression over signals (fitted by scikit-learn, routers.fitting.linear)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tourney.harness.types import SampleResult
from tourney.routers.fitting.combined import CombinedRouter
from tourney.routers.fitting.linear import sigmoid as _sigmoid
from tourney.routers.evaluation.metrics import auroc
from tourney.routers.fitting.model_io import model_from_schema
from tourney.routers.fitting.router_file import LogisticSchema
from tourney.schema import parse


def from_dict(d):
    return model_from_schema(parse(LogisticSchema, d, "model"))


X = [-2.0, -1.5, -1.0, -0.5, 0.5, 1.0, 1.5, 2.0]
Y = [x > 0 for x in X]  # separable: the student is right exactly when the signal is positive


def rows_of(values, name="mean_logprob"):
    return [{name: v} for v in values]


def test_separates_a_separable_set():
    r = CombinedRouter.fit(rows_of(X), Y, ["mean_logprob"])
    p = r.predict(rows_of(X))
    assert (p[4:] > 0.5).all() and (p[:4] < 0.5).all()
    assert auroc(p, Y) == 1.0
    assert r.weights[0] > 0 and np.isfinite(r.bias)  # the penalty keeps separable data finite


def test_fit_reaches_the_penalised_optimum():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 2))
    y = (x[:, 0] - 0.5 * x[:, 1] + rng.normal(size=60) > 0)
    feats = [{"mean_logprob": a, "length": b} for a, b in x]
    r = CombinedRouter.fit(feats, y, ["mean_logprob", "length"], l2=0.5)
    z = (x - np.array(r.mean)) / np.array(r.scale)
    p = _sigmoid(r.bias + z @ np.array(r.weights))
    grad_w = z.T @ (p - y) + 0.5 * np.array(r.weights)
    grad_b = np.sum(p - y)
    assert np.abs(grad_w).max() < 1e-7 and abs(grad_b) < 1e-7  # the penalised optimum; the bias is not penalised
    again = CombinedRouter.fit(feats, y, ["mean_logprob", "length"], l2=0.5)
    assert again.to_dict() == r.to_dict()  # deterministic, bit for bit


def test_json_round_trip():
    r = CombinedRouter.fit(rows_of(X), Y, ["mean_logprob"])
    back = from_dict(json.loads(json.dumps(r.to_dict())))
    assert back == r
    assert np.array_equal(back.predict(rows_of(X)), r.predict(rows_of(X)))


def test_unavailable_signals_dropped_and_missing_ones_imputed():
    feats = [{"mean_logprob": None, "length": x, "self_consistency": (None if i == 0 else x)}
             for i, x in enumerate(X)]
    r = CombinedRouter.fit(feats, Y, ["mean_logprob", "length", "self_consistency"])
    assert r.features == ["length", "self_consistency"] and r.unavailable == ["mean_logprob"]
    # imputation: the missing value is the training mean of the observed ones
    assert r.mean[1] == pytest.approx(np.mean(X[1:]))
    at_mean = r.confidence_from_features({"length": 0.3, "self_consistency": r.mean[1]})
    assert r.confidence_from_features({"length": 0.3, "self_consistency": None}) == pytest.approx(at_mean)
    assert r.confidence_from_features({"length": 0.3, "self_consistency": float("nan")}) == pytest.approx(at_mean)


def test_confidence_from_samples():
    lengths = [1, 2, 3, 4, 5, 6, 7, 8]
    r = CombinedRouter.fit(rows_of(lengths, "length"), [n <= 4 for n in lengths], ["length"])  # long = wrong
    sample = SampleResult(id="a", question="q", type="t", sample=0, output="x", prediction="1",
                          gold="1", correct=True, latency_s=0.1, ttft_s=None, prompt_tokens=1,
                          completion_tokens=2)
    conf = r.confidence([sample])
    assert 0.5 < conf < 1.0  # 2 tokens: on the "right" side of the fitted boundary
    assert r.confidence([sample], question_text="ignored") == conf


def test_bad_inputs():
    with pytest.raises(ValueError, match="right AND wrong"):
        CombinedRouter.fit(rows_of(X), [True] * len(X), ["mean_logprob"])
    with pytest.raises(ValueError, match="none of the signals"):
        CombinedRouter.fit(rows_of([None] * len(X)), Y, ["mean_logprob"])
    with pytest.raises(ValueError, match="unknown signal"):
        CombinedRouter.fit(rows_of(X), Y, ["nope"])
    d = CombinedRouter.fit(rows_of(X), Y, ["mean_logprob"]).to_dict()
    with pytest.raises(ValueError, match="'weights"):
        from_dict({**d, "weights": ["a"]})
    with pytest.raises(ValueError, match="'mean'"):
        from_dict({**d, "mean": [0.0, 1.0]})
    with pytest.raises(ValueError, match="'features'"):
        from_dict({k: v for k, v in d.items() if k != "features"})


def test_primary_keeps_its_order_and_the_regression_breaks_its_ties():
    # self_consistency has two levels; length (shorter = right here) orders each level's members
    feats = [{"self_consistency": sc, "length": ln} for sc, ln in
             [(0.4, 9), (0.4, 3), (0.4, 5), (1.0, 9), (1.0, 2), (1.0, 4), (1.0, 8)]]
    y = [False, True, False, False, True, True, False]
    r = CombinedRouter.fit(feats, y, ["self_consistency", "length"], primary="self_consistency")
    assert r.primary_step == pytest.approx(0.3)  # half the gap between 0.4 and 1.0
    conf = r.predict(feats)
    assert conf[:3].max() < 1.0 <= conf[3:].min()  # every 0.4 question below every 1.0 question
    assert conf[1] > conf[2] > conf[0] and conf[4] > conf[5] > conf[6] > conf[3]  # shorter first
    assert r.predict([{"self_consistency": None, "length": 3}])[0] == -np.inf  # no evidence: escalate
    back = from_dict(json.loads(json.dumps(r.to_dict())))
    assert back == r and np.array_equal(back.predict(feats), conf)
    with pytest.raises(ValueError, match="primary"):
        CombinedRouter.fit(feats, y, ["length"], primary="self_consistency")
