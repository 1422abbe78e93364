"""routers.features.prior: a difficulty prior learned from other pairs' runs, read as `prior_accuracy` by a
fitted router, saved inside ROUTER.json, and computed the same way offline and at run time."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tourney.errors import ConfigError
from tourney.routers.policies.calibrate import CalibratedRouter
from tourney.routers.fitting.fit import CalibrateConfig, calibrate_runs
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
