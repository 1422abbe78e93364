"""The shipped miniature student exported to GGUF answers like its transformers original, in
process and behind llama.cpp's OpenAI-compatible server on 127.0.0.1."""
import json

import pytest

from tourney.harness.agreement import compare_backends
from tourney.harness.tournament import MINI_TEST
from tourney.harness.questions import load_questions
from tourney.models.registry import load_backend
from tests.llama_server import llama_server, missing_server_modules

pytestmark = pytest.mark.slow
llama_cpp = pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def student_gguf(mini_student, tmp_path_factory):
    from tourney.models.gguf_export import export_gguf

    return export_gguf(mini_student, tmp_path_factory.mktemp("gguf") / "student.gguf")


def test_llamacpp_greedy_agrees_with_transformers(mini_student, student_gguf):
    questions = load_questions(str(MINI_TEST), limit=100)
    hf = load_backend(f"hf:{mini_student}", batch_size=50)
    gg = load_backend(f"gguf:{student_gguf}", n_threads=1)
    result = compare_backends(hf, gg, questions)
    assert result.answer_rate >= 0.95, result.disagreements


@pytest.mark.integration
@pytest.mark.skipif(bool(missing_server_modules()), reason="llama-cpp-python server extras not installed")
def test_eval_through_llama_server(student_gguf, mini_student, tmp_path):
    from click.testing import CliRunner

    from tourney.cli.main import main

    with llama_server(student_gguf, extra_args=["--n_threads", "1", "--n_threads_batch", "1"]) as server:
        out = tmp_path / "served"
        res = CliRunner().invoke(main, [
            "eval", "--model", server.spec(), "--data", str(MINI_TEST), "--limit", "30", "--max-tokens", "96",
            "--concurrency", "2", "--model-arg", 'extra_body={"repeat_penalty": 1.0}', "--out", str(out)])
        assert res.exit_code == 0, res.output
    local = tmp_path / "local"
    res = CliRunner().invoke(main, ["eval", "--model", f"hf:{mini_student}", "--data", str(MINI_TEST),
                                    "--limit", "30", "--max-tokens", "96", "--out", str(local)])
    assert res.exit_code == 0, res.output
    served_rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    local_rows = [json.loads(x) for x in (local / "results.jsonl").read_text().splitlines()]
    assert len(served_rows) == 30 and all(r["error"] is None for r in served_rows)
    assert all(r["ttft_s"] is not None and r["ttft_s"] <= r["latency_s"] for r in served_rows)
    same = sum(a["prediction"] == b["prediction"] for a, b in zip(served_rows, local_rows))
    assert same >= 0.9 * 30
