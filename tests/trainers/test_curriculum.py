"""Curriculum difficulty and orderings on hand-made examples, and the SFT reader's errors."""
import json
import math

import pytest
from click.testing import CliRunner

from tourney.cli.main import main
from tourney.harness.types import DataError
from tourney.trainers.curriculum import CurriculumConfig, competence, difficulty_scores, order_examples
from tourney.trainers.dataset import read_sft_jsonl

PASS_ONLY = dict(w_pass=1.0, w_confidence=0.0, w_length=0.0, w_type=0.0)


def by_pass_rate(rates):
    """Examples whose difficulty under PASS_ONLY is exactly 1 - pass rate."""
    return [{"id": f"e{i}", "question": f"q{i}", "type": "t", "solution": "x", "pass_rate": r, "mean_logprob": None, "tokens": 5}
            for i, r in enumerate(rates)]


RATES = [0.9, 0.1, 0.5, 1.0, 0.0, 0.3, 0.7, 0.6]


def test_difficulty_is_the_documented_weighted_sum():
    ex = [{"type": "A", "solution": "s", "pass_rate": 1.0, "mean_logprob": -0.1, "tokens": 10},
          {"type": "B", "solution": "s", "pass_rate": 0.5, "mean_logprob": -1.1, "tokens": 30},
          {"type": "B", "solution": "s", "pass_rate": 0.0, "mean_logprob": -2.1, "tokens": 20}]
    # pass [0, .5, 1], confidence [0, .5, 1], length [0, 1, .5], type (A easier than B) [0, 1, 1]
    assert difficulty_scores(ex, CurriculumConfig()) == pytest.approx([0.0, 0.7, 0.9])
    only_len = CurriculumConfig(w_pass=0, w_confidence=0, w_length=1, w_type=0)
    assert difficulty_scores(ex, only_len) == pytest.approx([0.0, 1.0, 0.5])


def test_missing_components_are_left_out_not_guessed():
    gold = [{"type": "t", "solution": "a b", "pass_rate": None, "mean_logprob": None, "tokens": None},
            {"type": "t", "solution": "a b c d e f", "pass_rate": None, "mean_logprob": None, "tokens": None},
            {"type": "t", "solution": "a b c d", "pass_rate": None, "mean_logprob": None, "tokens": None}]
    # Only the length (word count) is known, so difficulty is the scaled length whatever the weights.
    assert difficulty_scores(gold, CurriculumConfig()) == pytest.approx([0.0, 1.0, 0.5])


def test_easy_to_hard_is_monotone():
    ex = by_pass_rate(RATES)
    [order] = order_examples(ex, CurriculumConfig(order="easy-to-hard", **PASS_ONLY))
    assert sorted(order) == list(range(len(ex)))
    assert [1 - RATES[i] for i in order] == sorted(1 - r for r in RATES)


def test_staged_buckets_respect_quantiles():
    ex = by_pass_rate(RATES)
    cfg = CurriculumConfig(order="staged", buckets=4, **PASS_ONLY)
    for order in order_examples(ex, cfg, epochs=3):
        buckets = [order[i: i + 2] for i in range(0, 8, 2)]
        difficulty = [sorted(round(1 - RATES[i], 6) for i in b) for b in buckets]
        assert difficulty == [[0.0, 0.1], [0.3, 0.4], [0.5, 0.7], [0.9, 1.0]]


def test_competence_formula():
    assert competence(0, 100, 0.1) == pytest.approx(0.1)
    assert competence(100, 100, 0.1) == pytest.approx(1.0)
    assert competence(250, 100, 0.1) == 1.0
    assert competence(50, 100, 0.1) == pytest.approx(math.sqrt(0.5 * 0.99 + 0.01))


def test_competence_order_draws_from_the_easy_fraction():
    rates = [1 - i / 20 for i in range(20)]  # example i has difficulty i / 20: rank == index
    cfg = CurriculumConfig(order="competence", c0=0.1, ramp=0.5, **PASS_ONLY)
    epochs = order_examples(by_pass_rate(rates), cfg, epochs=4)
    assert [len(e) for e in epochs] == [20] * 4
    total = 0.5 * 4 * 20
    draws = [i for e in epochs for i in e]
    assert draws[0] in (0, 1)  # c(0) = 0.1: the easiest 2 of 20
    for t, i in enumerate(draws):
        assert i < math.ceil(competence(t, total, 0.1) * 20 - 1e-9)
    assert max(draws[:10]) < 10 and max(draws) >= 15  # hard examples appear only later


@pytest.mark.parametrize("order", ["easy-to-hard", "staged", "competence", "random"])
def test_same_seed_same_order_other_seed_other_order(order):
    ex = by_pass_rate([0.5] * 10 + [0.2] * 10)  # ties, so even easy-to-hard depends on the seed
    first = order_examples(ex, CurriculumConfig(order=order, seed=1, **PASS_ONLY), epochs=2)
    assert first == order_examples(ex, CurriculumConfig(order=order, seed=1, **PASS_ONLY), epochs=2)
    assert first != order_examples(ex, CurriculumConfig(order=order, seed=2, **PASS_ONLY), epochs=2)
    if order == "random":
        assert all(sorted(e) == list(range(20)) for e in first) and first[0] != first[1]


@pytest.mark.parametrize("field,value", [("order", "hard-first"), ("w_pass", -1.0), ("buckets", 0),
                                         ("c0", 0.0), ("c0", 1.5), ("ramp", 0.0)])
def test_config_ranges(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0]):
        CurriculumConfig(**{field: value})
    with pytest.raises(ValueError, match="weight"):
        CurriculumConfig(w_pass=0, w_confidence=0, w_length=0, w_type=0)


def test_reader_accepts_sft_gold_and_gsm8k_rows(tmp_path):
    path = tmp_path / "mix.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "question": "q1", "type": "x", "solution": "s1", "answer": "1", "pass_rate": 0.5,
         "mean_logprob": -0.3, "tokens": 12},
        {"question": "q2", "solution": "s2"},
        {"question": "q3", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"},
    ]) + "\n\n")
    a, b, c = read_sft_jsonl(path)
    assert (a["id"], a["pass_rate"], a["tokens"], a["source"]) == ("a", 0.5, 12, f"{path}:1")
    assert (b["id"], b["type"], b["answer"], b["pass_rate"]) == ("mix-00002", "default", None, None)
    assert c["solution"].startswith("3 + 4") and c["answer"] == "7"


@pytest.mark.parametrize("line,field", [
    ('{"question": "q"}', "solution"),
    ('{"solution": "s"}', "question"),
    ('{"question": "q", "solution": "s", "pass_rate": 1.5}', "pass_rate"),
    ('{"question": "q", "solution": "s", "mean_logprob": 0.2}', "mean_logprob"),
    ('{"question": "q", "solution": "s", "tokens": -1}', "tokens"),
    ('{"question": "q", "solution": "s", "id": [1]}', "id"),
])
def test_bad_sft_lines_are_named_by_file_line_field(tmp_path, line, field):
    path = tmp_path / "sft.jsonl"
    path.write_text('{"question": "ok", "solution": "fine"}\n\n' + line + "\n")
    with pytest.raises(DataError, match=rf"sft.jsonl:3: field '{field}'"):
        read_sft_jsonl(path)


def test_malformed_json_and_empty_file(tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_text('{"question": "ok", "solution": "fine"}\n{oops\n')
    with pytest.raises(DataError, match=r"sft.jsonl:2: not valid JSON"):
        read_sft_jsonl(path)
    path.write_text("\n")
    with pytest.raises(DataError, match="no rows"):
        read_sft_jsonl(path)


def test_cli_curriculum(tmp_path):
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(e) + "\n" for e in by_pass_rate(RATES)))
    out = tmp_path / "order.json"
    res = CliRunner().invoke(main, ["distill", "curriculum", "--data", str(data), "--order", "staged",
                                    "--epochs", "2", "--weights", "1,0,0,0", "--out", str(out)])
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())
    assert len(result["epochs"]) == 2 and sorted(result["epochs"][0]) == list(range(8))
    assert result["difficulty"] == pytest.approx([1 - r for r in RATES]) and result["ids"][0] == "e0"
    bad = CliRunner().invoke(main, ["distill", "curriculum", "--data", str(data), "--weights", "1,0",
                                    "--out", str(out)])
    assert bad.exit_code == 2 and "weights" in bad.output
