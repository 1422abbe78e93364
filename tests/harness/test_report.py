"""harness.report: reading results.jsonl, and report files from a hand-made run directory."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tourney.harness.report import build_report, write_reports
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
    assert "| arith (50%) | 2 |" in md and "| mcq (50%) |" in md and "| overall | 4 |" in md
    assert "0.500 [0.150, 0.850]" in md

    page = (run / "report.html").read_text()
    marker = '<img src="data:image/png;base64,'
    assert page.count(marker) == 3  # accuracy, latency, accuracy against latency
    # Self-contained: no script, nothing fetched from anywhere (the icon is an empty data: URL).
    assert "<style>" in page and "<script" not in page and "http" not in page.replace("http-equiv", "")
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


def test_types_in_natural_order_with_shares(tmp_path: Path) -> None:
    # The miniature generator's order, whatever the line order and names' sort order.
    rows = [result(f"test-{i:05d}", type=t) for i, t in
            enumerate(["long_chain", "one_step", "one_step", "two_step", "one_step", "three_step"])]
    rep = build_report(make_run(tmp_path, rows=rows[::-1]))
    assert rep["type_order"] == ["one_step", "two_step", "three_step", "long_chain"]
    md = (tmp_path / "run" / "report.md")
    write_reports(tmp_path / "run")
    labels = [line.split("|")[1].strip() for line in md.read_text().splitlines() if line.startswith("| ")][1:]
    assert labels == ["one_step (50%)", "two_step (17%)", "three_step (17%)", "long_chain (17%)", "overall"]
    # The mixed miniature tournament: knowledge by tier, then arithmetic easy to hard.
    rows = [result(f"t{i}", type=t) for i, t in
            enumerate(["three_step", "common", "rare", "reasoning", "one_step", "obscure", "common"])]
    assert build_report(make_run(tmp_path, rows=rows, name="mixed"))["type_order"] == [
        "common", "reasoning", "rare", "obscure", "one_step", "three_step"]
    # Types no generator knows: first appearance in natural id order (q2 before q10), not by name.
    rows = [result("q10", type="alpha"), result("q2", type="zeta"), result("q3", type="alpha")]
    assert build_report(make_run(tmp_path, rows=rows, name="other"))["type_order"] == ["zeta", "alpha"]


def test_failures_are_shown_escaped_and_bounded(tmp_path: Path) -> None:
    hostile = '</pre><script>alert("x")</script><img src=x onerror=alert(1)>'
    rows = []
    for i in range(6):
        r = result(f"q{i}", type="arith", prediction="5", gold="4")
        r["output"] = hostile + " step" * (3000 if i == 0 else 1)
        rows.append(r)
    rows.append(result("q9", type="mcq", prediction=None, gold="B", error="timeout"))
    rows.append(result("q8", type="mcq", prediction="B", gold="B"))  # correct: not a failure
    run = make_run(tmp_path, rows=rows)
    rep = write_reports(run)
    fails = rep["failures"]
    assert [(f["id"], f["type"]) for f in fails] == [("q0", "arith"), ("q1", "arith"), ("q2", "arith"), ("q9", "mcq")]
    assert fails[0]["truncated"] and len(fails[0]["output"]) == 1200 and not fails[1]["truncated"]
    assert fails[3]["error"] == "timeout" and fails[3]["prediction"] is None
    page = (run / "report.html").read_text()
    assert "<script" not in page and "<img src=x" not in page and "</pre><script" not in page
    assert "&lt;/pre&gt;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "arith (75%): 3 shown of 6 wrong" in page and "error: timeout" in page
    assert page.count('<div class="failure">') == 4


def test_hostile_type_names_draw_as_written(tmp_path: Path) -> None:
    # "$...$" is matplotlib mathtext: an invalid one once ended the report in a parse error.
    rows = [result("1", type=r"a $\frac{$ b"), result("2", type="$\\undefined$"), result("3", type="t\x1b[31m")]
    run = make_run(tmp_path, rows=rows)
    rep = write_reports(run)
    assert set(rep["by_type"]) == {r"a $\frac{$ b", "$\\undefined$", "t\x1b[31m"}
    assert (run / "report.html").read_text().count("data:image/png;base64,") == 3
