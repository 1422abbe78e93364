import json

import pytest

from tourney.harness.runner import EvalConfig, run_eval
from tourney.harness.types import DataError
from tests.fakes import EchoMathBackend


def write_questions(path, n=10):
    rows = [{"id": f"q{i}", "question": f"Ann has {i + 1} cats. How many cats?", "answer": str(i + 1 if i % 3 else 99),
             "type": "even" if i % 2 == 0 else "odd"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_writes_results_and_reports(tmp_path):
    data = tmp_path / "q.jsonl"
    write_questions(data)
    out = tmp_path / "run"
    report = run_eval(EvalConfig(model="fake", data=str(data), out=str(out)), EchoMathBackend(batch_size=3))
    rows = read_rows(out / "results.jsonl")
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(10)]
    # gold is 99 for i % 3 == 0 (q0, q3, q6, q9), which the echo backend gets wrong
    assert [r["correct"] for r in rows] == [i % 3 != 0 for i in range(10)]
    assert report["overall"]["n"] == 10 and report["overall"]["accuracy"] == pytest.approx(0.6)
    assert set(report["by_type"]) == {"even", "odd"}
    for name in ("report.json", "report.md", "report.html", "run.json"):
        assert (out / name).exists()


def test_resume_skips_finished_batches_and_regenerates_torn_ones_whole(tmp_path):
    data = tmp_path / "q.jsonl"
    write_questions(data)
    out = tmp_path / "run"
    cfg = EvalConfig(model="fake", data=str(data), out=str(out))
    full = run_eval(cfg, EchoMathBackend(batch_size=4))
    complete = (out / "results.jsonl").read_text()
    # Simulate a kill: keep the first chunk and a half-written line of the second.
    lines = complete.splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(lines[:4]) + lines[4][:20])
    backend = EchoMathBackend(batch_size=4)
    resumed = run_eval(cfg, backend)
    assert len(backend.calls) == 2  # batches 2 and 3 only
    assert len(backend.calls[0]) == 4  # the torn batch is regenerated whole, same composition
    assert (out / "results.jsonl").read_text() == complete
    assert resumed["overall"] == full["overall"]


def test_failed_requests_are_recorded_then_retried_on_resume(tmp_path):
    data = tmp_path / "q.jsonl"
    write_questions(data, n=6)
    out = tmp_path / "run"
    cfg = EvalConfig(model="fake", data=str(data), out=str(out))
    first = run_eval(cfg, EchoMathBackend(fail_on={"has 2 cats"}, batch_size=2))
    assert first["overall"]["errors"] == 1
    failed = [r for r in read_rows(out / "results.jsonl") if r["error"]]
    assert [r["id"] for r in failed] == ["q1"] and failed[0]["correct"] is False
    backend = EchoMathBackend(batch_size=2)
    second = run_eval(cfg, backend)
    assert len(backend.calls) == 1 and "has 2 cats" in backend.calls[0][1]
    assert second["overall"]["errors"] == 0
    rows = read_rows(out / "results.jsonl")
    assert len(rows) == 6 and all(r["error"] is None for r in rows)


def test_resuming_with_other_settings_is_refused(tmp_path):
    data = tmp_path / "q.jsonl"
    write_questions(data, n=3)
    out = tmp_path / "run"
    run_eval(EvalConfig(model="fake", data=str(data), out=str(out)), EchoMathBackend())
    with pytest.raises(DataError, match="max_tokens"):
        run_eval(EvalConfig(model="fake", data=str(data), out=str(out), max_tokens=7), EchoMathBackend())
    # --overwrite starts afresh
    run_eval(EvalConfig(model="fake", data=str(data), out=str(out), max_tokens=7), EchoMathBackend(), overwrite=True)


def test_samples_need_temperature():
    with pytest.raises(ValueError, match="temperature"):
        EvalConfig(model="m", data="d", out="o", samples=3)


def test_multiple_samples_are_rows(tmp_path):
    data = tmp_path / "q.jsonl"
    write_questions(data, n=2)
    out = tmp_path / "run"
    report = run_eval(EvalConfig(model="fake", data=str(data), out=str(out), samples=3, temperature=0.7),
                      EchoMathBackend())
    rows = read_rows(out / "results.jsonl")
    assert [(r["id"], r["sample"]) for r in rows] == [(f"q{i}", s) for i in range(2) for s in range(3)]
    assert report["overall"]["n"] == 6
