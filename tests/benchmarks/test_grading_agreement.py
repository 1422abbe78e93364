"""benchmarks/grading_agreement.py on a tiny hand-made trio: figures, classes, and bad input."""
from __future__ import annotations

import json

import pytest

from benchmarks import grading_agreement as script
from tourney.harness.types import DataError

OPTS = ["alpha", "beta", "gamma", "delta"]
QUESTIONS = [{"id": f"q{i}", "question": f"Question {i}?", "choices": OPTS, "answer": "C"} for i in range(5)]
# (output, benchmark's pred, benchmark's verdict): as MMLU-Pro records them
STUDENT = [
    ("Gamma fits. The answer is (C).", "C", True),  # agree
    ("Gamma or delta. The answer is (C) or (D).", "C", True),  # hedge: the benchmark takes the first
    ("The answer is (Insufficient data).", "I", False),  # agree: both wrong (word initial read as I)
    ("Final Answer:\nThe answer is **C. gamma**.", None, False),  # a statement its first pattern misses
    ("I cannot tell.", None, False),  # agree: nothing read by either
]


def _write(tmp_path, rows, name="student"):
    (tmp_path / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    (tmp_path / f"{name}.jsonl").write_text(
        "".join(json.dumps({"id": f"q{i}", "output": o}) + "\n" for i, (o, _, _) in enumerate(rows)))
    (tmp_path / "benchmark_verdicts.jsonl").write_text("".join(
        json.dumps({"id": f"q{i}", "model": name, "pred": p, "correct": c}) + "\n" for i, (_, p, c) in enumerate(rows)))
    return tmp_path / "questions.jsonl", {name: tmp_path / f"{name}.jsonl"}, tmp_path / "benchmark_verdicts.jsonl"


def test_figures_and_classes_of_a_tiny_trio(tmp_path):
    rows = script.grade_choice_trio(*_write(tmp_path, STUDENT))
    per, examples = script.figures(rows)
    f = per["student"]
    assert (f.n, f.agree) == (5, 3)
    assert (f.n_explicit, f.agree_explicit) == (3, 2)  # the hedge is the one explicit disagreement
    assert (f.n_explicit_single, f.agree_explicit_single) == (2, 2)
    assert dict(f.classes) == {"hedge": 1, "unrecorded-statement": 1}
    assert f.statuses == {"answered": 2, "hedge": 1, "unparsed": 2}
    md = script.choice_markdown("tiny", rows)
    assert "| student | 5 | 0.6000 (3/5) | 0.6667 (2/3) | 1.0000 (2/2) | 2/2/1/0 |" in md
    assert "**hedge**" in md and "**unrecorded-statement**" in md and "**other**" not in md


def test_the_command_line_on_a_trio_with_an_invented_continuation(tmp_path, capsys):
    q, replays, v = _write(tmp_path, STUDENT)
    text = script.main(["--questions", str(q), "--verdicts", str(v), "--replay", f"student={replays['student']}",
                        "--label", "tiny", "--continuation"])
    assert "### tiny\n" in text and "### tiny, each followed by an invented next exemplar" in text
    assert text in capsys.readouterr().out


def test_with_continuation_reads_like_a_base_model():
    from tourney.harness.types import Question

    nxt = Question(id="n", question="Next?", answer="A", choices=("x", "y"))
    out = script.with_continuation("The answer is (B).", nxt, " Because. The answer is (A).")
    assert out == ("The answer is (B).\n\nQuestion:\nNext?\nOptions:\nA. x\nB. y\n"
                   "Answer: Let's think step by step. Because. The answer is (A).")


def test_bad_input_names_file_and_line(tmp_path):
    q, replays, v = _write(tmp_path, STUDENT)
    v.write_text(json.dumps({"id": "q0", "model": "student", "pred": "C", "correct": "yes"}) + "\n")
    with pytest.raises(DataError, match=r"benchmark_verdicts.jsonl:1: field 'correct'"):
        script.grade_choice_trio(q, replays, v)
    v.write_text("")
    with pytest.raises(DataError, match="no verdict for model 'student', id 'q0'"):
        script.grade_choice_trio(q, replays, v)


def test_gsm8k_agreement_per_system(tmp_path):
    rows = [{"question": "How many?", "answer": "2 + 2 = <<2+2=4>>4\n#### 4",
             "systems": {"small": {"output": "2 + 2 = 4\nA: 4", "is_correct": True},
                         "big": {"output": "A: 4.5", "is_correct": True}}}]
    path = tmp_path / "dev.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    md = script.gsm8k_markdown(path)
    assert "| small | 1 | 1.0000 (1/1) |" in md and "| big | 1 | 0.0000 (0/1) |" in md
    assert "ours wrong, recorded correct: 1" in md  # 4.5 is not the integer 4


def test_a_baseline_checkout_grades_in_its_own_process(tmp_path):
    from pathlib import Path

    q, replays, v = _write(tmp_path, STUDENT)
    rows = script.grade_choice_trio(q, replays, v)
    root = Path(script.__file__).resolve().parents[1]  # this checkout, as its own baseline
    assert script.baseline_verdicts(root, q, [(g.question.id, g.output) for g in rows]) == [g.ours.correct for g in rows]
    md = script.choice_markdown("tiny", rows, [True] * len(rows))
    assert "| 2/2/1/0 | 0.4000 (2/5) | 0.6667 (2/3) |" in md  # baseline columns: all marked correct
    with pytest.raises(DataError, match="the baseline grader in"):
        script.baseline_verdicts(tmp_path, q, [("q0", "x")])  # no tourney package there
