"""tourney serve over scripted backends: modes, the decision it reports, deadlines, retries,
fallbacks, error statuses, streaming, metrics and the request log (no model anywhere)."""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager

import httpx
import pytest

from tourney.harness.rundir import read_results
from tests.serve.fakes import UPSTREAM, ask, models, serving
from tests.waiting import wait_until

# A bound no answer given at a 300 ms deadline comes near, on any machine: the tests assert that the
# deadline was kept (the reply did not wait for a model held until the test ends), never how fast.
NEVER_S = 60.0


@contextmanager
def released(gate: threading.Event):
    """Open `gate` when the block ends, pass or fail, so a held model never outlives its test."""
    try:
        yield gate
    finally:
        gate.set()


def metric(url: str, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, _, value = line.rpartition(" ")
            got = head[len(name):].strip("{}")
            if all(part in got.split(",") for part in want.split(",") if part):
                return float(value)
    return 0.0


def test_router_keeps_confident_answers_and_escalates_the_rest():
    student, teacher = models()
    with serving(student, teacher) as url:
        sure, unsure = ask(url, "router", "q1 how many?"), ask(url, "router", "q2 how many?", endpoint="chat")
        assert sure.status_code == 200 and unsure.status_code == 200
        a, b = sure.json(), unsure.json()
        assert a["choices"][0]["text"] == " so #### 1" and a["tourney"]["model"] == "student"
        assert a["tourney"]["confidence"] == pytest.approx(-0.1) and a["tourney"]["threshold"] == -1.0
        assert not a["tourney"]["escalated"] and sure.headers["x-tourney-escalated"] == "false"
        assert b["choices"][0]["message"] == {"role": "assistant", "content": " so #### 102"}
        assert b["tourney"]["model"] == "teacher" and b["tourney"]["escalated"] and b["tourney"]["answer"] == "102"
        assert unsure.headers["x-tourney-model"] == "teacher" and unsure.headers["x-tourney-confidence"] == "-3"
        assert teacher.asked() == ["q2"]
        assert metric(url, "tourney_escalated_total", mode="router") == 1
        assert metric(url, "tourney_escalation_share", mode="router") == 0.5


@pytest.mark.parametrize("mode, answer, student_asked, teacher_asked", [
    ("router-speed", "2", True, False), ("student", "2", True, False),
    ("teacher", "102", False, True), ("router-accuracy", "102", None, True)])  # None: the backup may be cancelled
def test_other_modes_ask_the_models_they_name(mode, answer, student_asked, teacher_asked):
    student, teacher = models()
    with serving(student, teacher) as url:
        r = ask(url, mode, "q2 how many?")
        assert r.status_code == 200, r.text
        assert r.json()["tourney"]["answer"] == answer and r.json()["model"] == mode
        assert bool(teacher.calls) == teacher_asked
        if student_asked is not None:
            assert bool(student.calls) == student_asked
        if student.calls:  # one sample, no logprobs: no confidence is computed outside `router`
            assert all(cfg.logprobs is None and cfg.n == 1 for _, cfg in student.calls)


def test_slow_teacher_misses_the_deadline_and_the_student_answer_stands():
    busy = threading.Event()  # the teacher never answers until the test ends
    student, teacher = models(teacher_gate=busy)
    with serving(student, teacher, deadline_ms=300) as url, released(busy):
        r = ask(url, "router", "q2 how many?")
        d = r.json()["tourney"]
        assert r.status_code == 200 and d["model"] == "student" and d["answer"] == "2"
        assert d["escalated"] and d["fallback"] and d["deadline_fallback"]
        assert r.headers["x-tourney-deadline-fallback"] == "true"
        assert d["total_latency_ms"] / 1000 < NEVER_S  # answered at its deadline, not after the teacher
        assert "no answer within the deadline" in d["error"]
        direct = ask(url, "teacher", "q2 how many?")
        assert direct.status_code == 504 and direct.json()["error"]["code"] == "deadline_exceeded"
        assert metric(url, "tourney_fallbacks_total", mode="router", reason="deadline") == 1


def test_failing_upstream_teacher_is_retried_within_the_deadline_then_the_student_stands():
    student, teacher = models(teacher_fail={"q2"})
    # 20, 40, 80, 160, 320, 640 ms pauses: three attempts fit in 2 s even on a loaded machine
    with serving(student, teacher, teacher_spec=UPSTREAM, deadline_ms=2000, retry_backoff_ms=20) as url:
        d = ask(url, "router", "q2 how many?").json()["tourney"]
        assert d["model"] == "student" and d["fallback"] and not d["deadline_fallback"]
        assert d["attempts"] >= 3 and "HTTP 503" in d["error"]
        assert len(teacher.calls) == d["attempts"]
        assert metric(url, "tourney_upstream_errors_total", model="teacher", kind="http_503") == d["attempts"]
        direct = ask(url, "teacher", "q2 how many?")
        assert direct.status_code == 502 and direct.json()["error"]["type"] == "upstream_error"
        ok = ask(url, "router", "q4 how many?").json()["tourney"]  # the teacher answers other questions
        assert ok["model"] == "teacher" and ok["attempts"] == 1 and not ok["fallback"]


def test_a_slow_teacher_never_holds_up_student_only_requests():
    busy = threading.Event()
    student, teacher = models(teacher_gate=busy)
    with serving(student, teacher) as url:
        slow = {}
        t = threading.Thread(target=lambda: slow.update(r=ask(url, "teacher", "q1 how many?")))
        t.start()
        assert teacher.started.wait(NEVER_S)  # the teacher lane is busy now, until the gate opens
        fast = ask(url, "router-speed", "q3 how many?")
        assert fast.status_code == 200 and "r" not in slow  # answered while the teacher still works
        busy.set()
        t.join()
        assert slow["r"].status_code == 200


def test_concurrent_requests_are_answered_in_dynamic_batches():
    gate = threading.Event()  # the first call holds the lane while the other three queue
    student, teacher = models(student_gate=gate)
    with serving(student, teacher, batch_window_ms=50) as url:
        out = {}
        threads = [threading.Thread(target=lambda i=i: out.update({i: ask(url, "router-speed", f"q{i} how many?")}))
                   for i in (1, 2, 3, 4)]
        for t in threads:
            t.start()
        assert student.started.wait(NEVER_S)
        wait_until(lambda: metric(url, "tourney_queue_depth", model="student") >= 4 - len(student.asked()),
                   "the other requests to queue behind the first call")
        gate.set()
        for t in threads:
            t.join()
        assert [out[i].json()["tourney"]["answer"] for i in (1, 2, 3, 4)] == ["1", "2", "3", "4"]
        assert len(student.calls) < 4 and sorted(student.asked()) == ["q1", "q2", "q3", "q4"]


def test_error_statuses_have_the_openai_shape():
    gate = threading.Event()
    student, teacher = models(student_gate=gate)
    with serving(student, teacher, max_body_bytes=2000, max_inflight=1) as url, released(gate):
        def post(body, **kw):
            return httpx.post(url + "/v1/completions", content=body, headers={"content-type": "application/json"}, **kw)
        cases = {400: post(b"{not json"), 413: post(b"x" * 3000), 404: post(b'{"model": "gpt-9", "prompt": "q1"}')}
        bad = post(b'{"model": "router", "prompt": "q1", "max_tokens": -3}')
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "max_tokens"
        busy = {}
        t = threading.Thread(target=lambda: busy.update(r=ask(url, "router-speed", "q1 how many?")))
        t.start()
        assert student.started.wait(NEVER_S)  # the one request allowed is in flight, held by the gate
        cases[429] = ask(url, "router-speed", "q3 how many?")
        gate.set()
        t.join()
        assert busy["r"].status_code == 200 and cases[429].headers["retry-after"] == "1"
        for status, r in cases.items():
            assert r.status_code == status, (status, r.text)
            err = r.json()["error"]
            assert set(err) == {"message", "type", "param", "code"} and "Traceback" not in r.text
        assert metric(url, "tourney_rejected_total", status="429") == 1


def test_the_key_is_needed_when_one_is_set(monkeypatch):
    monkeypatch.setenv("TOURNEY_TEST_KEY", "s3cret")
    student, teacher = models()
    with serving(student, teacher, api_key_env="TOURNEY_TEST_KEY") as url:
        assert ask(url, "router", "q1 how many?").status_code == 401
        r = httpx.post(url + "/v1/completions", json={"model": "router", "prompt": "q1 how many?"},
                       headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        r = httpx.post(url + "/v1/completions", json={"model": "router", "prompt": "q1 how many?"},
                       headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200
        assert httpx.get(url + "/health").status_code == 200  # probes need no key


def test_503_while_the_models_load():
    student, teacher = models()
    gate = threading.Event()
    with serving(student, teacher, load_gate=gate) as url:
        r = ask(url, "router", "q1 how many?")
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
        assert httpx.get(url + "/health").json()["status"] == "loading"
        gate.set()
        wait_until(lambda: httpx.get(url + "/health").status_code == 200, "the models to load")
        assert ask(url, "router", "q1 how many?").status_code == 200


def sse_events(r: httpx.Response) -> list:
    out = []
    for line in r.text.splitlines():
        if line.startswith("data: "):
            data = line[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_streaming_sends_the_decision_first_and_usage_last():
    student, teacher = models()
    with serving(student, teacher) as url:
        r = ask(url, "router", "q2 how many?", endpoint="chat", stream=True, stream_options={"include_usage": True})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        ev = sse_events(r)
        first, *middle, final, usage, done = ev
        assert first["tourney"] == {"id": first["tourney"]["id"], "model": "teacher", "escalated": True,
                                    "confidence": -3.0, "threshold": -1.0}
        assert first["choices"][0]["delta"]["role"] == "assistant"
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in middle) == " so #### 102"
        assert final["choices"][0]["finish_reason"] == "stop" and final["tourney"]["model"] == "teacher"
        assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 5 and done == "[DONE]"


def test_a_list_of_prompts_is_a_list_of_questions():
    student, teacher = models()
    with serving(student, teacher) as url:
        r = httpx.post(url + "/v1/completions", json={
            "model": "router", "prompt": ["q1 how many?", "q2 how many?"],
            "tourney": {"questions": [{"id": "a", "answer": "1"}, {"id": "b", "type": "two", "answer": 7}]}})
        body = r.json()
        assert [c["text"] for c in body["choices"]] == [" so #### 1", " so #### 102"]
        assert [d["id"] for d in body["tourney"]] == ["a", "b"] and r.headers["x-tourney-model"] == "student,teacher"


def test_every_request_is_logged_as_result_rows(tmp_path):
    student, teacher = models()
    with serving(student, teacher, log_dir=str(tmp_path / "log")) as url:
        for q, gold in (("q1", "1"), ("q2", "102"), ("q3", "9")):
            ask(url, "router", f"{q} how many?", tourney={"id": q, "answer": gold, "type": "t"})
        ask(url, "router-speed", "q4 how many?")
    rows = read_results(tmp_path / "log" / "router" / "results.jsonl")  # the harness's own reader
    assert [(r.id, r.prediction, r.correct, r.type) for r in rows] == [
        ("q1", "1", True, "t"), ("q2", "102", True, "t"), ("q3", "3", False, "t")]
    raw = [json.loads(x) for x in (tmp_path / "log" / "router" / "results.jsonl").read_text().splitlines()]
    assert [x["tourney"]["model"] for x in raw] == ["student", "teacher", "student"]
    assert len(read_results(tmp_path / "log" / "router-speed" / "results.jsonl")) == 1
    # the escalated question is in both pair runs: the student's row keeps its logprobs
    (s_row,) = read_results(tmp_path / "log" / "pairs" / "student" / "results.jsonl")
    (t_row,) = read_results(tmp_path / "log" / "pairs" / "teacher" / "results.jsonl")
    assert s_row.id == t_row.id == "q2" and s_row.token_logprobs == [-3.0] and t_row.prediction == "102"


def test_questions_can_be_left_out_of_the_log(tmp_path):
    student, teacher = models()
    with serving(student, teacher, log_dir=str(tmp_path / "log"), log_questions=False, shadow_share=1.0) as url:
        ask(url, "router", "q1 how many?")
        wait_until(lambda: teacher.calls, "the shadow call to the teacher, made after the reply")
    rows = [json.loads(x) for p in ("router", "pairs/student", "pairs/teacher")
            for x in (tmp_path / "log" / p / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["question"] == "" for r in rows)  # shadow: the confident q1 paired too


def test_router_accuracy_keeps_the_student_as_backup_when_the_teacher_fails():
    student, teacher = models(teacher_fail={"q2"})
    with serving(student, teacher, teacher_spec=UPSTREAM, deadline_ms=2000, retry_backoff_ms=20) as url:
        r = ask(url, "router-accuracy", "q2 how many?")
        d = r.json()["tourney"]
        assert r.status_code == 200 and d["model"] == "student" and d["answer"] == "2"
        assert d["fallback"] and d["escalated"] and d["attempts"] >= 2


def test_an_unreachable_upstream_teacher_is_503_directly_and_a_marked_fallback_in_the_router():
    from tourney.errors import BackendError
    from tests.routers.fakes import ScriptedBackend

    class Down(ScriptedBackend):
        def check(self) -> None:
            raise BackendError("connection refused")

    student, teacher = models()
    down = Down(spec="fake:t", outputs=teacher.outputs)
    with serving(student, down, teacher_spec=UPSTREAM) as url:
        r = ask(url, "teacher", "q2 how many?")
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
        d = ask(url, "router", "q2 how many?").json()["tourney"]
        assert d["model"] == "student" and d["escalated"] and d["fallback"] and "not ready" in d["error"]
        assert down.calls == []  # never asked while it is down
        health = httpx.get(url + "/health").json()
        assert health["status"] == "degraded" and health["models"]["teacher"]["ready"] is False


def test_multiple_choice_through_the_extension():
    from tests.routers.fakes import ScriptedBackend

    student = ScriptedBackend(spec="fake:s", outputs={"q1": [" The answer is C"]}, logprobs={"q1": [-0.1]})
    teacher = ScriptedBackend(spec="fake:t", outputs={"q1": [" The answer is A"]})
    with serving(student, teacher) as url:
        r = ask(url, "router", "q1 which colour?", tourney={"choices": ["red", "green", "blue"], "answer": "C"})
        d = r.json()["tourney"]
        assert r.status_code == 200 and d["answer"] == "C" and d["model"] == "student"
        assert len(student.calls) == 1  # rendered with the options (mc template), answered by letter
        bad = ask(url, "router", "q1 which colour?", tourney={"choices": ["only one"]})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "tourney.choices"
