"""Flags users already type (lm-eval's spellings), backend options checked where they are declared,
and errors that say what is wrong in one line while bugs keep their traceback."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tourney.cli.common import parse_key_values, split_pairs
from tourney.cli.main import main
from tourney.errors import ConfigError
from tourney.harness.tournament import MINI_SPLITS

DEV = MINI_SPLITS / "dev.jsonl"


def invoke(*args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], **kw)


@pytest.fixture
def replay(tmp_path) -> Path:
    """Recorded outputs for the first 4 dev questions: two right, one wrong, one with no answer."""
    # The first 4 open-ended dev questions (the mixed dev split starts with multiple choice),
    # written where the tests read them: tmp_path / "dev4.jsonl".
    rows = [r for r in map(json.loads, DEV.read_text().splitlines()) if "choices" not in r][:4]
    (tmp_path / "dev4.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    outs = [f"#### {rows[0]['answer']}", f"#### {rows[1]['answer']}", "#### 100000", "no idea"]
    path = tmp_path / "replay.jsonl"
    path.write_text("".join(json.dumps({"id": r["id"], "output": o}) + "\n" for r, o in zip(rows, outs)))
    return path


def test_comma_form_and_json_values():
    assert split_pairs('a=1,b=x, c={"d": 1, "e": [2, 3]}') == ["a=1", "b=x", 'c={"d": 1, "e": [2, 3]}']
    assert parse_key_values(("device=cpu,batch_size=2", "extra_body={\"x\": 1, \"y\": 2}")) == {
        "device": "cpu", "batch_size": 2, "extra_body": {"x": 1, "y": 2}}
    with pytest.raises(ConfigError, match="given twice"):
        parse_key_values(("a=1", "a=2"))
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_key_values(("a=1,oops",))


def test_lm_eval_spellings_run(replay, tmp_path):
    out = tmp_path / "run"
    res = invoke("eval", "--model", f"replay:{replay}", "--data", tmp_path / "dev4.jsonl", "--limit", 4, "--output_path", out,
                 "--log_samples", "--gen_kwargs", "max_gen_toks=64,do_sample=false")
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert report["overall"]["n"] == 4 and report["overall"]["unparsed"] == 1
    assert "unparsed answers**: 1 of 4 answered samples" in (out / "report.md").read_text()
    meta = json.loads((out / "run.json").read_text())
    assert meta["generation"]["max_tokens"] == 64 and meta["generation"]["temperature"] == 0.0


@pytest.mark.parametrize("args, words", [
    (["--gen_kwargs", "top_k=5"], "--gen_kwargs 'top_k' is not supported; known: temperature"),
    (["--gen_kwargs", "temperature=0.5", "--temperature", "0.2"], "both given"),
    (["--model_args", "chat=true"], "unknown option 'chat'; valid options: none"),
    (["--model-arg", "oops"], "expected key=value"),
    (["--system-prompt", "Be brief."], "a system prompt is part of chat messages"),
    (["--template", "nonsense"], "unknown prompt template 'nonsense'"),
])
def test_bad_eval_options_are_one_line(args, words, replay, tmp_path):
    res = invoke("eval", "--model", f"replay:{replay}", "--data", tmp_path / "dev4.jsonl", "--limit", 4, "--out", tmp_path / "r",
                 *args)
    assert res.exit_code == 2, res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and words in last, res.output


@pytest.mark.parametrize("arg, words", [
    ("batch_size=0", "option 'batch_size': Input should be greater than or equal to 1 (got 0)"),
    ("devcie=cpu", "unknown option 'devcie'; valid options: device, dtype, batch_size, chat"),
    ("device=nonsense", "option 'device': expected auto, cpu, mps, cuda or cuda:N"),
    ("dtype=fp8", "option 'dtype': Input should be 'auto'"),
])
def test_hf_backend_options_are_checked(arg, words, tmp_path):
    from tourney.models.registry import MINI_DIR

    res = invoke("eval", "--model", f"hf:{MINI_DIR / 'student'}", "--data", DEV, "--limit", 1,
                 "--out", tmp_path / "r", "--model-arg", arg)
    assert res.exit_code == 2 and words in res.output, res.output


@pytest.mark.parametrize("arg, words", [
    ("timeout=3", "unknown option 'timeout'; valid options: concurrency, timeout_s"),
    ("concurrency=abc", "option 'concurrency': Input should be a valid integer"),
    ("extra_body=notjson", "option 'extra_body': Input should be a valid dictionary (got 'notjson')"),
    ("extra_body=[1,2]", "option 'extra_body': Input should be a valid dictionary (got [1, 2])"),
])
def test_openai_backend_options_are_checked_before_any_request(arg, words, tmp_path):
    res = invoke("eval", "--model", "openai:m@http://127.0.0.1:9/v1", "--data", DEV, "--limit", 1,
                 "--out", tmp_path / "r", "--model-arg", arg)
    assert res.exit_code == 2 and words in res.output, res.output


def test_system_prompt_reaches_the_chat_messages(tmp_path):
    from tests.fakes import EchoMathBackend
    from tourney.harness.questions import load_questions
    from tourney.harness.runner import EvalConfig, run_eval

    backend = EchoMathBackend()
    cfg = EvalConfig(model="fake", data=str(DEV), out=str(tmp_path / "r"), limit=2, chat=True,
                     system_prompt="You are terse.")
    run_eval(cfg, backend, questions=load_questions(DEV, limit=2))
    first = ast.literal_eval(backend.calls[0][0])  # the fake records str() of the message list
    assert first[0] == {"role": "system", "content": "You are terse."} and first[1]["role"] == "user"


def test_a_bug_keeps_its_traceback_and_debug_shows_ours(monkeypatch, tmp_path):
    import tourney.cli.common as common
    import tourney.harness.regress as regress

    def bug(*_a, **_k):
        raise ValueError("range() arg 3 must not be zero")

    monkeypatch.setattr(regress, "compare_runs", bug)
    (tmp_path / "a").mkdir()
    res = invoke("regress", tmp_path / "a", tmp_path / "a")
    assert res.exit_code == 1 and isinstance(res.exception, ValueError)  # not dressed up as bad input
    monkeypatch.setitem(common.DEBUG, "on", False)
    res = invoke("--debug", "eval", "--model", "nonsense:x", "--data", DEV, "--out", tmp_path / "r")
    assert res.exit_code == 1 and type(res.exception).__name__ == "BackendError"
    monkeypatch.setitem(common.DEBUG, "on", False)
    res = invoke("eval", "--model", "nonsense:x", "--data", DEV, "--out", tmp_path / "r")
    assert res.exit_code == 2 and res.output.startswith("error: unknown model spec")


def _commands(group: click.Group, prefix: str = ""):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", cmd


def test_every_option_has_a_help_line():
    missing = [f"{name} {p.opts[0]}" for name, cmd in _commands(main) for p in cmd.params
               if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert not missing, missing


def test_eval_help_is_grouped_and_documents_logprobs():
    res = invoke("eval", "--help")
    for title in ("Model and data:", "Prompting:", "Generation:", "Throughput:", "Run folder:"):
        assert title in res.output
    text = " ".join(res.output.split())
    assert "0 = each chosen token's logprob" in text and "[default: none recorded]" in text
