"""harness.rundir: text that survives any character, one-line errors for broken run directories,
and the one identity rule (model args included) shared by every resumable command."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from tourney.cli.main import main
from tourney.harness.report import build_report, write_reports
from tourney.harness.rundir import RunDir, RunMeta, check_same_run, read_results
from tourney.harness.runner import EvalConfig, run_eval
from tourney.harness.types import DataError, SampleResult

from tests.fakes import EchoMathBackend
from tests.harness.test_runner import write_questions

LINE_BREAKERS = ["\u2028", "\u2029", "\u0085", "\x1c", "\x1d", "\x1e", "\x0b", "\x0c"]  # str.splitlines() cuts at these


def row(i: int, output: str, question: str = "q") -> SampleResult:
    return SampleResult(id=f"q{i}", question=question, type="t", sample=0, output=output, prediction="1", gold="1",
                        correct=True, latency_s=0.1, ttft_s=None, prompt_tokens=1, completion_tokens=1)


def test_outputs_with_unicode_line_separators_survive_resume_and_report(tmp_path):
    run = RunDir.start(tmp_path / "run", RunMeta(model="m", n_questions=len(LINE_BREAKERS)))
    run.append([row(i, f"before{c}after #### 1") for i, c in enumerate(LINE_BREAKERS)])
    rows = run.rows()
    assert [r.output for r in rows] == [f"before{c}after #### 1" for c in LINE_BREAKERS]
    run.compact([f"q{i}" for i in range(len(LINE_BREAKERS))])
    assert build_report(run.path)["overall"]["n"] == len(LINE_BREAKERS)
    # written readable, not escaped
    assert "\u2028" in run.results_path.read_text(encoding="utf-8")


def test_a_lone_surrogate_anywhere_in_a_row_is_escaped_not_fatal(tmp_path):
    run = RunDir.start(tmp_path / "run", RunMeta(model="m"))
    run.append([row(0, "ok #### 1", question="bad \ud800 text"), row(1, "plain #### 1")])
    rows = run.rows()
    assert rows[0].question == "bad \ud800 text" and rows[1].output == "plain #### 1"
    run.results_path.read_text(encoding="utf-8")  # valid UTF-8 on disk


@pytest.mark.parametrize("text, message", [
    ("{not json", r"run\.json: not valid JSON"),
    ('{"model": "m",\n  "x": }', r"run\.json:2: not valid JSON"),
    ("[" * 100_000, r"run\.json: JSON nested deeper than"),
    ("[1, 2]", r"run\.json: expected a JSON object .*got list"),
    ('{"model": 3}', r"run\.json: field 'model'"),
    ("\xff\xfe", r"run\.json: cannot read"),
])
def test_a_corrupted_run_json_names_the_file(tmp_path, text, message):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_bytes(text.encode("latin-1"))
    (run / "results.jsonl").write_text("")
    with pytest.raises(DataError, match=message):
        RunDir(run).meta()
    res = CliRunner().invoke(main, ["report", str(run)])
    assert res.exit_code == 2 and res.output.startswith("error: ") and "run.json" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_resuming_a_corrupted_run_json_is_one_line(tmp_path):
    data = tmp_path / "q.jsonl"
    write_questions(data, n=2)
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "run.json").write_text("[1, 2]")
    res = CliRunner().invoke(main, ["eval", "--model", "mini-student", "--data", str(data), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "run.json: expected a JSON object" in res.output


def test_out_under_a_regular_file_is_one_line(tmp_path):
    data = tmp_path / "q.jsonl"
    write_questions(data, n=2)
    (tmp_path / "file").write_text("x")
    res = CliRunner().invoke(main, ["eval", "--model", "mini-student", "--data", str(data),
                                    "--out", str(tmp_path / "file" / "run")])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and "cannot create the run directory" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere; the /sys case covers it")
def test_an_unwritable_out_is_one_line(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    with pytest.raises(DataError, match="cannot"):
        RunDir.start(locked / "run", RunMeta(model="m"))


@pytest.mark.skipif(not Path("/sys").is_dir() or os.access("/sys", os.W_OK) and os.geteuid() != 0,
                    reason="needs a read-only /sys")
def test_an_out_nobody_may_create_is_one_line():
    with pytest.raises(DataError, match=r"/sys/tourney-test-run: cannot create the run directory"):
        RunDir.start("/sys/tourney-test-run", RunMeta(model="m"))


def test_identity_holds_the_model_args_that_change_outputs(tmp_path):
    data = tmp_path / "q.jsonl"
    write_questions(data, n=3)
    out = str(tmp_path / "run")
    base = dict(model="fake", data=str(data), out=out)
    run_eval(EvalConfig(**base, model_args={"dtype": "float32", "concurrency": 4}), EchoMathBackend())
    # how fast answers come may change on resume ...
    run_eval(EvalConfig(**base, model_args={"dtype": "float32", "concurrency": 64, "timeout_s": 5}), EchoMathBackend())
    # ... what they are may not
    with pytest.raises(DataError, match=r"model_args.dtype: recorded 'float32', now 'bfloat16'"):
        run_eval(EvalConfig(**base, model_args={"dtype": "bfloat16"}), EchoMathBackend())
    with pytest.raises(DataError, match="model_args"):
        run_eval(EvalConfig(**base, model_args={"dtype": "float32", "chat_template_kwargs": {"enable_thinking": False}}),
                 EchoMathBackend())


def test_changed_data_contents_are_refused(tmp_path):
    data = tmp_path / "q.jsonl"
    write_questions(data, n=3)
    cfg = EvalConfig(model="fake", data=str(data), out=str(tmp_path / "run"))
    run_eval(cfg, EchoMathBackend())
    write_questions(data, n=4)
    with pytest.raises(DataError, match="data_sha256: recorded"):
        run_eval(cfg, EchoMathBackend())


def test_check_same_run_names_every_difference_and_missing_keys(tmp_path):
    where = tmp_path / "x.json"
    check_same_run(where, {"a": [1, 2], "b": None}, {"a": (1, 2), "b": None})  # tuples read back as lists
    with pytest.raises(DataError) as info:
        check_same_run(where, {"a": 1, "old": True}, {"a": 2, "new": "x"}, remedy="start again")
    msg = str(info.value)
    assert msg.startswith(f"{where}: this directory holds a different run (")
    assert "a: recorded 1, now 2" in msg and "new: recorded None, now 'x'" in msg and "old: recorded True, now None" in msg
    assert msg.endswith("; start again")


def test_report_reads_rows_through_the_run_dir(tmp_path):
    data = tmp_path / "q.jsonl"
    write_questions(data, n=4)
    out = tmp_path / "run"
    run_eval(EvalConfig(model="fake", data=str(data), out=str(out)), EchoMathBackend())
    meta = json.loads((out / "run.json").read_text())
    assert meta["identity"]["model_args"] == {} and meta["generation"]["samples"] == 1
    assert [r.id for r in read_results(out / "results.jsonl")] == [f"q{i}" for i in range(4)]
    assert write_reports(out)["overall"]["n"] == 4
