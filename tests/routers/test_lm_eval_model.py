"""The lm-evaluation-harness model `tourney`: request handling with scripted backends, and a local
task run through lm_eval.simple_evaluate with real checkpoints (skipped without lm_eval)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install 'tourney[lmeval]')")

from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.api.model import LM  # noqa: E402

from tourney.routers.policies.calibrate import CalibratedRouter  # noqa: E402
from tourney.routers.runtime.cascade import Cascade  # noqa: E402
from tourney.routers.runtime.lm_eval_model import TourneyLM  # noqa: E402
from tourney.routers.evaluation.metrics import CascadeFigures  # noqa: E402
from tests.routers.fakes import ScriptedBackend  # noqa: E402

DATA = Path(__file__).parent / "data"


def lm_over(cascade: Cascade, choice_threshold=None, greedy_check="auto") -> TourneyLM:
    """A TourneyLM over given backends, without loading models from specs."""
    lm = TourneyLM.__new__(TourneyLM)
    LM.__init__(lm)
    lm.cascade, lm.mode, lm.choice_threshold, lm._warned = cascade, cascade.mode, choice_threshold, False
    lm.greedy_check = greedy_check
    return lm


def gen_request(i, ctx, **kw):
    return Instance(request_type="generate_until", doc={}, arguments=(ctx, kw), idx=0, metadata=("t", i, 1))


def ll_request(doc_id, ctx, cont):
    return Instance(request_type="loglikelihood", doc={}, arguments=(ctx, cont), idx=0, metadata=("t", doc_id, 1))


def test_tourney_is_registered():
    from lm_eval.api.registry import get_model, model_registry

    assert get_model("tourney") is TourneyLM
    assert "hf" in model_registry  # the built-in models are still there


def test_generate_until_honours_until_and_max_gen_toks():
    student = ScriptedBackend(spec="fake:s", outputs={"apples": [" 3 + 1 = 4\n#### 4\nQuestion: more?"],
                                                      "pears": [" #### 7"]})
    lm = lm_over(Cascade(student, None, None, "speed"))
    out = lm.generate_until([gen_request(0, "Question: apples?\nAnswer:", until=["\nQuestion:"], max_gen_toks=7),
                             gen_request(1, "Question: pears?\nAnswer:", until="\n\n", max_gen_toks=9)])
    assert out == [" 3 + 1 = 4\n#### 4", " #### 7"]
    cfgs = sorted((cfg.max_tokens, cfg.stop) for _, cfg in student.calls)
    assert cfgs == [(7, ("\nQuestion:",)), (9, ("\n\n",))]  # grouped by generation kwargs


def test_generate_until_in_balanced_mode_escalates_low_confidence():
    router = CalibratedRouter("teacher_share", 0.5, -1.0, ["mean_logprob"], "mean_logprob",
                              CascadeFigures(n=2, teacher_share=0.5, accuracy=0.5))
    student = ScriptedBackend(spec="fake:s", outputs={"apples": [" #### 1"], "pears": [" #### 2"]},
                              logprobs={"apples": [-0.1], "pears": [-4.0]})
    teacher = ScriptedBackend(spec="fake:t", outputs={"apples": [" #### 10"], "pears": [" #### 20"]})
    lm = lm_over(Cascade(student, teacher, router, "balanced"))
    out = lm.generate_until([gen_request(0, "apples?", until=[]), gen_request(1, "pears?", until=[])])
    assert out == [" #### 1", " #### 20"] and teacher.asked() == ["pears"]


def test_loglikelihood_keeps_confident_student_scores_and_escalates_the_rest():
    student = ScriptedBackend(spec="fake:s", outputs={"sure": [""], "doubtful": [""]},
                              choice_scores={"sure": [-0.1, -6.0], "doubtful": [-1.0, -1.1]})
    teacher = ScriptedBackend(spec="fake:t", outputs={"sure": [""], "doubtful": [""]},
                              choice_scores={"sure": [-9.0, -9.0], "doubtful": [-3.0, -0.2]})
    router = CalibratedRouter("teacher_share", 0.5, 0.5, ["length"], "length",
                              CascadeFigures(n=2, teacher_share=0.5, accuracy=0.5))
    lm = lm_over(Cascade(student, teacher, router, "balanced"), choice_threshold=0.6)
    reqs = [ll_request(0, "sure?", " A"), ll_request(0, "sure?", " B"),
            ll_request(1, "doubtful?", " A"), ll_request(1, "doubtful?", " B")]
    out = lm.loglikelihood(reqs)
    assert out == [(-0.1, False), (-6.0, False), (-3.0, False), (-0.2, False)]
    assert teacher.score_calls == [["doubtful?"]]  # p(best) = 0.52 < 0.6 there; 0.997 for "sure?"


def test_is_greedy_says_whether_the_model_writes_the_continuation_greedily():
    student = ScriptedBackend(spec="fake:s", outputs={"capital": [" Paris, of course"], "sky": [" blue"],
                                                      "pick": [" A"]},
                              choice_scores={"capital": [-0.5], "sky": [-2.0], "pick": [-0.1, -3.0]})
    lm = lm_over(Cascade(student, None, None, "speed"))
    reqs = [ll_request(0, "The capital?", " Paris"), ll_request(1, "The sky?", " grey"),
            ll_request(2, "pick?", " A"), ll_request(2, "pick?", " B")]
    out = lm.loglikelihood(reqs)
    # one continuation: checked against the greedy output; options of a choice: not asked (auto)
    assert out == [(-0.5, True), (-2.0, False), (-0.1, False), (-3.0, False)]
    assert student.asked() == ["capital", "sky"]
    (_, cfg), = student.calls
    assert cfg.greedy and cfg.max_tokens == len(" Paris".encode())  # room for the longest continuation

    always = lm_over(Cascade(student, None, None, "speed"), greedy_check="always")
    assert [g for _, g in always.loglikelihood(reqs)] == [True, False, True, False]
    never = lm_over(Cascade(student, None, None, "speed"), greedy_check="never")
    assert [g for _, g in never.loglikelihood(reqs)] == [False] * 4


def test_is_greedy_asks_the_model_whose_scores_were_kept():
    student = ScriptedBackend(spec="fake:s", outputs={"doubtful": [" no"]}, choice_scores={"doubtful": [-5.0, -5.1]})
    teacher = ScriptedBackend(spec="fake:t", outputs={"doubtful": [" yes"]}, choice_scores={"doubtful": [-0.1, -4.0]})
    router = CalibratedRouter("teacher_share", 0.5, 0.5, ["length"], "length",
                              CascadeFigures(n=2, teacher_share=0.5, accuracy=0.5))
    lm = lm_over(Cascade(student, teacher, router, "balanced"), choice_threshold=0.99, greedy_check="always")
    # the student's p(best) = 0.52 < 0.99: the teacher's scores are kept, and so is its greedy answer
    out = lm.loglikelihood([ll_request(0, "doubtful?", " yes"), ll_request(0, "doubtful?", " no")])
    assert out == [(-0.1, True), (-4.0, False)]
    assert student.calls == [] and teacher.asked() == ["doubtful"]


def test_greedy_check_is_validated():
    with pytest.raises(Exception, match="greedy_check must be one of auto, always, never"):
        TourneyLM(student="fake:x", greedy_check="sometimes")


def test_loglikelihood_rolling_says_why_not():
    lm = lm_over(Cascade(ScriptedBackend(), None, None, "speed"))
    with pytest.raises(NotImplementedError, match="loglikelihood_rolling"):
        lm.loglikelihood_rolling([])


def test_model_args_are_checked(tmp_path):
    with pytest.raises(ValueError, match="router="):
        TourneyLM.create_from_arg_string("")
    with pytest.raises(ValueError, match="need router"):
        TourneyLM.create_from_arg_string("student=mini-student,teacher=mini-teacher")


# -- a local task through lm_eval's python API, compared with the project's own harness -----------

def local_task(tmp_path: Path) -> Path:
    """The shipped task YAML with its data path made absolute (lm-eval reads it from the cwd)."""
    folder = tmp_path / "tasks"
    folder.mkdir(parents=True)
    text = (DATA / "tourney_mini.yaml").read_text()
    text = text.replace("test: tests/routers/data/mini10.jsonl", f"test: {DATA / 'mini10.jsonl'}")
    text = text.replace("max_gen_toks: 128", "max_gen_toks: 48")
    (folder / "tourney_mini.yaml").write_text(text)
    return folder


def lm_eval_accuracy(spec: str, tmp_path: Path) -> tuple[float, list]:
    from lm_eval.tasks import TaskManager

    res = lm_eval.simple_evaluate(model="tourney", model_args=f"student={spec}", tasks=["tourney_mini"],
                                  task_manager=TaskManager(include_path=str(local_task(tmp_path)), include_defaults=False),
                                  batch_size=1, log_samples=True)
    metrics = res["results"]["tourney_mini"]
    return metrics["exact_match,strict-match"], res["samples"]["tourney_mini"]


def harness_accuracy(spec: str, tmp_path: Path) -> float:
    from tourney.harness.runner import EvalConfig, run_eval
    from tourney.models.registry import load_backend

    # one question per batch, as lm-eval's batch_size=1: no padding anywhere
    cfg = EvalConfig(model=spec, data=str(DATA / "mini10.jsonl"), out=str(tmp_path / "run"), max_tokens=48,
                     model_args={"batch_size": 1})
    backend = load_backend(spec, batch_size=1)
    try:
        return run_eval(cfg, backend)["overall"]["accuracy"]
    finally:
        backend.close()


@pytest.mark.slow
def test_local_task_pipeline_runs_with_a_tiny_checkpoint(tiny_checkpoint, tmp_path):
    acc, samples = lm_eval_accuracy(f"hf:{tiny_checkpoint}", tmp_path)
    assert 0.0 <= acc <= 1.0 and len(samples) == 10
    context, gen_kwargs = samples[0]["arguments"][0]
    assert context.startswith("Question: ") and context.endswith("\nAnswer:")  # the harness's base prompt
    assert gen_kwargs["until"] == ["\nQuestion:"]
    assert all("\nQuestion:" not in s["resps"][0][0] for s in samples)  # `until` honoured


@pytest.mark.slow
def test_local_task_accuracy_equals_the_harness_with_the_mini_student(mini_student, tmp_path):
    spec = f"hf:{mini_student}"
    acc, samples = lm_eval_accuracy(spec, tmp_path / "lm")
    ours = harness_accuracy(spec, tmp_path / "h")
    detail = json.dumps([[s["filtered_resps"], s["target"][-12:]] for s in samples])
    assert acc == pytest.approx(ours), f"lm-eval {acc} vs harness {ours}: {detail}"


def test_wrapper_names_the_results_folder_after_what_it_evaluates():
    from tourney.cli.lm_eval import model_name, with_model_name

    assert model_name("router=runs/router.json,mode=speed") == "tourney-router"
    assert model_name("student=hf:/ckpts/mini-student") == "tourney-mini-student"
    argv = ["run", "--model", "tourney", "--model_args", "router=r.json", "--tasks", "t"]
    assert with_model_name(argv)[4] == "router=r.json,model=tourney-r"
    named = ["run", "--model", "tourney", "--model_args", "router=r.json,model=mine"]
    assert with_model_name(named) == named  # the user's own name stands
    other = ["run", "--model", "hf", "--model_args", "pretrained=x"]
    assert with_model_name(other) == other


@pytest.mark.slow
def test_the_wrapper_command_writes_results_under_the_model_name(tiny_checkpoint, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "lm"
    cmd = [sys.executable, "-m", "tourney.cli.lm_eval", "run", "--model", "tourney", "--model_args",
           f"student=hf:{tiny_checkpoint}", "--tasks", "tourney_mini", "--include_path", str(local_task(tmp_path)),
           "--output_path", str(out), "--batch_size", "1", "--limit", "2", "--log_samples"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[2],
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    folders = [p.name for p in out.iterdir() if p.is_dir()]
    assert folders == [f"tourney-{tiny_checkpoint.name}"], folders
    assert list((out / folders[0]).glob("results_*.json"))


@pytest.mark.slow
def test_is_greedy_with_a_real_checkpoint(mini_student):
    # The greedy continuation the miniature student writes, and a half of it, are greedy; a
    # continuation it would not write is not.
    lm = TourneyLM(student=f"hf:{mini_student}")
    ctx = "Question: Tom has 3 apples and buys 2 more. How many apples does he have?\nAnswer:"
    written = lm.generate_until([gen_request(0, ctx, until=[], max_gen_toks=8)])[0]
    assert written.strip()
    half = written[: max(1, len(written) // 2)]
    out = lm.loglikelihood([ll_request(0, ctx, written), ll_request(1, ctx, half), ll_request(2, ctx, " zebra")])
    assert [g for _, g in out] == [True, True, False]
    assert all(v <= 0.0 for v, _ in out) and out[2][0] < out[1][0]
