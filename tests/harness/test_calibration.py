"""Calibration of option probabilities: ECE and reliability bins against hand-computed values."""
import math

import pytest

from tourney.harness.calibration import (calibration_by_type, calibration_markdown, calibration_section,
                                         expected_calibration_error, reliability_bins, top_probability)
from tourney.harness.types import SampleResult


def row(qid, qtype, logliks, correct, sample=0, error=None):
    return SampleResult(id=qid, question="q", type=qtype, sample=sample, output=" A", prediction="A", gold="A",
                        correct=correct, latency_s=0.0, ttft_s=None, prompt_tokens=1, completion_tokens=1,
                        error=error, choice_logliks=logliks)


def test_ece_by_hand():
    conf = [0.95, 0.85, 0.62, 0.30, 0.35]
    right = [True, False, True, False, True]
    # bins: [0.9,1] 0.95 right -> |1-0.95| = 0.05; [0.8,0.9) 0.85 wrong -> 0.85; [0.6,0.7) 0.62 right
    # -> 0.38; [0.3,0.4) mean 0.325, one of two right -> 0.175. ECE = (0.05+0.85+0.38)/5 + 2/5*0.175
    assert expected_calibration_error(conf, right) == pytest.approx(0.326)
    bins = reliability_bins(conf, right)
    assert [b.n for b in bins] == [0, 0, 0, 2, 0, 0, 1, 0, 1, 1]
    assert bins[3].confidence == pytest.approx(0.325) and bins[3].accuracy == 0.5
    assert bins[0].confidence is None and bins[0].accuracy is None


def test_perfectly_calibrated_and_edges():
    assert expected_calibration_error([0.75] * 4, [True, True, True, False]) == pytest.approx(0.0)
    assert reliability_bins([1.0, 0.0], [True, False])[-1].n == 1  # 1.0 falls in the last bin
    assert expected_calibration_error([], []) == 0.0
    assert expected_calibration_error([0.6, 0.7], [True, True], n_bins=1) == pytest.approx(0.35)
    with pytest.raises(ValueError, match="outcomes"):
        expected_calibration_error([0.5], [])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reliability_bins([1.5], [True])


def test_per_type_from_rows_uses_sample_zero_and_the_top_option_probability():
    sure = [0.0, -9.0, -9.0, -9.0]  # p(A) = 1 / (1 + 3 e^-9)
    even = [math.log(0.25)] * 4
    rows = [row("a", "common", sure, True), row("b", "common", even, False), row("c", "rare", even, True),
            row("a", "common", even, False, sample=1),  # not the submitted answer: ignored
            row("d", "rare", None, True), row("e", "rare", even, False, error="HTTP 503")]  # left out
    cal = calibration_by_type(rows)
    assert set(cal) == {"common", "rare", "overall"}
    top = 1 / (1 + 3 * math.exp(-9))
    assert top_probability(rows[0]) == pytest.approx(top)
    # common: bin [0.9, 1] holds a (right, conf ~1); bin [0.2, 0.3) holds b (wrong, 0.25)
    assert cal["common"].ece == pytest.approx(0.5 * (1 - top) + 0.5 * 0.25)
    assert cal["rare"].n == 1 and cal["rare"].ece == pytest.approx(0.75)
    assert cal["overall"].n == 3 and cal["overall"].accuracy == pytest.approx(2 / 3)
    section = calibration_section(rows)["calibration"]
    assert section["rare"]["bins"][2]["n"] == 1
    lines = calibration_markdown({"calibration": section})
    assert any(line.startswith("| rare | 1 | 0.750 |") for line in lines)


def test_no_option_scores_no_section_and_bad_scores_are_data_errors():
    assert calibration_section([row("a", "x", None, True)]) == {}
    assert calibration_markdown({}) == []
    with pytest.raises(ValueError, match="choice_logliks"):  # a row is typed where it is read
        row("a", "x", ["high", 0.0], True)
    with pytest.raises(ValueError, match="finite"):
        row("a", "x", [float("nan"), 0.0], True)
