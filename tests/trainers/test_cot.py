"""Teacher CoT generation through the harness run loop: fake backend, real tiny model, resumption."""
import json
from dataclasses import dataclass, field

import pytest
from click.testing import CliRunner

from tourney.cli.main import main
from tourney.harness.types import DataError
from tourney.models.registry import load_backend
from tourney.models.types import Backend, Capabilities, GenConfig, Generation
from tests.fakes import EchoMathBackend
from tourney.trainers.cot import CoTConfig, generate_cot, load_cot_questions, mean_logprob, read_cot


def write_questions(path, n=6, answered=True):
    rows = []
    for i in range(n):
        row = {"id": f"q{i}", "question": f"Ann has {i + 1} cats. How many cats?", "type": "t"}
        if answered:
            row["answer"] = str(i + 1 if i % 3 else 99)  # q0 and q3 are answered wrongly by the echo
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@dataclass
class ThinkingBackend(Backend):
    """A reasoning model: thinks (with a wrong number inside the thinking), then answers.
    In-process, `batch_size` prompts per call."""

    spec: str = "fake:think"
    calls: list = field(default_factory=list)
    batch_size: int = 16

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(batch_size=self.batch_size)

    def generate(self, prompts, cfg: GenConfig):
        self.calls.append(len(prompts))
        return [[Generation(text=f"<think>maybe 5? no.</think>The answer is {s + 1}.", finish_reason="stop",
                            token_logprobs=[-0.5, -1.5] if cfg.logprobs is not None else None,
                            prompt_tokens=7, completion_tokens=2 + s) for s in range(cfg.n)] for _ in prompts]

    def score_choices(self, prompts, choices):
        return [[0.0] * len(c) for c in choices]

    def close(self):
        pass


def test_cot_rows_from_fake_backend(tmp_path):
    data = tmp_path / "q.jsonl"
    write_questions(data)
    path = generate_cot(CoTConfig(model="fake", data=str(data), out=str(tmp_path / "run"), batch_size=4),
                        EchoMathBackend())
    rows = read_lines(path)
    assert [(r["id"], r["sample"]) for r in rows] == [(f"q{i}", 0) for i in range(6)]
    assert set(rows[0]) == {"id", "question", "type", "gold", "output", "answer_text", "prediction", "correct",
                            "prompt_tokens", "completion_tokens", "mean_logprob", "sample", "error"}
    assert [r["correct"] for r in rows] == [i % 3 != 0 for i in range(6)]
    assert rows[1]["gold"] == "2" and rows[1]["prediction"] == "2" and rows[1]["mean_logprob"] is None
    assert (tmp_path / "run" / "results.jsonl").exists()  # the raw record stays beside it
    assert [r.id for r in read_cot(path)] == [f"q{i}" for i in range(6)]


def test_thinking_kept_for_training_stripped_for_scoring(tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"id": "a", "question": "Two?", "answer": "1"}) + "\n")
    cfg = CoTConfig(model="fake", data=str(data), out=str(tmp_path / "run"), samples=2, temperature=0.7)
    [r0, r1] = read_lines(generate_cot(cfg, ThinkingBackend()))
    assert r0["output"].startswith("<think>maybe 5?") and r0["answer_text"] == "The answer is 1."
    assert r0["prediction"] == "1" and r0["correct"] is True  # the 5 inside the thinking never counts
    assert r1["prediction"] == "2" and r1["correct"] is False
    assert r0["mean_logprob"] == pytest.approx(-1.0) and r1["completion_tokens"] == 3


def test_logprobs_none_is_passed_through(tmp_path):
    data = tmp_path / "q.jsonl"
    write_questions(data, n=1)
    cfg = CoTConfig(model="fake", data=str(data), out=str(tmp_path / "run"), logprobs=None)
    assert read_lines(generate_cot(cfg, ThinkingBackend()))[0]["mean_logprob"] is None


def test_unlabeled_questions_have_no_gold(tmp_path):
    data = tmp_path / "q.jsonl"
    write_questions(data, n=2, answered=False)
    assert [q.answer for q in load_cot_questions(str(data))] == ["", ""]
    rows = read_lines(generate_cot(CoTConfig(model="fake", data=str(data), out=str(tmp_path / "run")),
                                   EchoMathBackend()))
    assert [(r["gold"], r["correct"], r["prediction"]) for r in rows] == [(None, None, "1"), (None, None, "2")]


def test_unlabeled_loader_keeps_harness_checks(tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text('{"id": "a", "question": "x"}\n{"id": "a", "question": "y"}\n')
    with pytest.raises(DataError, match=r"q.jsonl:2: field 'id': duplicate"):
        load_cot_questions(str(data))
    data.write_text('{"id": "a", "question": 3}\n')
    with pytest.raises(DataError, match=r"q.jsonl:1: field 'question'"):
        load_cot_questions(str(data))


def test_kill_and_resume_duplicates_nothing(tmp_path):
    data = tmp_path / "q.jsonl"
    write_questions(data, n=6)
    out = tmp_path / "run"
    cfg = CoTConfig(model="fake", data=str(data), out=str(out), samples=2, temperature=0.5, batch_size=2)
    full = generate_cot(cfg, ThinkingBackend(batch_size=2)).read_text()
    # A kill after the first batch, in the middle of writing the second; cot.jsonl not yet written.
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(lines[:4]) + lines[4][:30])
    (out / "cot.jsonl").unlink()
    backend = ThinkingBackend(batch_size=2)
    resumed = generate_cot(cfg, backend).read_text()
    assert backend.calls == [2, 2]  # batches 2 and 3 only, the torn one whole
    assert resumed == full
    keys = [(r["id"], r["sample"]) for r in map(json.loads, resumed.splitlines())]
    assert len(keys) == len(set(keys)) == 12
    # Running again over a finished directory generates nothing and changes nothing.
    again = ThinkingBackend(batch_size=2)
    assert generate_cot(cfg, again).read_text() == full and again.calls == []


def test_config_checks():
    with pytest.raises(ValueError, match="temperature"):
        CoTConfig(model="m", data="d", out="o", samples=4)
    with pytest.raises(ValueError, match="batch_size"):
        CoTConfig(model="m", data="d", out="o", batch_size=0)


def test_mean_logprob():
    assert mean_logprob([-1.0, -2.0, -3.0]) == pytest.approx(-2.0)
    assert mean_logprob([]) is None and mean_logprob(None) is None


def test_real_tiny_model(tmp_path, tiny_checkpoint):
    data = tmp_path / "q.jsonl"
    write_questions(data, n=6)
    cfg = CoTConfig(model=f"hf:{tiny_checkpoint}", data=str(data), out=str(tmp_path / "run"), max_tokens=8,
                    limit=4, batch_size=4)
    backend = load_backend(cfg.model, batch_size=4)
    rows = read_lines(generate_cot(cfg, backend))
    assert [r["id"] for r in rows] == ["q0", "q1", "q2", "q3"]
    for r in rows:
        assert 1 <= r["completion_tokens"] <= 8 and r["prompt_tokens"] > 5
        assert isinstance(r["mean_logprob"], float) and r["mean_logprob"] <= 0  # logprobs=0 by default


def test_cli_generate_with_replay(tmp_path):
    data = tmp_path / "q.jsonl"
    write_questions(data, n=3)
    replay = tmp_path / "replay.jsonl"
    replay.write_text("".join(json.dumps({"id": f"q{i}", "outputs": [f"#### {i + 1}", "#### 0"],
                                          "token_logprobs": [[-0.1], [-2.0]], "completion_tokens": 1}) + "\n"
                              for i in range(3)))
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["distill", "generate", "--teacher", f"replay:{replay}", "--data", str(data),
                                    "--out", str(out), "--samples", "2", "--temperature", "0.8"])
    assert res.exit_code == 0, res.output
    rows = read_lines(out / "cot.jsonl")
    assert [(r["id"], r["sample"], r["correct"]) for r in rows] == [
        ("q0", 0, False), ("q0", 1, False), ("q1", 0, True), ("q1", 1, False), ("q2", 0, True), ("q2", 1, False)]
    assert rows[0]["mean_logprob"] == pytest.approx(-0.1)
    bad = CliRunner().invoke(main, ["distill", "generate", "--teacher", f"replay:{replay}", "--data", str(data),
                                    "--out", str(out), "--samples", "2"])
    assert bad.exit_code == 2 and "temperature" in bad.output
