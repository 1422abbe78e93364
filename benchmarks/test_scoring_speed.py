"""pytest-benchmark suite for the harness's pure hot paths (not part of `make test`):

    .venv/bin/pytest benchmarks/test_scoring_speed.py --benchmark-only
"""
import json
import random

import pytest

from tourney.harness.metrics import summarize_results
from tourney.harness.scoring import extract_answer
from tourney.harness.synthetic import SynthConfig, generate
from tourney.harness.types import SampleResult

OUTPUTS = [r["solution"] for r in generate(SynthConfig(n=500, seed=11))]
THINKING = ["<think>" + "Let me think. 12 + 30 = 42. " * 40 + "</think>The answer is 42." for _ in range(100)]


@pytest.mark.parametrize("texts", [OUTPUTS, THINKING], ids=["mini-solutions", "long-thinking"])
def test_extract_answer(benchmark, texts):
    result = benchmark(lambda: [extract_answer(t) for t in texts])
    assert all(r is not None for r in result)


def test_summarize_10k_rows(benchmark):
    rng = random.Random(0)
    rows = [SampleResult(id=f"q{i}", question="q", type=f"t{i % 4}", sample=0, output="", prediction="1", gold="1",
                         correct=rng.random() < 0.7, latency_s=rng.random(), ttft_s=0.01, prompt_tokens=10,
                         completion_tokens=30) for i in range(10_000)]
    report = benchmark(summarize_results, rows)
    assert report.overall.n == 10_000
    json.dumps(report.to_dict())
