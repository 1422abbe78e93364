"""`tourney serve` with the miniature student in-process and a teacher upstream (a stub of our
own behind the openai backend) that fails or stalls on a share of questions: every request is
still answered, the fallbacks are marked in the responses and counted in /metrics; SIGTERM lets
a request in flight finish before the server exits."""
from __future__ import annotations

import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

openai = pytest.importorskip("openai", reason="the openai client is needed (pip install 'tourney[serve]')")

from tests.serve.conftest import dev_questions, start_serve, stop_serve  # noqa: E402
from tests.serve.stub_upstream import stub_upstream  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEADLINE_MS = 5000  # well above a student batch on a busy 2-core CPU: only the stub makes fallbacks
STALL_S = 12.0  # a stalled teacher says nothing this long: an answer that came sooner did not wait for it


def metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"{name}\{{(.*)\}} (\S+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            total += float(m.group(2))
    return total


def pick(item: str, n: int):
    return [q for q in dev_questions(500) if f"How many {item}" in q.question][:n]


@pytest.fixture(scope="module")
def faulty(mini_router, tmp_path_factory):
    with stub_upstream(stall_s=STALL_S, slow_s=1.0) as (url, seen, marks):
        served = start_serve(mini_router, tmp_path_factory.mktemp("faulty"),
                             ["--teacher", f"openai:stub@{url}", "--deadline-ms", str(DEADLINE_MS)])
        try:
            yield served, seen, marks
        finally:
            stop_serve(served)


def test_every_request_is_answered_and_every_fallback_marked_and_counted(faulty):
    served, seen, _ = faulty
    client = openai.OpenAI(base_url=served.base_url, api_key="unused", timeout=60, max_retries=0)
    bad = {"eggs": pick("eggs", 4), "coins": pick("coins", 4), "pens": pick("pens", 4), "books": pick("books", 6)}
    jobs = [(mode, kind, q) for kind, qs in bad.items() for q in qs for mode in ("router-accuracy", "router")]

    def call(job):
        mode, kind, q = job
        t = time.monotonic()
        r = client.completions.create(model=mode, prompt=q.question)
        return job, r, time.monotonic() - t

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, jobs))
    assert len(results) == len(jobs)
    marked, pens_retries = 0, 0
    for (mode, kind, q), r, wall in results:
        d = r.model_extra["tourney"]
        assert d["answer"] and d["model"] in ("student", "teacher"), (kind, d["error"])  # answered, never an error
        assert wall < STALL_S  # decided at the deadline, not when the stalled teacher would have answered
        marked += d["fallback"]
        if d["escalated"] and kind == "eggs":  # HTTP 500 every time: retried, then the student stands
            assert d["model"] == "student" and d["fallback"] and not d["deadline_fallback"] and d["attempts"] >= 2
        if d["escalated"] and kind == "coins":  # stalled past the deadline
            assert d["model"] == "student" and d["fallback"] and d["deadline_fallback"]
        if d["escalated"] and kind == "pens":  # the first request of a question gets a 503, then an answer
            assert d["model"] == "teacher" and not d["fallback"]
            pens_retries += d["attempts"] - 1
        if mode == "router-accuracy" and kind == "books":
            assert d["model"] == "teacher" and d["answer"] == "42" and not d["fallback"]
    metrics = httpx.get(served.url + "/metrics").text
    assert marked >= 8  # at least the router-accuracy eggs and coins questions
    assert metric_sum(metrics, "tourney_fallbacks_total") == marked
    assert metric_sum(metrics, "tourney_fallbacks_total", reason="deadline") >= 4
    assert metric_sum(metrics, "tourney_upstream_errors_total", model="teacher", kind="http_500") >= 8
    assert metric_sum(metrics, "tourney_upstream_errors_total", model="teacher", kind="http_503") >= 4
    def asked(q) -> int:  # requests the stub got for q (it sees the rendered prompt)
        return sum(n for text, n in seen.items() if q.question in text)
    assert all(asked(q) >= 2 for q in bad["eggs"])  # retried upstream
    assert pens_retries == sum(1 for q in bad["pens"] if asked(q))


@pytest.mark.parametrize("mode", ["teacher", "router-accuracy"])
def test_a_teacher_chosen_up_front_streams_as_it_generates(faulty, mode):
    served, _, marks = faulty
    client = openai.OpenAI(base_url=served.base_url, api_key="unused", timeout=60, max_retries=0)
    q = pick("shells", 2)[mode == "teacher"]
    got = []  # (time.monotonic(), chunk)
    for chunk in client.chat.completions.create(model=mode, messages=[{"role": "user", "content": q.question}],
                                                stream=True):
        got.append((time.monotonic(), chunk))
    first_text = next(t for t, c in got if c.choices and c.choices[0].delta.content)
    (end_mark,) = [v for k, v in marks.items() if q.question in k]
    assert first_text < end_mark  # the first piece reached the client before the teacher had finished
    assert got[0][1].model_extra["tourney"]["model"] == "teacher"  # the decision came first
    text = "".join(c.choices[0].delta.content or "" for _, c in got if c.choices)
    assert text == " counting shells\n#### 42"
    final = [c for _, c in got if c.choices and c.choices[0].finish_reason]
    assert final[0].model_extra["tourney"]["answer"] == "42" and not final[0].model_extra["tourney"]["fallback"]


def test_sigterm_drains_requests_in_flight(mini_router, tmp_path):
    q = pick("stamps", 1)[0]  # the stub takes a second over it
    with stub_upstream(slow_s=1.5) as (url, seen, _):
        served = start_serve(mini_router, tmp_path, ["--teacher", f"openai:stub@{url}", "--deadline-ms", "20000"])
        try:
            out = {}
            t = threading.Thread(target=lambda: out.update(r=httpx.post(
                served.base_url + "/completions", json={"model": "teacher", "prompt": q.question}, timeout=30)))
            t.start()
            wait_until(lambda: any(q.question in text for text in seen), "the request to reach the stub")
            served.process.send_signal(signal.SIGTERM)
            t.join(30)
            assert out["r"].status_code == 200 and out["r"].json()["tourney"]["answer"] == "42"
            # uvicorn re-raises the signal once it has drained: the exit status says "ended by SIGTERM"
            assert served.process.wait(30) in (0, -signal.SIGTERM)
            rows = (tmp_path / "log" / "teacher" / "results.jsonl").read_text().splitlines()
            assert len(rows) == 1  # logged and flushed before exit
        finally:
            stop_serve(served)
