"""The issue's cases as a user meets them: three recorded outputs replayed through `tourney eval`,
each row's grading status recorded, and the report counting hedged and conflicting answers."""
from __future__ import annotations

import json

from click.testing import CliRunner

from tourney.cli.main import main

OPTIONS = ["Procurement", "Walmart", "Loudness", "Amplitude", "Pitch"]
QUESTIONS = [
    {"id": "base", "question": "Which is a retailer?", "choices": OPTIONS, "answer": "B"},
    {"id": "hedge", "question": "What sets loudness?", "choices": OPTIONS, "answer": "C"},
    {"id": "summary", "question": "What sets pitch?", "choices": OPTIONS, "answer": "E"},
]
OUTPUTS = {
    # A base model states its answer, then writes the next few-shot question and answers that.
    "base": "Walmart sells goods. The answer is (B).\n\nQuestion: Which is a process?\nOptions:\n"
            "A. Procurement\nB. Walmart\nAnswer: Let's think step by step. The answer is (A).",
    # A chat model that names two options: never credit, whatever the gold.
    "hedge": "Both matter here. The answer is (C) or (D).",
    # A chat model that goes on to "summarise" other answers after its own.
    "summary": "Pitch is frequency. The answer is (E).\n\nNow, let's summarise all the answers:\nThe answer is (D).",
}


def test_replayed_outputs_are_read_as_the_issue_asks(tmp_path):
    data, replay, out = tmp_path / "q.jsonl", tmp_path / "replay.jsonl", tmp_path / "run"
    data.write_text("".join(json.dumps(r) + "\n" for r in QUESTIONS))
    replay.write_text("".join(json.dumps({"id": k, "output": v}) + "\n" for k, v in OUTPUTS.items()))
    res = CliRunner().invoke(main, ["eval", "--model", f"replay:{replay}", "--data", str(data), "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = {r["id"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    got = {k: (r["prediction"], r["correct"], r["status"]) for k, r in rows.items()}
    assert got == {"base": ("B", True, "answered"), "hedge": (None, False, "hedge"),
                   "summary": ("E", True, "conflicting")}
    overall = json.loads((out / "report.json").read_text())["overall"]
    assert (overall["unparsed"], overall["hedged"], overall["conflicting"]) == (0, 1, 1)
    assert "1 hedged (named several options: never correct), 1 conflicting" in (out / "report.md").read_text()
    assert "1 hedged" in (out / "report.html").read_text()


def test_rows_written_before_the_status_still_load(tmp_path):
    from tourney.harness.metrics import summarize_group
    from tourney.harness.rundir import read_results

    row = {"id": "q", "question": "?", "type": "t", "sample": 0, "output": "no idea", "prediction": None,
           "gold": "B", "correct": False, "latency_s": 0.1, "ttft_s": None, "prompt_tokens": 1,
           "completion_tokens": 1}
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(row) + "\n")
    rows = read_results(path)
    assert rows[0].status is None
    g = summarize_group(rows)
    assert (g.unparsed, g.hedged, g.conflicting) == (1, 0, 0)
