"""harness.regress: the exact test, the bootstrap CI, Holm, and the gate on hand-made run dirs."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tourney.cli.main import main
from tourney.harness.regress import (
    RegressConfig, compare_runs, holm_adjust, is_worse, mcnemar_exact, paired_bootstrap_ci,
    render_regression_markdown,
)
from tourney.harness.types import DataError

META = {"model": "hf:base", "data": "q.jsonl", "data_sha256": "ab" * 32, "n_questions": 0}


def row(id: str, correct: bool, *, type: str = "arith", sample: int = 0, latency_s: float = 1.0,
        error: str | None = None) -> dict:
    return {
        "id": id, "question": f"q {id}", "type": type, "sample": sample, "output": "...",
        "prediction": "1" if correct else "2", "gold": "1", "correct": correct,
        "latency_s": latency_s, "ttft_s": 0.1, "prompt_tokens": 10, "completion_tokens": 20,
        "error": error,
    }


def make_run(tmp_path: Path, name: str, rows: list[dict], **meta) -> Path:
    run = tmp_path / name
    run.mkdir()
    (run / "run.json").write_text(json.dumps(META | {"model": f"hf:{name}"} | meta))
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def cli(*args):
    return CliRunner().invoke(main, ["regress", *map(str, args)], catch_exceptions=False)


def baseline_rows() -> list[dict]:
    # 100 arith questions, 80 right; 50 mcq questions, 25 right.
    return ([row(f"a{i}", i < 80) for i in range(100)]
            + [row(f"m{i}", i < 25, type="mcq") for i in range(50)])


# --- pure functions ---------------------------------------------------------------------------

def _binom_p(b: int, c: int) -> float:
    """Independent float reference: 2 * P(X <= min(b, c)), X ~ Binomial(b + c, 1/2)."""
    n = b + c
    return min(1.0, 2 * sum(math.comb(n, k) * 0.5**n for k in range(min(b, c) + 1))) if n else 1.0


def test_mcnemar_hand_values() -> None:
    assert mcnemar_exact(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)  # 0.03857
    assert mcnemar_exact(10, 2) == pytest.approx(0.03857, abs=1e-5)
    assert mcnemar_exact(2, 10) == mcnemar_exact(10, 2)  # two-sided: symmetric
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 32)
    assert mcnemar_exact(30, 0) == pytest.approx(2 / 2**30)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(1, 0) == 1.0
    for b, c in [(7, 3), (20, 9), (0, 6), (50, 70)]:
        assert mcnemar_exact(b, c) == pytest.approx(_binom_p(b, c), rel=1e-12)
    assert 0 < mcnemar_exact(3000, 2500) < 1e-10  # big n: exact integers, no overflow
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_bootstrap_constant_difference_is_a_point() -> None:
    assert paired_bootstrap_ci([1, 1, 0, 0], [0, 0, -1, -1]) == pytest.approx((-1.0, -1.0))


def test_bootstrap_contains_true_delta_and_is_seeded() -> None:
    rng = np.random.default_rng(123)
    base = (rng.random(500) < 0.7).astype(float)
    cand = (rng.random(500) < 0.6).astype(float)  # population delta -0.1
    low, high = paired_bootstrap_ci(base, cand, n_boot=2000, seed=0)
    assert low < -0.1 < high and low < np.mean(cand - base) < high
    # Width close to the normal approximation 2 * 1.96 * sd / sqrt(n).
    se = np.std(cand - base) / math.sqrt(500)
    assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert paired_bootstrap_ci(base, cand, seed=0) == (low, high)
    assert paired_bootstrap_ci(base, cand, seed=1) != (low, high)
    narrow = paired_bootstrap_ci(base, cand, alpha=0.5)
    assert low < narrow[0] < narrow[1] < high
    with pytest.raises(ValueError):
        paired_bootstrap_ci([], [])


def test_holm_hand_values() -> None:
    # sorted: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04 -> raised to 0.06 (monotone).
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjust([0.6, 0.5]) == pytest.approx([1.0, 1.0])
    assert holm_adjust([]) == []


def test_rule_needs_all_three_conditions() -> None:
    cfg = RegressConfig(min_delta=0.02)
    assert is_worse(-0.05, 0.01, -0.01, cfg)
    assert not is_worse(-0.01, 0.01, -0.001, cfg)  # drop within min_delta
    assert not is_worse(-0.05, 0.06, -0.01, cfg)  # not significant
    assert not is_worse(-0.05, 0.01, 0.002, cfg)  # CI reaches zero


@pytest.mark.parametrize("kwargs", [{"alpha": 0}, {"alpha": 1.5}, {"min_delta": -0.1},
                                    {"min_delta": 1}, {"min_n": 0}, {"n_boot": 10},
                                    {"adjust": "bonferroni"}])
def test_config_ranges(kwargs) -> None:
    with pytest.raises(ValueError):
        RegressConfig(**kwargs)


# --- run directories --------------------------------------------------------------------------

def test_run_against_itself_passes(tmp_path: Path) -> None:
    run = make_run(tmp_path, "base", baseline_rows())
    res = cli(run, run)
    assert res.exit_code == 0, res.output
    assert "**PASS**" in res.output and "no group dropped" in res.output
    r = compare_runs(run, run)
    assert not r.failed and r.overall.n == 150 and r.overall.delta == 0.0
    assert (r.overall.b, r.overall.c, r.overall.p_value) == (0, 0, 1.0)
    assert r.overall.baseline_accuracy == pytest.approx(105 / 150)
    assert r.overall.latency_p50_delta_s == 0.0


def test_planted_regression_is_flagged_in_its_type(tmp_path: Path) -> None:
    base = make_run(tmp_path, "base", baseline_rows())
    # The candidate gets 30 of the 80 arith questions the baseline got right wrong, and is faster.
    cand_rows = [dict(r, correct=False) if r["id"] in {f"a{i}" for i in range(30)} else r
                 for r in baseline_rows()]
    cand = make_run(tmp_path, "cand", [dict(r, latency_s=0.5) for r in cand_rows])
    md, js = tmp_path / "out.md", tmp_path / "out.json"
    res = cli(base, cand, "--out", md, "--json", js)
    assert res.exit_code == 1, res.output
    headline = res.output.splitlines()[2]
    assert headline.startswith("**REGRESSION**") and "arith 0.800 -> 0.500" in headline
    assert "mcq" not in headline
    assert res.output.startswith(md.read_text())
    data = json.loads(js.read_text())
    assert data["failed"] is True and data["by_type"]["mcq"]["significantly_worse"] is False
    arith = data["by_type"]["arith"]
    assert (arith["b"], arith["c"], arith["delta"]) == (30, 0, -0.3)
    assert arith["p_value"] == pytest.approx(2 / 2**30)
    assert arith["p_adjusted"] == pytest.approx(2 * 2 / 2**30)  # Holm over two types
    assert arith["ci"][1] < 0
    assert arith["latency_p50_delta_s"] == -0.5 and arith["tokens_per_s_delta"] == 20.0
    assert data["overall"]["delta"] == pytest.approx(-30 / 150)
    # The same drop passes when the gate only cares about drops of more than 40 points ...
    assert cli(base, cand, "--min-delta", 0.4).exit_code == 0
    # ... and a type with too few questions is reported but never flagged.
    r = compare_runs(base, cand, RegressConfig(min_n=200))
    assert not r.failed and "untested (n < 200)" in render_regression_markdown(r)


def test_small_drop_that_is_not_significant_passes(tmp_path: Path) -> None:
    base = make_run(tmp_path, "base", baseline_rows())
    # Three right -> wrong, one wrong -> right: b=3, c=1, p = 2 * (1 + 4) / 16 = 0.625.
    flip = {"a0": False, "a1": False, "a2": False, "a90": True}
    cand = make_run(tmp_path, "cand", [dict(r, correct=flip.get(r["id"], r["correct"]))
                                       for r in baseline_rows()])
    res = cli(base, cand)
    assert res.exit_code == 0, res.output
    assert "**PASS**" in res.output and "largest drop: arith 0.800 -> 0.780" in res.output
    r = compare_runs(base, cand)
    assert (r.by_type["arith"].b, r.by_type["arith"].c) == (3, 1)
    assert r.by_type["arith"].p_value == pytest.approx(0.625)


def test_unmatched_questions_are_reported_and_excluded(tmp_path: Path) -> None:
    common = [row(f"q{i}", True) for i in range(10)]
    base = make_run(tmp_path, "base", common + [row("x1", True), row("x2", True),
                                                row("q0", True, sample=1)])
    cand = make_run(tmp_path, "cand", common + [row("y1", False)], data_sha256="cd" * 32)
    r = compare_runs(base, cand)
    assert r.overall.n == 10 and r.overall.candidate_accuracy == 1.0  # y1 is left out
    assert (r.only_baseline, r.only_baseline_ids) == (2, ["x1", "x2"])
    assert (r.only_candidate, r.only_candidate_ids) == (1, ["y1"])
    assert r.unmatched_samples == 1
    md = render_regression_markdown(r)
    assert "only in baseline: 2 (x1, x2)" in md and "only in candidate: 1 (y1)" in md
    assert "data_sha256 differs" in md


def test_k_samples_average_per_question_and_errors_count_wrong(tmp_path: Path) -> None:
    base = make_run(tmp_path, "base", [row("q1", True), row("q1", True, sample=1),
                                       row("q2", True), row("q2", False, sample=1)])
    cand = make_run(tmp_path, "cand", [row("q1", True), row("q1", True, sample=1, error="timeout"),
                                       row("q2", True), row("q2", False, sample=1)])
    r = compare_runs(base, cand)  # scores: base [1, 0.5], candidate [0.5, 0.5]
    assert (r.overall.baseline_accuracy, r.overall.candidate_accuracy) == (0.75, 0.5)
    assert (r.overall.delta, r.overall.b, r.overall.c) == (-0.25, 1, 0)


def test_no_common_question_is_a_clear_error(tmp_path: Path) -> None:
    base = make_run(tmp_path, "base", [row("a", True)])
    cand = make_run(tmp_path, "cand", [row("b", True)])
    with pytest.raises(DataError, match="no question is in both .*base and .*cand"):
        compare_runs(base, cand)
    res = CliRunner().invoke(main, ["regress", str(base), str(cand)])
    assert res.exit_code == 2 and res.output.startswith("error: no question is in both")
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(main, ["regress", str(base), str(tmp_path / "empty")])
    assert res.exit_code == 2 and "run.json: not found" in res.output
