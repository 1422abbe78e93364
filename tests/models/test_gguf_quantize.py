"""Quantized GGUF export through llama.cpp's own quantizer, on the shipped miniature pair.

Every --dtype the command lists is written for both shipped models; llama.cpp loads each file and
answers a question with it; what llama.cpp stored in place of the requested type (the miniature's
rows of 64/128 values fit no 256-value K-quant block) is read back from the file per tensor and
is exactly what the file's metadata and the command's output say.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tourney.harness.pipeline import Prompting, predict
from tourney.harness.questions import load_questions
from tourney.harness.tournament import MINI_TEST
from tourney.models.gguf_quantize import QUANT_TYPES, REQUESTED_KEY, SUBSTITUTED_KEY, export_quantized, tensor_types
from tourney.models.registry import load_backend
from tourney.models.types import GenConfig

gguf = pytest.importorskip("gguf")
pytest.importorskip("llama_cpp")

LISTED = ("f32", "f16", "q8_0", "q5_0", "q4_0", "q4_k_m")


@pytest.fixture(scope="module")
def question():
    # an arithmetic question: the answer is a worked solution, so the model must run for real
    return next(q for q in load_questions(str(MINI_TEST), limit=50) if not q.is_multiple_choice)


@pytest.mark.parametrize("model", ["mini-teacher", "mini-student"])
def test_every_listed_format_exports_loads_and_answers(model: str, tmp_path: Path, question) -> None:
    from tourney.models.gguf_export import export_gguf
    from tourney.models.registry import ALIASES

    ckpt = ALIASES[model].removeprefix("hf:")
    sizes = {}
    for dtype in LISTED:
        out = tmp_path / f"{dtype}.gguf"
        if dtype in QUANT_TYPES:
            result = export_quantized(ckpt, out, dtype)
            assert result.path == out and result.size_bytes == out.stat().st_size
            recorded = gguf.GGUFReader(str(out)).get_field(SUBSTITUTED_KEY).contents()
            assert recorded.splitlines() == [s.line() for s in result.substituted]  # "" when none
        else:
            export_gguf(ckpt, out, dtype=dtype)
        assert not list(tmp_path.glob("*.partial"))  # temporaries are gone
        sizes[dtype] = out.stat().st_size
        backend = load_backend(f"gguf:{out}", n_threads=1)
        prompts, stop = Prompting().render([question])
        [[gen]] = backend.generate(prompts, GenConfig(max_tokens=96, stop=stop))
        assert gen.completion_tokens > 0 and predict(question, gen.text) is not None, (model, dtype, gen.text)
    # fewer bits, smaller file (the miniature's embeddings are a large share, so not proportionally)
    assert sizes["f32"] > sizes["f16"] > sizes["q8_0"] > sizes["q5_0"] > sizes["q4_0"]


def test_substitutions_are_what_the_file_holds(mini_student: Path, tmp_path: Path) -> None:
    result = export_quantized(mini_student, tmp_path / "s.gguf", "q4_k_m")
    reader = gguf.GGUFReader(str(result.path))
    stored = {t.name: t.tensor_type.name for t in reader.tensors}
    assert stored == result.tensor_types == tensor_types(result.path)
    # every matrix of the miniature has rows of 64 or 192: none can be Q4_K, so each is listed
    matrices = {t.name for t in reader.tensors if len(t.shape) == 2}
    assert {s.tensor for s in result.substituted} == matrices
    for s in result.substituted:
        assert s.wanted == "Q4_K" and s.got == stored[s.tensor] and s.got in ("Q5_0", "Q8_0")
        assert s.row_length % 256 and "256" in s.reason
    assert reader.get_field(REQUESTED_KEY).contents() == "q4_k_m"
    assert reader.get_field(SUBSTITUTED_KEY).contents().splitlines() == [s.line() for s in result.substituted]
    assert all(stored[t.name] == "F32" for t in reader.tensors if len(t.shape) == 1)  # norms


def test_q4_0_keeps_its_type_but_the_tied_output(mini_student: Path, tmp_path: Path) -> None:
    result = export_quantized(mini_student, tmp_path / "s.gguf", "q4_0")
    # llama.cpp gives the output matrix (here tied to the embeddings) more bits: Q8_0, as the
    # row of 64 fits no Q6_K block; every other matrix is Q4_0
    assert [(s.tensor, s.got) for s in result.substituted] == [("token_embd.weight", "Q8_0")]
    assert {k for k, v in result.tensor_types.items() if v == "Q4_0"} == {
        n for n, v in result.tensor_types.items() if n.startswith("blk.") and v != "F32"}


def test_cli_prints_the_substitutions(tmp_path: Path) -> None:
    from tourney.cli.main import main

    out = tmp_path / "t.gguf"
    res = CliRunner().invoke(main, ["export-gguf", "mini-teacher", str(out), "--dtype", "q4_k_m"])
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.output and "q4_k_m" in res.output
    assert "blk.0.attn_q.weight: Q4_K -> Q5_0 (row length 128 is not a multiple of Q4_K's block of 256)" in res.output
    assert SUBSTITUTED_KEY in res.output


def test_cli_bad_checkpoint_is_one_line(tmp_path: Path) -> None:
    from tourney.cli.main import main

    res = CliRunner().invoke(main, ["export-gguf", str(tmp_path / "nope"), str(tmp_path / "x.gguf"), "--dtype", "q4_0"])
    assert res.exit_code == 2
    assert "checkpoint directory does not exist" in res.output and "Traceback" not in res.output
    assert not list(tmp_path.glob("*.partial"))
