"""`tourney serve` (mode router) and `tourney submit --mode balanced` give the same answer to every
question of a mixed file (multiple choice and arithmetic) with the shipped pair, when no deadline
is missed; a student answer that names no option is escalated by both, never answered with the
fallback while time is left."""
from __future__ import annotations

import csv
import json

import httpx
import pytest

from tests.serve.conftest import DEV, cli, start_serve, stop_serve
from tourney.harness.questions import load_questions

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_CAL, N_ASK = 60, 30  # mixed dev questions to calibrate on; later ones to answer


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    work = tmp_path_factory.mktemp("mixed")
    lines = DEV.read_text().splitlines(keepends=True)
    (work / "cal.jsonl").write_text("".join(lines[:N_CAL]))
    (work / "ask.jsonl").write_text("".join(lines[N_CAL:N_CAL + N_ASK]))
    cli("eval", "--model", "mini-student", "--data", work / "cal.jsonl", "--logprobs", 0, "--out", work / "s")
    cli("eval", "--model", "mini-teacher", "--data", work / "cal.jsonl", "--out", work / "t")
    cli("route", "calibrate", "--student", work / "s", "--teacher", work / "t", "--target", "share=0.4",
        "--signals", "mean_logprob", "--out", work / "router.json")
    return work


def test_serve_router_mode_answers_as_submit_balanced(mixed):
    cli("submit", "--questions", mixed / "ask.jsonl", "--router", mixed / "router.json", "--mode", "balanced",
        "--deadline-ms", 120000, "--batch-size", 1, "--out", mixed / "sub")
    with (mixed / "sub" / "submission.csv").open() as f:
        want = {row["id"]: row["answer"] for row in csv.DictReader(f)}
    log = [json.loads(x) for x in (mixed / "sub" / "log.jsonl").read_text().splitlines()]
    assert not any(r["deadline_missed"] for r in log)
    assert any(r["student_prediction"] is None for r in log)  # the case at stake: the student names no option
    assert not any(r["routed_to"] == "fallback" and not r["escalated"] for r in log)  # unread: teacher asked
    served = start_serve(mixed / "router.json", mixed, ["--deadline-ms", "120000"])
    try:
        got, decisions = {}, {}
        for q in load_questions(str(mixed / "ask.jsonl")):
            meta = {"id": q.id, "type": q.type, **({"choices": list(q.choices)} if q.choices else {})}
            r = httpx.post(served.url + "/v1/completions", timeout=300,
                           json={"model": "router", "prompt": q.question, "tourney": meta})
            assert r.status_code == 200, r.text
            d = r.json()["tourney"]
            got[q.id], decisions[q.id] = d["answer"], d
    finally:
        stop_serve(served)
    assert got == want
    by_id = {r["id"]: r for r in log}
    for i, d in decisions.items():
        assert d["escalated"] == by_id[i]["escalated"], i
        if by_id[i]["student_prediction"] is None:
            assert d["escalated"]
