"""The whole routing flow on the command line with recorded outputs (replay:), no model:
eval both models -> route calibrate -> route eval -> submit."""
from __future__ import annotations

import csv
import json

import numpy as np

from click.testing import CliRunner

from tourney.cli.main import main

# question number, gold; the student is right and sure on odd ones, wrong and unsure on even ones
QUESTIONS = [(n, n + 10) for n in range(1, 9)]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_eval_calibrate_route_eval_submit(tmp_path):
    data, s_replay, t_replay = tmp_path / "q.jsonl", tmp_path / "student.jsonl", tmp_path / "teacher.jsonl"
    with data.open("w") as q, s_replay.open("w") as s, t_replay.open("w") as t:
        for n, gold in QUESTIONS:
            qid = f"q{n}"
            q.write(json.dumps({"id": qid, "question": f"Sam has {n} cards. How many?", "answer": gold}) + "\n")
            sure = n % 2 == 1
            s.write(json.dumps({"id": qid, "output": f"#### {gold if sure else 0}", "latency_s": 0.1,
                                "token_logprobs": [-0.1, -0.2] if sure else [-2.0, -3.0]}) + "\n")
            t.write(json.dumps({"id": qid, "output": f"#### {gold}", "latency_s": 1.0}) + "\n")
    for who, replay in (("s", s_replay), ("t", t_replay)):
        res = run("eval", "--model", f"replay:{replay}", "--data", data, "--out", tmp_path / who, "--logprobs", 0)
        assert res.exit_code == 0, res.output
    router = tmp_path / "router.json"
    res = run("route", "calibrate", "--student", tmp_path / "s", "--teacher", tmp_path / "t",
              "--target", "accuracy=1.0", "--signals", "mean_logprob", "--split", "0.25", "--out", router)
    assert res.exit_code == 0, res.output
    raw = json.loads(router.read_text())
    assert raw["student"]["spec"] == f"replay:{s_replay}" and raw["student"]["logprobs"] == 0
    assert raw["heldout"]["n"] == 2 and raw["heldout"]["accuracy"] == 1.0  # the target holds held out
    assert raw["dev"]["n"] == 6 and raw["dev"]["accuracy"] == 1.0
    res = run("route", "eval", "--student", tmp_path / "s", "--teacher", tmp_path / "t", "--router", router,
              "--out", tmp_path / "e")
    assert res.exit_code == 0, res.output
    ev = json.loads((tmp_path / "e" / "route_eval.json").read_text())
    assert ev["router"]["at_threshold"]["accuracy"] == 1.0 and ev["router"]["at_threshold"]["teacher_share"] == 0.5
    assert ev["reports"]["router"]["overall"]["auroc"] == 1.0

    out = tmp_path / "sub"
    res = run("submit", "--questions", data, "--router", router, "--mode", "balanced", "--deadline-ms", 5000,
              "--out", out)
    assert res.exit_code == 0, res.output
    with (out / "submission.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows == [["id", "answer"]] + [[f"q{n}", str(gold)] for n, gold in QUESTIONS]
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in log if r["escalated"]) == ["q2", "q4", "q6", "q8"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["answered"] == 8 and summary["escalated_share"] == 0.5 and summary["deadline_missed"] == 0
    res = run("submit", "--questions", data, "--router", router, "--mode", "speed", "--deadline-ms", 5000,
              "--out", tmp_path / "fast")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "fast" / "summary.json").read_text())["escalated"] == 0
    # resuming with other settings is one clear line, exit 2
    res = run("submit", "--questions", data, "--router", router, "--mode", "speed", "--deadline-ms", 100,
              "--out", tmp_path / "fast")
    assert res.exit_code == 2 and "deadline_ms" in res.output


def test_recorded_samples_without_logprobs_route_by_default(tmp_path):
    """The path for recorded outputs of real models: `outputs` lists in a replay file, no
    logprobs, `route calibrate` with its default signal choice, then `route eval`."""
    data, s_replay, t_replay = tmp_path / "q.jsonl", tmp_path / "student.jsonl", tmp_path / "teacher.jsonl"
    with data.open("w") as q, s_replay.open("w") as s, t_replay.open("w") as t:
        for n in range(60):
            gold = n + 10
            q.write(json.dumps({"id": f"q{n}", "question": f"Ann has {n} pens and gets 10. How many?", "answer": gold}) + "\n")
            # 0: all five agree, right; 1: the first wrong, the other four right (the majority);
            # 2: the first right, one other agrees, three scattered
            kind = n % 3
            first = gold if kind != 1 else gold + 1
            rest = [gold] * 4 if kind != 2 else [gold, gold + 1, gold + 2, gold + 3]
            s.write(json.dumps({"id": f"q{n}", "outputs": [f"#### {a}" for a in [first, *rest]], "latency_s": 0.1}) + "\n")
            t.write(json.dumps({"id": f"q{n}", "output": f"#### {gold}", "latency_s": 1.0}) + "\n")
    for who, replay, k in (("s", s_replay, 5), ("t", t_replay, 1)):
        res = run("eval", "--model", f"replay:{replay}", "--data", data, "--out", tmp_path / who, "--samples", k)
        assert res.exit_code == 0, res.output
    router = tmp_path / "router.json"
    res = run("route", "calibrate", "--student", tmp_path / "s", "--teacher", tmp_path / "t",
              "--target", "share=0.3", "--split", "0.5", "--out", router)
    assert res.exit_code == 0, res.output
    raw = json.loads(router.read_text())
    table = raw["data"]["selection"]["candidates"]
    assert f"chosen by cross-validated APGR on dev (best 3): {raw['data']['selection']['chosen']} " in res.output
    assert all(not any("logprob" in s for s in c["signals"]) for c in table)  # unavailable, never faked
    # the first sample is wrong exactly when the others outvote it: agreement with it ranks the
    # questions perfectly (0 < 0.25 < 1), the majority's share puts the wrong ones (0.8) above
    # right ones (0.4)
    assert "answer_agreement" in raw["signals"]
    res = run("route", "eval", "--student", tmp_path / "s", "--teacher", tmp_path / "t", "--router", router,
              "--out", tmp_path / "e")
    assert res.exit_code == 0, res.output
    reports = json.loads((tmp_path / "e" / "route_eval.json").read_text())["reports"]
    assert reports["answer_agreement"]["overall"]["auroc"] == 1.0 == reports["router"]["overall"]["auroc"]
    assert reports["self_consistency"]["overall"]["auroc"] < 1.0


def test_two_stage_policy_through_the_command_line(tmp_path):
    """Questions whose words give them away: `--policy two-stage` sends the clearly hard ones to
    the teacher before the student answers; route eval shows each policy's latency from the
    recorded ones, and submit runs the policy."""
    data, s_replay, t_replay = tmp_path / "q.jsonl", tmp_path / "student.jsonl", tmp_path / "teacher.jsonl"
    with data.open("w") as q, s_replay.open("w") as s, t_replay.open("w") as t:
        for n in range(60):
            gold, hard = n + 10, n % 4 == 0
            text = f"A {'tricky multi step puzzle' if hard else 'plain sum'}: Ann has {n} pens and gets 10. How many?"
            q.write(json.dumps({"id": f"q{n}", "question": text, "answer": gold}) + "\n")
            first = gold + 1 if hard or n % 7 == 0 else gold
            second = gold + 2 if hard else gold
            s.write(json.dumps({"id": f"q{n}", "outputs": [f"#### {first}", f"#### {second}"], "latency_s": 1.0}) + "\n")
            t.write(json.dumps({"id": f"q{n}", "output": f"#### {gold}", "latency_s": 3.0}) + "\n")
    for who, replay, k in (("s", s_replay, 2), ("t", t_replay, 1)):
        res = run("eval", "--model", f"replay:{replay}", "--data", data, "--out", tmp_path / who, "--samples", k)
        assert res.exit_code == 0, res.output
    router = tmp_path / "router.json"
    res = run("route", "calibrate", "--student", tmp_path / "s", "--teacher", tmp_path / "t", "--target",
              "share=0.3", "--signals", "answer_agreement", "--policy", "two-stage", "--per-type", "off", "--out", router)
    assert res.exit_code == 0, res.output
    assert "policy two-stage" in res.output
    # the score is the one named; the question routers listed were tried for the first stage only
    assert "chosen by cross-validated" not in res.output
    assert "score as named by --signals; question routers tried for a first stage" in res.output
    raw = json.loads(router.read_text())
    assert raw["format"] == "tourney-router/2" and raw["pre"]["model"]["kind"] == "expected_gain"
    assert raw["pre"]["model"]["student"]["text"]["buckets"]  # hashed words, stored as numbers
    res = run("route", "eval", "--student", tmp_path / "s", "--teacher", tmp_path / "t", "--router", router,
              "--out", tmp_path / "e")
    assert res.exit_code == 0, res.output
    ev = json.loads((tmp_path / "e" / "route_eval.json").read_text())
    pol = ev["policies"]
    assert set(pol) == {"two-stage", "cascade", "pre-routing"}
    # a question sent to the teacher up front costs 3 s, through the cascade 1 + 3 s
    at = {k: np.interp(0.3, [p[0] for p in v["curve"]], [p[2] for p in v["curve"]]) for k, v in pol.items()}
    assert at["two-stage"] < at["cascade"]  # at the same teacher share: no student time on those sent up front
    assert abs(pol["two-stage"]["at_threshold"]["teacher_share"] - 0.3) < 0.05
    assert pol["pre-routing"]["curve"][-1][2] == 3.0 and pol["cascade"]["curve"][-1][2] == 4.0
    assert "## Policies" in (tmp_path / "e" / "route_eval.md").read_text()
    out = tmp_path / "sub"
    res = run("submit", "--questions", data, "--router", router, "--mode", "balanced", "--deadline-ms", 5000,
              "--batch-size", 8, "--out", out)
    assert res.exit_code == 0, res.output
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    direct = [r for r in log if r["escalated"] and r["student_latency_s"] == 0.0]
    assert direct and all(r["routed_to"] == "teacher" for r in direct)
