"""Stop sequences everywhere: `--stop` and lm-eval's `--gen_kwargs until=` reach a server's request,
and recorded outputs are cut as a live run would have been, the raw output kept in the row."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tourney.cli.main import main
from tourney.harness.rundir import read_results
from tourney.models.registry import load_backend
from tourney.models.types import GenConfig
from tests.models.test_openai_backend import server  # noqa: F401 -- the fake OpenAI server fixture

# A base model that states its answer, then writes the next few-shot question and answers that too.
RUN_ON = ("B is blue. The answer is (B).\n\nQuestion: What colour is grass?\nOptions:\nA. green\nB. pink\n"
          "Answer: Let's think step by step. The answer is (A).")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_replay_cuts_recorded_outputs_and_keeps_the_raw_one(tmp_path: Path) -> None:
    replay = write(tmp_path / "rec.jsonl", [{"id": "a", "output": RUN_ON}, {"id": "b", "output": "Plain. (A)"}])
    backend = load_backend(f"replay:{replay}")
    asked = [type("Q", (), {"id": i, "question": ""})() for i in ("a", "b")]
    [[cut], [plain]] = backend.generate_questions(asked, GenConfig(stop=("\n\nQuestion:", "Q:")))
    assert cut.text == "B is blue. The answer is (B)." and cut.finish_reason == "stop"
    assert cut.raw_text == RUN_ON and cut.cut_at == len(cut.text)
    assert plain.text == "Plain. (A)" and plain.raw_text is None and plain.cut_at is None
    [[again]] = backend.generate_questions(asked[:1], GenConfig())
    assert again.text == RUN_ON  # the recording itself is never altered


def test_eval_reads_a_replay_as_the_live_run_would_have(tmp_path: Path) -> None:
    data = write(tmp_path / "q.jsonl", [
        {"id": "a", "question": "What colour is the sky?", "choices": ["red", "blue"], "answer": "B"},
        {"id": "b", "question": "What colour is snow?", "choices": ["white", "black"], "answer": "A"}])
    replay = write(tmp_path / "rec.jsonl", [{"id": "a", "output": RUN_ON},
                                            {"id": "b", "output": "Snow is white. The answer is (A)."}])
    out = tmp_path / "run"
    res = run("eval", "--model", f"replay:{replay}", "--data", data, "--out", out, "--stop", "\n\nQuestion:")
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "run.json").read_text())
    assert meta["identity"]["stop"] == ["\n\nQuestion:"]
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert rows[0]["output"] == "B is blue. The answer is (B)." and rows[0]["raw_output"] == RUN_ON
    assert rows[0]["cut_at"] == len(rows[0]["output"]) and rows[0]["prediction"] == "B" and rows[0]["correct"]
    assert "raw_output" not in rows[1] and "cut_at" not in rows[1]  # uncut rows are as they always were
    assert [r.cut_at for r in read_results(out / "results.jsonl")] == [len(rows[0]["output"]), None]
    # A resumed run with other stop sequences is another run.
    res = run("eval", "--model", f"replay:{replay}", "--data", data, "--out", out, "--stop", "Q:")
    assert res.exit_code == 2 and "stop" in res.output


def test_old_rows_without_the_cut_fields_still_load(tmp_path: Path) -> None:
    row = {"id": "a", "question": "q", "type": "t", "sample": 0, "output": "x", "prediction": None, "gold": "1",
           "correct": False, "latency_s": 0.1, "ttft_s": None, "prompt_tokens": 1, "completion_tokens": 1}
    path = write(tmp_path / "results.jsonl", [row])
    [loaded] = read_results(path)
    assert loaded.raw_output is None and loaded.cut_at is None and loaded.to_dict() == {
        **row, "error": None, "finish_reason": None, "token_logprobs": None, "choice_logliks": None, "status": None}


@pytest.mark.parametrize("flags, sent", [
    (["--stop", "Q:", "--stop", "</s>"], ["Q:", "</s>"]),
    (["--gen_kwargs", 'until=["Q:","</s>"],temperature=0'], ["Q:", "</s>"]),
    (["--gen_kwargs", "until=Q:"], ["Q:"]),
    (["--template", "gsm8k_cot"], ["Q:", "</s>", "<|im_end|>"]),
    ([], ["\nQuestion:"]),
])
def test_stop_sequences_reach_the_server(tmp_path: Path, server, flags: list[str], sent: list[str]) -> None:  # noqa: F811
    url, state = server
    data = write(tmp_path / "q.jsonl", [{"id": "a", "question": "2+2?", "answer": "4"}])
    res = run("eval", "--model", f"openai:ok@{url}", "--data", data, "--out", tmp_path / "run", *flags)
    assert res.exit_code == 0, res.output
    assert [b["stop"] for b in state.bodies if "stop" in b] == [sent]


def test_until_and_stop_together_is_an_error(tmp_path: Path) -> None:
    data = write(tmp_path / "q.jsonl", [{"id": "a", "question": "2+2?", "answer": "4"}])
    res = run("eval", "--model", "replay:x.jsonl", "--data", data, "--out", tmp_path / "run",
              "--gen_kwargs", "until=Q:", "--stop", "A:")
    assert res.exit_code == 2 and "until" in res.output and "--stop" in res.output
