"""Routing data from hand-made run directories, `tourney route eval` and `tourney route calibrate`."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tourney.cli.main import main
from tourney.harness.types import DataError
from tourney.routers.runtime.bundle import RouterBundle
from tourney.routers.policies.calibrate import CalibratedRouter
from tourney.routers.evaluation.metrics import CascadeFigures, cascade_figures, routing_report
from tourney.routers.evaluation.route_eval import evaluate_routing, run_route_eval
from tourney.routers.evaluation.rundata import routing_data

N = 20


def make_runs(tmp_path, name="dev", seed=0, n=N):
    """A student run with 2 samples and logprobs, and a teacher run, on the same n questions."""
    from tests.routers.fakes import write_run

    rng = np.random.default_rng(seed)
    s_rows, t_rows = [], []
    for i in range(n):
        qid = f"{name}-{i:02d}"
        right = bool(rng.uniform() < 0.5)
        # right answers tend to be confident; the second sample agrees when right
        lp = [float(x) for x in rng.normal(-0.3 if right else -1.5, 0.6, size=4)]
        qtype = "short" if i % 2 else "long"
        s_rows.append(dict(id=qid, type=qtype, sample=0, output=f"#### {1 if right else 2}",
                           prediction="1" if right else "2", correct=right, latency_s=1.0 + i / 10,
                           token_logprobs=lp, completion_tokens=5 + i))
        s_rows.append(dict(id=qid, type=qtype, sample=1, output=f"#### {1 if right or i % 3 else 3}",
                           prediction="1" if right or i % 3 else "3", correct=right or bool(i % 3),
                           latency_s=0.5, token_logprobs=lp, completion_tokens=5))
        t_right = bool(rng.uniform() < 0.85)
        t_rows.append(dict(id=qid, type=qtype, output="#### 1", prediction="1" if t_right else "7",
                           correct=t_right, latency_s=4.0 + i % 3))
    s = write_run(tmp_path / f"{name}-student", "mini-student", s_rows, samples=2, temperature=0.7, logprobs=0)
    t = write_run(tmp_path / f"{name}-teacher", "mini-teacher", t_rows, max_tokens=512)
    return s, t, s_rows, t_rows


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_arrays_follow_sample_zero_and_latency_conventions(tmp_path):
    s, t, s_rows, t_rows = make_runs(tmp_path)
    d = routing_data(s, t)
    first = [r for r in s_rows if r["sample"] == 0]
    assert d.ids == [r["id"] for r in first]
    assert d.student_correct.tolist() == [float(r["correct"]) for r in first]
    assert d.teacher_correct.tolist() == [float(r["correct"]) for r in t_rows]
    assert d.student_latency(["mean_logprob"]).tolist() == [r["latency_s"] for r in first]
    # self-consistency needs both samples before routing: drawn together, the slowest one counts
    assert d.student_latency(["self_consistency"]).tolist() == pytest.approx([max(r["latency_s"], 0.5) for r in first])
    # drawn one after another, their latencies add up
    summed = routing_data(s, t, multi_sample="sum")
    assert summed.student_latency(["self_consistency"]).tolist() == pytest.approx([r["latency_s"] + 0.5 for r in first])
    assert d.samples == 2
    assert "mc_probability" not in d.available_signals() and "self_consistency" in d.available_signals()


def test_reports_equal_routers_metrics_on_the_same_arrays(tmp_path):
    s, t, s_rows, t_rows = make_runs(tmp_path)
    first = [r for r in s_rows if r["sample"] == 0]
    sc = [r["correct"] for r in first]
    tc = [r["correct"] for r in t_rows]
    types = [r["type"] for r in first]
    tl = [r["latency_s"] for r in t_rows]
    ev = evaluate_routing(routing_data(s, t, multi_sample="sum"))
    conf = [float(np.mean(r["token_logprobs"])) for r in first]  # mean_logprob, by hand
    want = routing_report(conf, sc, tc, types, [r["latency_s"] for r in first], tl)
    assert ev.reports["mean_logprob"].to_dict() == want.to_dict()
    agree = [1.0 if r["prediction"] == r2["prediction"] else 0.5 for r, r2 in zip(first, s_rows[1::2])]
    want = routing_report(agree, sc, tc, types, [r["latency_s"] + 0.5 for r in first], tl)
    assert ev.reports["self_consistency"].to_dict() == want.to_dict()
    length_conf = [-float(r["completion_tokens"]) for r in first]  # larger = less confident
    assert ev.reports["length"].to_dict() == routing_report(length_conf, sc, tc, types,
                                                            [r["latency_s"] for r in first], tl).to_dict()
    assert ev.primary in ev.reports and set(ev.curves) == {ev.primary, "random", "oracle"}


def test_router_report_and_files(tmp_path):
    s, t, s_rows, t_rows = make_runs(tmp_path)
    router = CalibratedRouter("teacher_share", 0.3, -0.8, ["mean_logprob"], "mean_logprob",
                              CascadeFigures(n=N, teacher_share=0.3, accuracy=0.8))
    path = tmp_path / "router.json"
    router.save(path)
    ev = run_route_eval(s, t, tmp_path / "out", router_path=path)
    assert ev.primary == "router"
    assert ev.reports["router"].to_dict() == ev.reports["mean_logprob"].to_dict()
    d = routing_data(s, t)
    conf = d.signal_confidence("mean_logprob")
    want = cascade_figures(conf, -0.8, d.student_correct, d.teacher_correct, d.student_latency_first, d.teacher_latency)
    assert ev.router["at_threshold"] == want.__dict__
    out = tmp_path / "out"
    saved = json.loads((out / "route_eval.json").read_text())
    assert set(saved["reports"]) >= {"router", "mean_logprob"} and saved["primary"] == "router"
    assert (out / "route_eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "route_eval.md").read_text()
    assert "| oracle |" in md and "| random |" in md and "Per question type" in md


def test_runs_on_different_questions_are_refused(tmp_path):
    s, _, _, _ = make_runs(tmp_path, "a")
    _, t, _, _ = make_runs(tmp_path, "b")
    with pytest.raises(DataError, match="same questions"):
        routing_data(s, t)


def test_cli_route_eval_single_signal(tmp_path):
    s, t, _, _ = make_runs(tmp_path)
    res = run("route", "eval", "--student", s, "--teacher", t, "--signal", "min_logprob", "--out", tmp_path / "e")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "e" / "route_eval.json").read_text())["primary"] == "min_logprob"
    res = run("route", "eval", "--student", s, "--teacher", t, "--signal", "mc_margin", "--out", tmp_path / "e")
    assert res.exit_code == 2 and "no value" in res.output


# -- calibration -------------------------------------------------------------------------------

def test_cli_calibrate_with_split_records_heldout_and_settings(tmp_path):
    s, t, _, _ = make_runs(tmp_path)
    out = tmp_path / "router.json"
    res = run("route", "calibrate", "--student", s, "--teacher", t, "--target", "share=0.3",
              "--split", "0.5", "--seed", "1", "--out", out)
    assert res.exit_code == 0, res.output
    raw = json.loads(out.read_text())
    assert raw["target"] == "share=0.3" and raw["target_kind"] == "teacher_share"
    assert raw["model"]["kind"] == "logistic_regression" and raw["signals"]
    assert raw["dev"]["n"] == 10 and raw["heldout"]["n"] == 10
    assert raw["heldout"]["latency_mean_s"] is not None and raw["dev"]["teacher_share"] == pytest.approx(0.3)
    assert raw["student"]["spec"] == "mini-student" and raw["student"]["samples"] == 2
    assert raw["student"]["temperature"] == 0.7 and raw["student"]["logprobs"] == 0
    assert raw["teacher"]["spec"] == "mini-teacher" and raw["teacher"]["max_tokens"] == 512
    assert len(raw["data"]["heldout_ids"]) == 10
    bundle = RouterBundle.load(out)  # and a bare CalibratedRouter reads it too
    assert CalibratedRouter.load(out).threshold == bundle.router.threshold
    # the held-out figures are those of the saved threshold on the held-out questions
    data = routing_data(s, t)
    held = data.subset([data.ids.index(i) for i in raw["data"]["heldout_ids"]])
    fig = cascade_figures(held.router_confidence(bundle.router), bundle.router.threshold, held.student_correct,
                          held.teacher_correct, held.student_latency(bundle.router.signals), held.teacher_latency)
    assert bundle.router.heldout == fig
    assert "held-out: n=10" in res.output


def test_cli_calibrate_single_signal_on_heldout_runs(tmp_path):
    s, t, _, _ = make_runs(tmp_path, "dev", seed=0)
    hs, ht, _, _ = make_runs(tmp_path, "held", seed=1)
    out = tmp_path / "r.json"
    res = run("route", "calibrate", "--student", s, "--teacher", t, "--target", "latency_mean=2.5",
              "--signals", "mean_logprob", "--heldout-student", hs, "--heldout-teacher", ht, "--out", out)
    assert res.exit_code == 0, res.output
    raw = json.loads(out.read_text())
    assert raw["model"] == "mean_logprob" and raw["signals"] == ["mean_logprob"]
    assert raw["dev"]["latency_mean_s"] <= 2.5 and raw["heldout"]["n"] == N
    assert raw["data"]["heldout_student_run"] == str(hs)


def test_cli_calibrate_accuracy_relative_and_errors(tmp_path):
    s, t, _, _ = make_runs(tmp_path)
    out = tmp_path / "r.json"
    res = run("route", "calibrate", "--student", s, "--teacher", t, "--target", "accuracy=0.95",
              "--signals", "self_consistency,mean_logprob", "--out", out)
    assert res.exit_code == 0, res.output
    raw = json.loads(out.read_text())
    assert raw["relative"] is True and raw["heldout"] is None
    assert raw["dev"]["accuracy"] >= 0.95 * raw["data"]["dev_teacher_accuracy"] - 1e-9
    for bad, words in ((["--target", "speed=3"], "expected share=F"),
                       (["--target", "share=0.3", "--signals", "nonsense"], "unknown signal"),
                       (["--target", "share=0.3", "--split", "1.5"], "field 'split': Input should be less than 1")):
        res = run("route", "calibrate", "--student", s, "--teacher", t, *bad, "--out", out)
        assert res.exit_code == 2 and words in res.output.strip().splitlines()[-1], res.output
