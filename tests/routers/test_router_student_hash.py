"""ROUTER.json records the student's weights hash at calibration; `tourney submit` and `tourney
serve` warn (one line on stderr, not an error) when the student they would run is another file,
e.g. the f32 student's router put in front of its q4_0 file. Real GGUF files of the shipped
student, real evaluation runs through llama.cpp, real calibration."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tourney.cli.main import main
from tourney.harness.tournament import MINI_TEST
from tourney.models.weights_file import changed_weights_warning, weights_sha256
from tourney.routers.runtime.bundle import RouterBundle

pytest.importorskip("llama_cpp")
N = 12
# the tests through evaluation runs and the commands take half a minute on a shared 2-core machine
slow = pytest.mark.slow


def test_the_warning_names_both_hashes_and_only_when_they_differ(mini_student, tmp_path) -> None:
    """Fast: a bundle built in code, a real GGUF file of the shipped student."""
    from tourney.models.gguf_export import export_gguf
    from tourney.routers.runtime.bundle import ModelSettings
    from tourney.routers.policies.calibrate import CalibratedRouter
    from tourney.routers.evaluation.metrics import CascadeFigures

    f32 = export_gguf(mini_student, tmp_path / "s.gguf")
    router = CalibratedRouter("teacher_share", 0.5, 0.0, ["length"], "length", CascadeFigures(4, 0.5, 1.0))
    bundle = RouterBundle(router, ModelSettings(spec=f"gguf:{f32}"), ModelSettings(spec="mini-teacher"),
                          student_sha256=sha(f32))
    bundle.save(tmp_path / "r.json")
    loaded = RouterBundle.load(tmp_path / "r.json")
    assert loaded.student_sha256 == sha(f32) and loaded.student_warning("r.json") is None
    other = loaded.with_specs(student="mini-student")
    line = other.student_warning("r.json")
    assert line is not None and "\n" not in line and line.startswith("warning: r.json")
    assert sha(f32)[:12] in line and sha(mini_student / "model.safetensors")[:12] in line


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def files(mini_student, tmp_path_factory):
    """The student at f32 and q4_0, and runs of both (plus a teacher run) on N test questions."""
    from tourney.models.gguf_export import export_gguf
    from tourney.models.gguf_quantize import export_quantized

    tmp = tmp_path_factory.mktemp("hash")
    f32 = export_gguf(mini_student, tmp / "student-f32.gguf")
    q4 = export_quantized(mini_student, tmp / "student-q4_0.gguf", "q4_0").path
    for name, path in (("f32", f32), ("q4", q4)):
        res = run("eval", "--model", f"gguf:{path}", "--model-arg", "n_threads=1,logprobs=true", "--data", MINI_TEST,
                  "--limit", N, "--max-tokens", 96, "--logprobs", 0, "--out", tmp / f"run-{name}")
        assert res.exit_code == 0, res.output
    # the teacher's answers: the f32 student's run stands in (the hash concerns the student only)
    return {"dir": tmp, "f32": f32, "q4": q4}


def calibrate(files, student_run: str, name: str) -> Path:
    out = files["dir"] / name
    if student_run == "run-f32" and (files["dir"] / "router-f32.json").exists():  # calibrated once; a copy
        out.write_bytes((files["dir"] / "router-f32.json").read_bytes())
        return out
    res = run("route", "calibrate", "--student", files["dir"] / student_run, "--teacher", files["dir"] / "run-f32",
              "--target", "share=0.3", "--signals", "mean_logprob", "--out", out)
    assert res.exit_code == 0, res.output
    return out


def test_weights_sha256_of_each_spec_kind(mini_student, tmp_path) -> None:
    from tourney.models.gguf_export import export_gguf

    f32 = export_gguf(mini_student, tmp_path / "s.gguf")
    assert weights_sha256(f"gguf:{f32}") == sha(f32)
    assert weights_sha256(f"hf:{mini_student}") == sha(mini_student / "model.safetensors")
    assert weights_sha256("mini-student") == sha(mini_student / "model.safetensors")
    for spec in ("openai:m@http://127.0.0.1:9/v1", f"replay:{f32}", "gguf:/no/such/file", "nonsense"):
        assert weights_sha256(spec) is None
    assert changed_weights_warning(f"gguf:{f32}", None, "r.json") is None  # an old file: nothing to say


@slow
def test_calibration_records_the_student_file_and_works_on_quantized_runs(files) -> None:
    router = calibrate(files, "run-f32", "router-f32.json")
    assert json.loads(router.read_text())["student_sha256"] == sha(files["f32"])
    router_q4 = calibrate(files, "run-q4", "router-q4.json")
    raw = json.loads(router_q4.read_text())
    assert raw["student"]["spec"] == f"gguf:{files['q4']}" and raw["student_sha256"] == sha(files["q4"])
    assert RouterBundle.load(router_q4).student_sha256 == sha(files["q4"])


def submit(files, router: Path, out: str, *extra):
    questions = files["dir"] / "q.jsonl"
    questions.write_text("".join(MINI_TEST.read_text().splitlines(keepends=True)[:4]))
    return run("submit", "--questions", questions, "--router", router, "--mode", "speed", "--deadline-ms", 30000,
               "--out", files["dir"] / out, *extra)


@slow
def test_submit_warns_once_when_the_student_file_differs(files) -> None:
    router = calibrate(files, "run-f32", "router-submit.json")
    same = submit(files, router, "sub-same")
    assert same.exit_code == 0, same.output
    assert "warning" not in same.stderr
    other = submit(files, router, "sub-q4", "--student", f"gguf:{files['q4']}")
    assert other.exit_code == 0, other.output  # a warning, not an error
    lines = [x for x in other.stderr.splitlines() if x.startswith("warning:")]
    assert len(lines) == 1, other.stderr
    assert str(router) in lines[0] and sha(files["f32"])[:12] in lines[0] and sha(files["q4"])[:12] in lines[0]
    assert "recalibrate" in lines[0]


@slow
def test_a_router_file_without_the_hash_still_loads_and_does_not_warn(files) -> None:
    router = calibrate(files, "run-f32", "router-old.json")
    raw = json.loads(router.read_text())
    del raw["student_sha256"]  # as versions before the field wrote it
    router.write_text(json.dumps(raw))
    assert RouterBundle.load(router).student_sha256 is None
    res = submit(files, router, "sub-old", "--student", f"gguf:{files['q4']}")
    assert res.exit_code == 0 and "warning" not in res.stderr


@slow
def test_a_malformed_hash_is_one_line(files) -> None:
    router = calibrate(files, "run-f32", "router-bad.json")
    raw = json.loads(router.read_text())
    raw["student_sha256"] = "not-a-hash"
    router.write_text(json.dumps(raw))
    res = submit(files, router, "sub-bad")
    assert res.exit_code == 2 and "student_sha256" in res.output and "Traceback" not in res.output


@slow
def test_serve_warns_before_it_starts(files, monkeypatch) -> None:
    import tourney.serve.server as server

    started = []
    # the server itself is not the subject here: the check runs before it, in the command
    monkeypatch.setattr(server, "serve", lambda cfg, on_ready=None: started.append(cfg))
    router = calibrate(files, "run-f32", "router-serve.json")
    res = run("serve", "--router", router, "--port", 0, "--student", f"gguf:{files['q4']}")
    assert res.exit_code == 0, res.output
    assert started and [x for x in res.stderr.splitlines() if x.startswith("warning:")][0].count("sha256") == 1
    res = run("serve", "--router", router, "--port", 0)
    assert res.exit_code == 0 and "warning" not in res.stderr
