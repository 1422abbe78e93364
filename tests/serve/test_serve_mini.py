"""`tourney serve` with the shipped miniature pair, driven by the official openai client: the
modes answer as `tourney submit` does, streaming and not, chat and completions; the request log
is read by `tourney report`, `tourney regress` and `tourney route eval`; lm-eval's own
local-chat-completions model evaluates a local task through the server."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import httpx
import pytest

openai = pytest.importorskip("openai", reason="the openai client is needed (pip install 'tourney[serve]')")

from tests.serve.conftest import cli, dev_questions, write_questions  # noqa: E402
from tests.waiting import wait_until  # noqa: E402
from tourney.harness.rundir import read_results  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QS = dev_questions(12, offset=40)  # not among the calibration questions
SUBMIT_MODES = {"router": "balanced", "router-speed": "speed", "router-accuracy": "accuracy"}


@pytest.fixture(scope="module")
def client(mini_server):
    return openai.OpenAI(base_url=mini_server.base_url, api_key="unused", timeout=120, max_retries=0)


@pytest.fixture(scope="module")
def submitted(mini_router, tmp_path_factory) -> dict[str, dict[str, str]]:
    """`tourney submit` answers of QS per mode, one question at a time."""
    work = tmp_path_factory.mktemp("submit")
    data = write_questions(work / "q.jsonl", QS)
    out = {}
    for mode in SUBMIT_MODES.values():
        cli("submit", "--questions", data, "--router", mini_router, "--mode", mode, "--deadline-ms", 60000,
            "--batch-size", 1, "--out", work / mode)
        with (work / mode / "submission.csv").open() as f:
            out[mode] = {row["id"]: row["answer"] for row in csv.DictReader(f)}
    return out


def meta(q) -> dict:
    return {"tourney": {"id": q.id, "type": q.type, "answer": q.answer}}


def test_models_are_listed(client):
    assert [m.id for m in client.models.list()] == ["router", "router-speed", "router-accuracy", "student", "teacher"]


@pytest.mark.parametrize("mode", ["router", "router-speed", "router-accuracy"])
def test_answers_equal_tourney_submit(client, submitted, mode):
    want = submitted[SUBMIT_MODES[mode]]
    got, escalated = {}, []
    for k, q in enumerate(QS):
        if k % 2:  # chat and completions alike
            raw = client.chat.completions.with_raw_response.create(
                model=mode, messages=[{"role": "user", "content": q.question}], extra_body=meta(q))
            resp = raw.parse()
            text = resp.choices[0].message.content
        else:
            raw = client.completions.with_raw_response.create(model=mode, prompt=q.question, extra_body=meta(q))
            resp = raw.parse()
            text = resp.choices[0].text
        d = resp.model_extra["tourney"]
        got[q.id] = d["answer"]
        escalated.append(d["escalated"])
        assert raw.headers["x-tourney-model"] == d["model"] and raw.headers["x-tourney-mode"] == mode
        assert d["model"] != "fallback" and not d["fallback"] and f"#### {d['answer']}" in text
    assert got == want
    if mode == "router":
        assert 0 < sum(escalated) < len(QS)  # both paths taken
        assert resp.model_extra["tourney"]["threshold"] is not None


def test_direct_models_answer_as_the_single_model_modes(client, submitted):
    for mode, same in (("student", "speed"), ("teacher", "accuracy")):
        for q in QS[:4]:
            r = client.completions.create(model=mode, prompt=q.question, extra_body=meta(q))
            assert r.model_extra["tourney"]["answer"] == submitted[same][q.id]


def test_streaming_gives_the_decision_first_and_the_same_answer(client):
    for q in QS[:4]:
        whole = client.chat.completions.create(model="router", messages=[{"role": "user", "content": q.question}])
        stream = client.chat.completions.create(model="router", messages=[{"role": "user", "content": q.question}],
                                                stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
        route = chunks[0].model_extra["tourney"]
        assert chunks[0].choices[0].delta.role == "assistant"
        assert route["model"] == whole.model_extra["tourney"]["model"]
        assert route["escalated"] == whole.model_extra["tourney"]["escalated"]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == whole.choices[0].message.content
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
        done = [c for c in chunks if c.choices and c.choices[0].finish_reason]
        assert len(done) == 1 and done[0].model_extra["tourney"]["answer"] == whole.model_extra["tourney"]["answer"]
    s = client.completions.create(model="router-speed", prompt=[q.question for q in QS[:3]], stream=True)
    texts: dict[int, str] = {}
    for c in s:
        for ch in c.choices:
            texts[ch.index] = texts.get(ch.index, "") + ch.text
    assert sorted(texts) == [0, 1, 2] and all("####" in t for t in texts.values())


def test_metrics_count_modes_outcomes_and_latencies(client, mini_server):
    client.completions.create(model="router", prompt=QS[0].question)
    text = httpx.get(mini_server.url + "/metrics").text
    for name in ('tourney_requests_total{mode="router",outcome="student"}', "tourney_escalation_share",
                 'tourney_model_latency_seconds_bucket{le="+Inf",model="student"}',
                 'tourney_request_latency_seconds_count{mode="router"}', 'tourney_queue_depth{model="student"}',
                 'tourney_batch_size_count{model="teacher"}'):
        assert name in text, name


def rows_when_written(path: Path, ids: set[str]) -> list:
    """The log's rows once every id in `ids` is there (the writer flushes every 100 ms)."""
    wait_until(lambda: path.exists() and ids <= {r.id for r in read_results(path)}, f"{len(ids)} rows in {path}",
               poll_s=0.1)
    return read_results(path)


def test_the_request_log_is_read_by_report_regress_and_route_eval(client, mini_server, tmp_path):
    qs = dev_questions(12, offset=60)
    for q in qs:
        client.completions.create(model="router", prompt=q.question, extra_body=meta(q))
    log = mini_server.log_dir
    rows = {r.id: r for r in rows_when_written(log / "router" / "results.jsonl", {q.id for q in qs})}
    assert {q.id for q in qs} <= set(rows) and all(rows[q.id].gold == q.answer for q in qs)
    # report: accuracy per type from served traffic
    out = cli("report", log / "router")
    assert "long_chain" in out or "one_step" in out
    report = json.loads((log / "router" / "report.json").read_text())
    assert report["overall"]["n"] == len(rows)
    # regress: the served answers against the student alone on the same questions (paired by id)
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"id": q.id, "question": q.question, "answer": q.answer, "type": q.type}) + "\n"
                            for q in qs))
    cli("eval", "--model", "mini-student", "--data", data, "--out", tmp_path / "student")
    from click.testing import CliRunner

    from tourney.cli.main import main

    res = CliRunner().invoke(main, ["regress", str(tmp_path / "student"), str(log / "router"), "--json",
                                    str(tmp_path / "regress.json")])
    assert res.exit_code in (0, 1), res.output
    assert json.loads((tmp_path / "regress.json").read_text())["overall"]["n"] == len(qs)
    # route eval: the escalated questions, where both models answered
    cli("route", "eval", "--student", log / "pairs" / "student", "--teacher", log / "pairs" / "teacher",
        "--out", tmp_path / "route")
    ev = json.loads((tmp_path / "route" / "route_eval.json").read_text())
    assert ev["n"] == len(read_results(log / "pairs" / "teacher" / "results.jsonl")) > 0


def test_lm_eval_local_chat_completions_evaluates_through_the_server(mini_server, mini_router, tmp_path):
    lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is not installed")
    from lm_eval.tasks import TaskManager

    data = Path(__file__).resolve().parents[1] / "routers" / "data" / "mini10.jsonl"
    folder = tmp_path / "tasks"
    folder.mkdir()
    text = (Path(__file__).parent / "data" / "tourney_serve_mini.yaml").read_text()
    (folder / "tourney_serve_mini.yaml").write_text(text.replace("test: tests/routers/data/mini10.jsonl", f"test: {data}"))
    res = lm_eval.simple_evaluate(
        model="local-chat-completions",
        model_args=f"model=router,base_url={mini_server.base_url}/chat/completions,num_concurrent=2,max_retries=1",
        tasks=["tourney_serve_mini"], apply_chat_template=True, log_samples=True,
        task_manager=TaskManager(include_path=str(folder), include_defaults=False))
    acc = res["results"]["tourney_serve_mini"]["exact_match,strict-match"]
    # the same ten questions through `tourney submit --mode balanced`
    lines = [json.loads(x) for x in data.read_text().splitlines()]
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("".join(json.dumps({"id": f"m{i}", "question": x["question"]}) + "\n" for i, x in enumerate(lines)))
    cli("submit", "--questions", qfile, "--router", mini_router, "--mode", "balanced", "--deadline-ms", 60000,
        "--out", tmp_path / "sub")
    answers = [json.loads(x)["answer"] for x in (tmp_path / "sub" / "submission.jsonl").read_text().splitlines()]
    gold = [x["answer"].rsplit("#### ", 1)[1].strip() for x in lines]
    assert acc == pytest.approx(sum(a == g for a, g in zip(answers, gold)) / len(gold))
    assert len(res["samples"]["tourney_serve_mini"]) == 10
