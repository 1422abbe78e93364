"""Rejection sampling on hand-made teacher samples: verifiers, keep policies, pass rates, files."""
import json

import pytest
from click.testing import CliRunner

from tourney.cli.main import main
from tourney.harness.types import DataError
from tourney.trainers.cot import CoTSample, read_cot, write_cot
from tourney.trainers.dataset import read_sft_jsonl
from tourney.trainers.rejection import group_by_question, normalise_text, select, select_file


def sample(qid, s, output, prediction, gold="7", tokens=10, error=None, logprob=-0.5, qtype="t"):
    return CoTSample(id=qid, question=f"question {qid}", type=qtype, gold=gold, output=output, answer_text=output,
                     prediction=prediction, correct=None, prompt_tokens=5, completion_tokens=tokens,
                     mean_logprob=logprob, sample=s, error=error)


def rows_a():
    """Four samples against gold 7: three right (one a case/space variant of another), one wrong."""
    return [sample("a", 0, "Long way: 3 + 4 = 7. #### 7", "7", tokens=30),
            sample("a", 1, "3+4=7 #### 7", "7", tokens=8),
            sample("a", 2, "I think 8. #### 8", "8", tokens=6),
            sample("a", 3, "  long WAY: 3 + 4 = 7.\n#### 7 ", "7.0", tokens=31)]


def test_first_keeps_lowest_correct_sample():
    kept, stats = select({"a": rows_a()}, policy="first")
    assert [k.sample for k in kept] == [0]
    assert kept[0].solution == rows_a()[0].output and kept[0].answer == "7" and kept[0].tokens == 30
    assert stats.pass_rates[0].pass_rate == pytest.approx(3 / 4) and kept[0].pass_rate == pytest.approx(0.75)


def test_shortest_picks_the_shortest_correct():
    kept, _ = select({"a": rows_a()}, policy="shortest")
    assert [k.sample for k in kept] == [1]  # sample 2 is shorter but wrong


def test_all_distinct_dedups_normalised_text():
    kept, stats = select({"a": rows_a()}, policy="all-distinct")
    assert [k.sample for k in kept] == [0, 1]  # sample 3 is sample 0 up to case and whitespace
    assert stats.kept == 2 and stats.accepted_samples == 3
    assert normalise_text("  A\n b ") == normalise_text("a b")


def test_gold_is_rechecked_with_the_scorer():
    # 7.0 equals 7 numerically; a row without a prediction is re-extracted from its text
    rows = [sample("a", 0, "so #### 7.0", None), sample("a", 1, "so #### 70", None)]
    kept, stats = select({"a": rows})
    assert [k.sample for k in kept] == [0] and stats.pass_rates[0].accepted == 1


def test_majority_vote_without_gold():
    rows = [sample("m", i, f"text {i}", p, gold=g) for i, (p, g) in enumerate(
        [("5", None), ("6", None), ("6", None), (None, None), ("5", None), ("6", None)])]
    kept, stats = select({"m": rows}, policy="first")
    assert stats.by_verifier == {"majority": 1}
    [rate] = stats.pass_rates
    assert rate.answer == "6" and rate.accepted == 3 and rate.pass_rate == pytest.approx(3 / 6)
    assert [k.sample for k in kept] == [1] and kept[0].answer == "6"
    # A tie goes to the answer seen first; an empty gold string counts as no gold.
    tie = [sample("t", 0, "x", "9", gold=""), sample("t", 1, "y", "4", gold="")]
    assert select({"t": tie}).kept[0].answer == "9"


def test_forced_gold_verifier_rejects_questions_without_gold():
    kept, stats = select({"m": [sample("m", 0, "#### 5", "5", gold=None)]}, verifier="gold")
    assert kept == [] and stats.rejected == ["m"] and stats.pass_rates[0].pass_rate == 0.0


def test_pass_rates_exact_and_rejections_listed():
    rows = {
        "a": rows_a(),
        "b": [sample("b", s, "#### 1", "1") for s in range(4)],  # all wrong
        "c": [sample("c", 0, "", None, error="HTTP 503"), sample("c", 1, "#### 7", "7"),
              sample("c", 2, "#### 2", "2")],
        "d": [sample("d", 0, "", None, error="timeout")],
    }
    kept, stats = select(rows, policy="first")
    rates = {p.id: (p.n, p.accepted, p.pass_rate, p.kept) for p in stats.pass_rates}
    assert rates == {"a": (4, 3, 0.75, 1), "b": (4, 0, 0.0, 0), "c": (2, 1, 0.5, 1), "d": (0, 0, None, 0)}
    assert stats.rejected == ["b", "d"] and stats.questions == 4 and stats.samples == 12
    assert stats.failed_samples == 2 and [k.id for k in kept] == ["a", "c"]
    assert stats.mean_pass_rate == pytest.approx((0.75 + 0 + 0.5) / 3)


def test_bad_policy():
    with pytest.raises(ValueError, match="policy"):
        select({}, policy="longest")


def test_files_and_cli(tmp_path):
    cot = tmp_path / "run" / "cot.jsonl"
    cot.parent.mkdir()
    write_cot(rows_a() + [sample("b", 0, "#### 1", "1")], cot)
    assert group_by_question(read_cot(cot)).keys() == {"a", "b"}
    out = tmp_path / "data" / "sft.jsonl"
    stats = select_file(cot, out, policy="shortest")
    assert stats.rejected == ["b"]
    [line] = [json.loads(x) for x in out.read_text().splitlines()]
    assert {"id", "question", "type", "solution", "answer", "pass_rate", "mean_logprob", "tokens"} <= set(line)
    assert line["solution"] == "3+4=7 #### 7" and line["tokens"] == 8
    pass_rates = [json.loads(x) for x in (out.parent / "pass_rates.jsonl").read_text().splitlines()]
    assert [(p["id"], p["pass_rate"], p["kept"]) for p in pass_rates] == [("a", 0.75, 1), ("b", 0.0, 0)]
    assert read_sft_jsonl(out)[0]["solution"] == "3+4=7 #### 7"  # the trainer's reader takes it

    res = CliRunner().invoke(main, ["distill", "select", "--cot", str(cot), "--policy", "all-distinct",
                                    "--out", str(tmp_path / "sft2.jsonl")])
    assert res.exit_code == 0, res.output
    assert "1 question(s) with no accepted sample: b" in res.output
    assert len((tmp_path / "sft2.jsonl").read_text().splitlines()) == 2


def test_bad_cot_line_is_named(tmp_path):
    cot = tmp_path / "cot.jsonl"
    write_cot(rows_a()[:1], cot)
    row = json.loads(cot.read_text())
    row["sample"] = "zero"
    cot.write_text(cot.read_text() + json.dumps(row) + "\n")
    with pytest.raises(DataError, match=r"cot.jsonl:2: field 'sample'"):
        read_cot(cot)


def test_a_multiple_choice_question_keeps_its_options_to_the_training_prompt(tmp_path):
    # The student is asked with the options listed; trained on the bare question it would learn a
    # prompt it is never given. The options travel cot.jsonl -> sft.jsonl -> the encoded prompt.
    from tourney.trainers.pretrain import prompt_text

    cot = tmp_path / "cot.jsonl"
    mc = CoTSample(id="m", question="Where does Pim live?", type="common", gold="B", output=" Zor.",
                   answer_text=" Zor.", prediction="B", correct=True, prompt_tokens=5, completion_tokens=2,
                   mean_logprob=-0.1, sample=0, choices=["Ulm", "Zor", "Kiv", "Pom"])
    write_cot([mc, sample("a", 1, "3+4=7 #### 7", "7")], cot)
    out = tmp_path / "sft.jsonl"
    select_file(cot, out)
    rows = read_sft_jsonl(out)
    assert [r["choices"] for r in rows] == [["Ulm", "Zor", "Kiv", "Pom"], None]
    assert "B. Zor" in prompt_text(rows[0]) and "Where does Pim live?" in prompt_text(rows[0])
    assert "choices" not in json.loads(out.read_text().splitlines()[1])  # open-ended rows unchanged

    row = json.loads(cot.read_text().splitlines()[0])
    row["choices"] = ["only one"]
    cot.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=r"cot.jsonl:1: field 'choices'"):
        read_cot(cot)
