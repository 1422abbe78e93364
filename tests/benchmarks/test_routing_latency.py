"""benchmarks/routing_latency.py: the round-robin order of its modes and the medians over rounds."""
from __future__ import annotations

from benchmarks import routing_latency as script


def test_each_round_starts_one_mode_later():
    rounds = script.rounds(["s", "t", "c", "2"], 5)
    assert rounds == [["s", "t", "c", "2"], ["t", "c", "2", "s"], ["c", "2", "s", "t"], ["2", "s", "t", "c"],
                      ["s", "t", "c", "2"]]
    assert script.rounds(["s", "t"], 1) == [["s", "t"]]


def test_timings_are_medians_over_rounds():
    def fig(mean, spent):
        return {"accuracy": 0.9, "escalated": 0.1, "mean": mean, "p50": mean / 2, "p95": mean * 2, "spent": spent}

    f = script.over_rounds([fig(0.30, 3.0), fig(0.10, 9.0), fig(0.20, 1.0)])
    assert f["mean"] == 0.20 and f["p50"] == 0.10 and f["p95"] == 0.40 and f["spent"] == 3.0
    assert f["mean_range"] == (0.10, 0.30) and f["spent_range"] == (1.0, 9.0)
    assert (f["accuracy"], f["escalated"]) == (0.9, 0.1)
