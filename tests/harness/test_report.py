"""harness.report: reading results.jsonl, and report files from a hand-made run directory."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tourney.harness.report import build_report, render_comparison_table, rich_comparison, write_reports
from tourney.harness.rundir import read_results
from tourney.harness.types import DataError

RUN_META = {
    "model": "hf:mini-student", "generation": {"max_tokens": 64, "temperature": 0.0, "n": 1},
    "data": "data/mini.jsonl", "data_sha256": "ab" * 32, "template": "cot",
    "package_version": "0.1.0", "started_at": "2025-01-01T00:00:00+00:00", "n_questions": 4,
}


def result(id: str, *, type: str = "arith", sample: int = 0, prediction: str | None = "1",
           gold: str = "1", latency_s: float = 1.0, error: str | None = None) -> dict:
    return {
        "id": id, "question": f"q {id}", "type": type, "sample": sample,
        "output": f"... {prediction}", "prediction": prediction, "gold": gold,
        "correct": error is None and prediction == gold, "latency_s": latency_s, "ttft_s": 0.1,
        "prompt_tokens": 12, "completion_tokens": 20, "error": error, "finish_reason": "stop",
        "token_logprobs": [-0.1, -0.2],
    }


ROWS = [
    result("1", type="arith", prediction="4", gold="4", latency_s=1.0),
    result("2", type="arith", prediction="5", gold="6", latency_s=2.0),
    result("3", type="mcq", prediction="B", gold="B", latency_s=0.5),
    result("4", type="mcq", prediction=None, gold="C", latency_s=30.0, error="timeout"),
]


def make_run(tmp_path: Path, rows: list[dict] = ROWS, name: str = "run") -> Path:
    run = tmp_path / name
    run.mkdir()
    (run / "run.json").write_text(json.dumps(RUN_META))
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_build_report_structure_and_values(tmp_path: Path) -> None:
    rep = build_report(make_run(tmp_path))
    for key in ("model", "generation", "data", "data_sha256", "template", "package_version"):
        assert rep[key] == RUN_META[key]
    assert rep["n_questions_expected"] == 4
    assert rep["overall"]["n"] == 4 and rep["overall"]["errors"] == 1
    assert rep["overall"]["accuracy"] == 0.5
    assert rep["overall"]["ci95"] == [0.150036, 0.849964]  # Wilson k=2, n=4, rounded to 6 dp
    assert list(rep["by_type"]) == ["arith", "mcq"]
    assert rep["by_type"]["mcq"]["latency_p50_s"] == 0.5  # the 30 s timeout is excluded
    assert rep["by_type"]["arith"]["tokens_per_s"] == round(40 / 3, 6)


def test_write_reports_files_and_byte_identical_json(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    write_reports(run)
    first = (run / "report.json").read_bytes()
    write_reports(run)
    assert (run / "report.json").read_bytes() == first
    # Same results in another line order: same bytes (fsum and sorted keys make it order-free).
    other = make_run(tmp_path, rows=ROWS[::-1], name="reversed")
    write_reports(other)
    assert (other / "report.json").read_bytes() == first
    assert json.loads(first)["overall"]["accuracy"] == 0.5

    md = (run / "report.md").read_text()
    assert "hf:mini-student" in md and "data/mini.jsonl" in md and "temperature=0.0" in md
    assert "| arith | 2 |" in md and "| mcq |" in md and "| overall | 4 |" in md
    assert "0.500 [0.150, 0.850]" in md

    page = (run / "report.html").read_text()
    marker = '<img src="data:image/png;base64,'
    assert page.count(marker) == 2
    assert "<style>" in page and "<link" not in page and "<script" not in page
    for chunk in page.split(marker)[1:]:
        assert base64.b64decode(chunk.split('"', 1)[0]).startswith(b"\x89PNG\r\n\x1a\n")


def test_html_escapes_data_strings(tmp_path: Path) -> None:
    run = make_run(tmp_path, rows=[result("1", type="<b>x</b>")])
    write_reports(run)
    page = (run / "report.html").read_text()
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + '{"id": "2", "sample": \n')
    with pytest.raises(DataError, match=rf"{path}:2: not valid JSON"):
        read_results(path)
    bad = dict(ROWS[0], latency_s="slow")
    path.write_text(json.dumps(ROWS[0]) + "\n\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataError, match=rf"{path}:3: field 'latency_s': Input should be a valid number"):
        read_results(path)
    missing = {k: v for k, v in ROWS[0].items() if k != "gold"}
    path.write_text(json.dumps(missing) + "\n")
    with pytest.raises(DataError, match=rf"{path}:1: field 'gold': Field required"):
        read_results(path)


def test_duplicate_id_sample_last_wins(tmp_path: Path) -> None:
    failed = result("1", prediction=None, gold="4", error="connection refused")
    retried = result("1", prediction="4", gold="4", latency_s=1.5)
    other_sample = result("1", sample=1, prediction="4", gold="4")
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [failed, other_sample, retried]))
    rows = read_results(path)
    assert [(r.id, r.sample) for r in rows] == [("1", 0), ("1", 1)]
    assert rows[0].error is None and rows[0].correct and rows[0].latency_s == 1.5


def test_missing_run_json_is_a_data_error(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    (run / "run.json").unlink()
    with pytest.raises(DataError, match="run.json: not found"):
        build_report(run)


def test_comparison_tables(tmp_path: Path) -> None:
    student = build_report(make_run(tmp_path, name="student"))
    teacher = build_report(make_run(tmp_path, rows=ROWS[:2], name="teacher"))  # no mcq
    text = render_comparison_table({"student": student, "teacher": teacher})
    lines = text.splitlines()
    assert lines[0].startswith("| type | student acc [95% CI] | student p50 s | teacher acc")
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["arith", "mcq", "overall"]
    assert "| mcq | 0.500 [0.095, 0.905] | 0.500 | - | - |" in text  # teacher lacks mcq

    from rich.console import Console

    table = rich_comparison({"student": student, "teacher": teacher})
    assert table.row_count == 3 and len(table.columns) == 5
    console = Console(record=True, width=200)
    console.print(table)
    assert "0.500 [0.095, 0.905]" in console.export_text()
