import shlex

import pytest

from tourney.models.reference import REFERENCE_FILE, load_reference
from tourney.models.registry import parse_spec


def test_shipped_reference_pair_is_valid():
    pair = load_reference()
    assert pair.teacher.model == "Qwen/Qwen3-235B-A22B" and pair.student.model == "Qwen/Qwen3-30B-A3B"
    for m in (pair.teacher, pair.student):
        assert parse_spec(m.spec).kind == "openai"
        cmd = shlex.split(m.serve_command())
        assert cmd[:3] == ["vllm", "serve", m.model]
        assert cmd[cmd.index("--tensor-parallel-size") + 1] == str(m.tensor_parallel_size)
        assert m.weight_gib_per_gpu() < m.gpu_memory_gib
    ev = shlex.split(pair.eval_command("teacher", "runs/teacher"))
    assert ev[:2] == ["tourney", "eval"] and pair.teacher.spec in ev


def test_a_teacher_that_cannot_fit_is_refused(tmp_path):
    text = REFERENCE_FILE.read_text().replace("tensor_parallel_size = 8", "tensor_parallel_size = 2")
    bad = tmp_path / "pair.toml"
    bad.write_text(text)
    with pytest.raises(ValueError, match=r"\[teacher\].*does not fit"):
        load_reference(bad)


def test_missing_field_is_named(tmp_path):
    text = REFERENCE_FILE.read_text().replace('port = 8001\n', '')
    bad = tmp_path / "pair.toml"
    bad.write_text(text)
    with pytest.raises(ValueError, match=r"\[student\] lacks port"):
        load_reference(bad)


def test_printed_commands_work_as_printed():
    """No path relative to a developer's checkout, and the student run records the logprobs that
    routing needs."""
    pair = load_reference()
    student = shlex.split(pair.eval_command("student", "runs/student"))
    teacher = shlex.split(pair.eval_command("teacher", "runs/teacher"))
    for cmd in (student, teacher):
        data = cmd[cmd.index("--data") + 1]
        assert not data.startswith("..") and "shared" not in data
    assert student[student.index("--logprobs") + 1] == "0" and "--logprobs" not in teacher
    from click.testing import CliRunner

    from tourney.cli.main import main

    for cmd in (student, teacher):  # every flag printed is one `tourney eval` takes
        res = CliRunner().invoke(main, [*cmd[1:], "--help"])
        assert res.exit_code == 0, res.output
