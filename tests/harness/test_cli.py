"""The CLI end to end on real files: replay outputs over GSM8K, and one-line errors for bad input."""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tourney.cli.main import main

GSM8K = Path(__file__).resolve().parents[3] / "shared" / "data" / "gsm8k"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.skipif(not (GSM8K / "test.jsonl").exists(), reason="../shared/data/gsm8k is absent")
def test_eval_gsm8k_with_replay(tmp_path):
    lines = (GSM8K / "test.jsonl").read_text().splitlines()[:40]
    replay = tmp_path / "replay.jsonl"
    with replay.open("w") as f:
        for i, line in enumerate(lines):
            row = json.loads(line)
            # Half the recorded outputs carry the gold solution, half a wrong final answer.
            out = row["answer"] if i % 2 == 0 else "I think it is 123456789."
            f.write(json.dumps({"question": row["question"], "output": out}) + "\n")
    out = tmp_path / "run"
    res = run("eval", "--model", f"replay:{replay}", "--data", GSM8K / "test.jsonl", "--limit", 40, "--out", out)
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 40
    assert [r["correct"] for r in rows] == [i % 2 == 0 for i in range(40)]
    report = json.loads((out / "report.json").read_text())
    assert report["overall"]["accuracy"] == 0.5
    assert set(report["by_type"]) <= {"short", "medium", "long", "very_long"}
    # `tourney report` re-renders the same report.json from results.jsonl
    before = (out / "report.json").read_text()
    (out / "report.json").unlink()
    assert run("report", out).exit_code == 0
    assert (out / "report.json").read_text() == before


def one_line_error(res, *fragments):
    assert res.exit_code == 2
    msg = res.output.strip().splitlines()[-1]
    assert msg.startswith("error:")
    for f in fragments:
        assert f in msg, msg


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"id": "a", "question": "q?", "answer": "1"}\n{"id": "b", "question": \n')
    one_line_error(run("eval", "--model", "mini-student", "--data", data, "--out", tmp_path / "o"), "bad.jsonl:2")


def test_missing_field_names_it(tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text('{"id": "a", "question": "q?"}\n')
    one_line_error(run("eval", "--model", "mini-student", "--data", data, "--out", tmp_path / "o"), "q.jsonl:1", "answer")


def test_empty_file(tmp_path):
    data = tmp_path / "empty.jsonl"
    data.write_text("")
    one_line_error(run("eval", "--model", "mini-student", "--data", data, "--out", tmp_path / "o"), "empty.jsonl")


def test_duplicate_ids(tmp_path):
    data = tmp_path / "dup.jsonl"
    data.write_text('{"id": "a", "question": "q?", "answer": "1"}\n{"id": "a", "question": "r?", "answer": "2"}\n')
    one_line_error(run("eval", "--model", "mini-student", "--data", data, "--out", tmp_path / "o"), "dup.jsonl", "'a'")


def test_unknown_model_spec(tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text('{"id": "a", "question": "q?", "answer": "1"}\n')
    one_line_error(run("eval", "--model", "bogus:thing", "--data", data, "--out", tmp_path / "o"), "bogus:thing")


def test_unreachable_server(tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text('{"id": "a", "question": "q?", "answer": "1"}\n')
    res = run("eval", "--model", "openai:m@http://127.0.0.1:9/v1", "--data", data, "--out", tmp_path / "o")
    one_line_error(res, "http://127.0.0.1:9/v1")


def test_missing_replay_question_is_named(tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text('{"id": "a", "question": "q?", "answer": "1"}\n{"id": "b", "question": "r?", "answer": "2"}\n')
    replay = tmp_path / "r.jsonl"
    replay.write_text('{"id": "a", "output": "#### 1"}\n')
    res = run("eval", "--model", f"replay:{replay}", "--data", data, "--out", tmp_path / "o", "--batch-size", 1)
    one_line_error(res, "'b'")
    # the answer computed before the failure is kept
    rows = (tmp_path / "o" / "results.jsonl").read_text().splitlines()
    assert len(rows) == 1 and json.loads(rows[0])["id"] == "a"


def test_progress_bar_shows_requests_in_flight_and_rate():
    from rich.console import Console

    from tourney.cli.common import progress_bar

    bar, update = progress_bar("eval x")
    update(0, 10, 4)
    update(3, 10, 4)
    console = Console(record=True, width=160)
    console.print(bar.get_renderable())
    text = console.export_text()
    assert "3/10" in text and "4 in flight" in text and "q/s" in text and "eta" in text
    update(5, 10)  # in-process backends count no requests: no "in flight"
    console.print(bar.get_renderable())
    assert console.export_text().count("in flight") == 0
