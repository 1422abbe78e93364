"""OpenAIBackend against a small OpenAI-imitating server on 127.0.0.1 with scripted behaviour.

The request's `model` field picks the script, so one server serves every test:
ok / ok-nousage: streamed text (with or without a usage chunk); rate: 429 once per prompt, then
ok; down: always 500; leak: 500 whose body echoes the Authorization header; bad: 400; slow:
sleeps past the client's timeout; gate: holds each request until two are in flight (or 2 s), to
observe the concurrency limit; echo / echo-strict / noecho: non-streamed scoring responses;
garble: a malformed stream chunk on the first attempt, then ok; surrogate: an output holding a
lone UTF-16 surrogate as a JSON escape; vary: sleeps as long as the prompt says ("p0.3" 0.3 s),
recording when each request arrived and ended.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import Counter
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from tourney.models.openai_backend import OpenAIBackend, parse_target, retry_delay, sum_choice_logprobs
from tourney.models.registry import load_backend, parse_spec
from tests.waiting import wait_until
from tourney.models.types import BackendError, GenConfig, ModelSpec

SECRET = "sk-test-SECRET-0123456789"
PIECES = ["Hel", "lo", " world"]


class FakeState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.attempts: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.spans: dict[str, tuple[float, float]] = {}  # vary: prompt -> (arrival, end)


def _tokens(text: str) -> list[str]:
    """The fake tokenizer: words, each with its leading space."""
    out: list[str] = []
    for ch in text:
        if ch == " " or not out:
            out.append(ch)
        else:
            out[-1] += ch
    return out


class Handler(BaseHTTPRequestHandler):
    state: FakeState  # set on the subclass each server uses

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._json(200, {"object": "list", "data": [{"id": "ok"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        st = self.state
        key = json.dumps(body.get("prompt") or body.get("messages"))
        with st.lock:
            st.bodies.append(body)
            st.auth.append(self.headers.get("Authorization"))
            st.attempts[key] += 1
            attempt = st.attempts[key]
        model = body["model"]
        if model == "rate" and attempt == 1:
            return self._json(429, {"error": "slow down"}, {"Retry-After": "0"})
        if model == "down":
            return self._json(500, {"error": "boom"})
        if model == "leak":
            return self._json(500, {"error": f"bad header {self.headers.get('Authorization')}"})
        if model == "bad":
            return self._json(400, {"error": "no such thing"})
        if model == "slow":
            time.sleep(1.0)
        if model == "gate":
            with st.lock:
                st.in_flight += 1
                st.max_in_flight = max(st.max_in_flight, st.in_flight)
            end = time.monotonic() + 2.0
            while st.max_in_flight < 2 and time.monotonic() < end:
                time.sleep(0.01)
            time.sleep(0.02)
            with st.lock:
                st.in_flight -= 1
        if model == "vary":
            arrived = time.monotonic()
            time.sleep(float(body["prompt"].split("p")[1]))
            with st.lock:
                st.spans[body["prompt"]] = (arrived, time.monotonic())
        if model.startswith("echo") or model == "noecho":
            return self._score(body)
        if model == "garble" and attempt == 1:
            return self._raw_stream([b'data: {"choices": [{"text": "Hel"\n\n', b"data: [DONE]\n\n"])
        if model == "surrogate":
            piece = b'{"choices": [{"index": 0, "text": "a\\ud800b", "finish_reason": "stop"}]}'
            return self._raw_stream([b"data: " + piece + b"\n\n", b"data: [DONE]\n\n"])
        self._stream(body, chat=self.path.endswith("/chat/completions"), usage=model != "ok-nousage")

    def _raw_stream(self, events: list[bytes]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for event in events:
            self.wfile.write(event)
            self.wfile.flush()

    def _stream(self, body: dict[str, Any], chat: bool, usage: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        k = body.get("top_logprobs") if chat else body.get("logprobs")
        want_lp = body.get("logprobs") not in (None, False)

        def send(obj: Any) -> None:
            self.wfile.write(f"data: {json.dumps(obj)}\n\n".encode())
            self.wfile.flush()

        if chat:  # the role-only first chunk real servers send: no text, so no first token yet
            send({"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})
        for n, piece in enumerate(PIECES):
            lp_value = -0.5 * (n + 1)
            last = n == len(PIECES) - 1
            choice: dict[str, Any] = {"index": 0, "finish_reason": "length" if last else None}
            if chat:
                choice["delta"] = {"content": piece}
                if want_lp:
                    tops = [{"token": piece, "logprob": lp_value}, {"token": "x", "logprob": -9.0}][:k]
                    choice["logprobs"] = {"content": [{"token": piece, "logprob": lp_value, "top_logprobs": tops}]}
            else:
                choice["text"] = piece
                if want_lp:
                    tops = dict(list({piece: lp_value, "x": -9.0}.items())[:k]) if k else None
                    choice["logprobs"] = {"tokens": [piece], "token_logprobs": [lp_value], "top_logprobs": [tops]}
            send({"choices": [choice]})
        if usage and (body.get("stream_options") or {}).get("include_usage"):
            send({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}})
        self.wfile.write(b"data: [DONE]\n\n")

    def _score(self, body: dict[str, Any]) -> None:
        if body["model"] == "echo-strict" and body["max_tokens"] == 0:
            return self._json(400, {"error": "max_tokens must be at least 1"})
        text = body["prompt"]
        toks = _tokens(text)
        offsets = [sum(len(t) for t in toks[:i]) for i in range(len(toks))]
        lps: list[float | None] = [None] + [-float(len(t)) for t in toks[1:]]
        if body["max_tokens"] > 0:  # the one generated token, which scoring must ignore
            toks, offsets, lps = toks + [" gen"], offsets + [len(text)], lps + [-100.0]
        logprobs = None if body["model"] == "noecho" else {
            "tokens": toks, "token_logprobs": lps, "text_offset": offsets,
            "top_logprobs": [None] + [{t: lp} for t, lp in zip(toks[1:], lps[1:])],
        }
        self._json(200, {"choices": [{"text": text, "logprobs": logprobs, "finish_reason": "length"}]})


@pytest.fixture
def server() -> Iterator[tuple[str, FakeState]]:
    state = FakeState()
    handler = type("BoundHandler", (Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", state
    httpd.shutdown()
    httpd.server_close()


def make(url: str, model: str = "ok", **kw: Any) -> OpenAIBackend:
    kw = {"backoff_s": 0.001, "max_retries": 2, "timeout_s": 10.0, **kw}
    return OpenAIBackend(parse_spec(f"openai:{model}@{url}"), **kw)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# -- spec parsing and pure helpers ------------------------------------------------------------


def test_parse_target_splits_on_last_url_at() -> None:
    spec = parse_spec("openai:org/model@v2@http://127.0.0.1:8000/v1/")
    assert parse_target(spec) == ("org/model@v2", "http://127.0.0.1:8000/v1")


@pytest.mark.parametrize("target", ["qwen", "qwen@localhost:8000", "@http://h/v1", "m@http://"])
def test_malformed_spec_names_the_spec(target: str) -> None:
    with pytest.raises(BackendError, match="openai:MODEL@http") as info:
        OpenAIBackend(ModelSpec(raw=f"openai:{target}", kind="openai", target=target))
    assert f"openai:{target}" in str(info.value)


def test_registry_builds_backend_without_touching_network() -> None:
    backend = load_backend(f"openai:m@{closed_port_url()}", concurrency=2)
    assert isinstance(backend, OpenAIBackend) and backend.concurrency == 2
    backend.close()


def test_retry_delay_honours_capped_retry_after_else_backs_off() -> None:
    assert retry_delay(0, "2", 0.5) == 2.0
    assert retry_delay(0, "100000", 0.5) == 30.0
    for attempt in range(3):
        d = retry_delay(attempt, None, 0.5)
        assert 0.5 * 2**attempt <= d <= 0.55 * 2**attempt
    assert 1.0 <= retry_delay(1, "Wed, 21 Oct 2015 07:28:00 GMT", 0.5) <= 1.1


def test_sum_choice_logprobs_counts_tokens_after_prompt_only() -> None:
    lp = {"text_offset": [0, 3, 6, 9], "token_logprobs": [None, -1.0, -2.0, -4.0]}
    assert sum_choice_logprobs(lp, prompt_len=6, full_len=9) == -2.0  # the token at 9 was generated
    assert sum_choice_logprobs(lp, prompt_len=4, full_len=9) == -3.0  # straddling token 3..6 counts
    with pytest.raises(ValueError):
        sum_choice_logprobs(None, 3, 9)


# -- generation -----------------------------------------------------------------------------


def test_streamed_completion_with_usage_and_logprobs(server: tuple[str, FakeState]) -> None:
    url, state = server
    backend = make(url)
    out = backend.generate(["2+2=", "hi"], GenConfig(max_tokens=3, logprobs=2, stop=("\n",), seed=5, n=2))
    assert [len(gens) for gens in out] == [2, 2]
    g = out[0][0]
    assert g.text == "Hello world" and g.error is None
    assert g.finish_reason == "length"
    assert g.token_logprobs == [-0.5, -1.0, -1.5]
    assert g.top_logprobs == [{"Hel": -0.5, "x": -9.0}, {"lo": -1.0, "x": -9.0}, {" world": -1.5, "x": -9.0}]
    assert (g.prompt_tokens, g.completion_tokens) == (7, 3)
    assert g.ttft_s is not None and 0 <= g.ttft_s <= g.latency_s
    body = state.bodies[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["stop"] == ["\n"] and body["max_tokens"] == 3 and body["logprobs"] == 2
    # n samples are n requests with consecutive seeds
    assert sorted(b["seed"] for b in state.bodies if b["prompt"] == "2+2=") == [5, 6]
    backend.close()


def test_without_usage_or_logprobs(server: tuple[str, FakeState]) -> None:
    url, state = server
    g = make(url, "ok-nousage").generate(["q"], GenConfig(seed=None))[0][0]
    assert g.text == "Hello world"
    assert g.token_logprobs is None and g.top_logprobs is None  # never invented
    assert (g.prompt_tokens, g.completion_tokens) == (0, 3)  # chunk count stands in
    assert "seed" not in state.bodies[0] and "logprobs" not in state.bodies[0]


def test_chat_messages_and_chat_flag(server: tuple[str, FakeState]) -> None:
    url, state = server
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    out = make(url).generate([msgs], GenConfig(logprobs=1))
    g = out[0][0]
    assert g.text == "Hello world" and g.token_logprobs == [-0.5, -1.0, -1.5]
    assert g.top_logprobs == [{"Hel": -0.5}, {"lo": -1.0}, {" world": -1.5}]
    assert state.bodies[0]["messages"] == msgs
    assert state.bodies[0]["logprobs"] is True and state.bodies[0]["top_logprobs"] == 1
    make(url, chat=True).generate(["plain"], GenConfig())
    assert state.bodies[1]["messages"] == [{"role": "user", "content": "plain"}]


def test_extra_body_is_sent_with_every_request(server: tuple[str, FakeState]) -> None:
    url, state = server
    make(url, extra_body={"repeat_penalty": 1.0}).generate(["a", "b"], GenConfig())
    assert [b["repeat_penalty"] for b in state.bodies] == [1.0, 1.0]


def test_429_is_retried_then_succeeds(server: tuple[str, FakeState]) -> None:
    url, state = server
    g = make(url, "rate").generate(["a"], GenConfig())[0][0]
    assert g.error is None and g.text == "Hello world"
    assert state.attempts[json.dumps("a")] == 2


def test_500_until_retries_run_out_yields_error_and_batch_continues(server: tuple[str, FakeState]) -> None:
    url, state = server
    down = make(url, "down", max_retries=2)
    out = down.generate(["a", "b"], GenConfig())
    for gens in out:
        assert gens[0].text == "" and gens[0].finish_reason == "error"
        assert "HTTP 500" in (gens[0].error or "") and "3 attempts" in (gens[0].error or "")
    assert state.attempts[json.dumps("a")] == 3  # 1 + max_retries


def test_other_4xx_fails_at_once(server: tuple[str, FakeState]) -> None:
    url, state = server
    g = make(url, "bad", max_retries=3).generate(["a"], GenConfig())[0][0]
    assert g.finish_reason == "error" and "HTTP 400" in (g.error or "")
    assert state.attempts[json.dumps("a")] == 1


def test_slow_response_times_out(server: tuple[str, FakeState]) -> None:
    url, _ = server
    g = make(url, "slow", timeout_s=0.2, max_retries=0).generate(["a"], GenConfig())[0][0]
    assert g.finish_reason == "error" and "Timeout" in (g.error or "")


def test_connection_refused(server: tuple[str, FakeState]) -> None:
    url = closed_port_url()
    backend = make(url, max_retries=1)
    g = backend.generate(["a"], GenConfig())[0][0]
    assert g.finish_reason == "error" and g.error and "Connect" in g.error
    with pytest.raises(BackendError, match="cannot reach OpenAI-compatible server at") as info:
        backend.check()
    assert url in str(info.value)


def test_check_succeeds_on_live_server(server: tuple[str, FakeState]) -> None:
    make(server[0]).check()


def test_open_connections_asks_the_server_at_most_the_pool_s_size_and_never_raises(server: tuple[str, FakeState]) -> None:
    """A submission opens the connections its first questions will use before its clock starts
    (routers.runtime.deadline.warm_up); a server that is down is met by the timed calls instead."""
    backend = make(server[0], concurrency=3)
    try:
        assert backend.open_connections(2) == 2
        assert backend.open_connections(10) == 3  # never more than the pool holds
        assert backend.open_connections(0) == 0
    finally:
        backend.close()
    down = make(closed_port_url(), concurrency=2)
    try:
        assert down.open_connections(2) == 0
    finally:
        down.close()


def test_concurrency_limit_is_respected(server: tuple[str, FakeState]) -> None:
    url, state = server
    out = make(url, "gate", concurrency=2).generate([f"p{i}" for i in range(6)], GenConfig())
    assert all(gens[0].text == "Hello world" for gens in out)
    assert state.max_in_flight == 2
    assert sorted(b["prompt"] for b in state.bodies) == [f"p{i}" for i in range(6)]


def test_api_key_sent_but_never_leaked(
    server: tuple[str, FakeState], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    url, state = server
    monkeypatch.setenv("TOURNEY_TEST_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    ok = make(url, api_key_env="TOURNEY_TEST_KEY")
    ok.generate(["a"], GenConfig())
    assert state.auth[-1] == f"Bearer {SECRET}"
    leak = make(url, "leak", api_key_env="TOURNEY_TEST_KEY", max_retries=1)
    g = leak.generate(["a"], GenConfig())[0][0]
    assert g.error and "HTTP 500" in g.error and "Bearer ***" in g.error  # the echoed key was redacted
    texts += [g.error, repr(ok), repr(leak)]
    refused = make(closed_port_url(), api_key_env="TOURNEY_TEST_KEY", max_retries=0)
    texts.append(refused.generate(["a"], GenConfig())[0][0].error or "")
    with pytest.raises(BackendError) as info:
        refused.check()
    texts += [str(info.value), repr(info.value)]
    texts += [r.getMessage() for r in caplog.records]
    assert any("retry" in t for t in texts)  # the retry warnings were logged and checked
    assert not [t for t in texts if SECRET in t]


def test_no_key_no_authorization_header(server: tuple[str, FakeState], monkeypatch: pytest.MonkeyPatch) -> None:
    url, state = server
    monkeypatch.delenv("TOURNEY_TEST_KEY", raising=False)
    make(url, api_key_env="TOURNEY_TEST_KEY").generate(["a"], GenConfig())
    assert state.auth == [None]


# -- scoring --------------------------------------------------------------------------------


def test_score_choices_sums_choice_token_logprobs(server: tuple[str, FakeState]) -> None:
    url, state = server
    scores = make(url, "echo").score_choices(["The answer is", "Q:"], [[" yes", " no way"], [" A"]])
    assert scores == [[-4.0, -7.0], [-2.0]]
    assert state.bodies[0]["echo"] is True and state.bodies[0]["max_tokens"] == 0


def test_score_choices_falls_back_to_max_tokens_one(server: tuple[str, FakeState]) -> None:
    url, state = server
    scores = make(url, "echo-strict").score_choices(["The answer is"], [[" yes", " no way"]])
    assert scores == [[-4.0, -7.0]]  # the generated token is not counted
    assert 1 in [b["max_tokens"] for b in state.bodies]


def test_score_choices_without_prompt_logprobs_raises(server: tuple[str, FakeState]) -> None:
    url, _ = server
    with pytest.raises(BackendError, match="did not return prompt logprobs"):
        make(url, "noecho").score_choices(["Q:"], [[" A"]])


# -- continuous flow, stream faults, hostile text -----------------------------------------------


def test_requests_flow_continuously_with_exactly_c_in_flight(server: tuple[str, FakeState]) -> None:
    """No barrier between groups of prompts: with C=2, a slow first request does not hold the
    others back; the third request starts the moment the second ends, long before the first does."""
    url, state = server
    done: list[int] = []
    prompts = ["p0.6", "p0.05", "p0.05", "p0.05", "p0.05"]
    backend = make(url, "vary", concurrency=2)
    backend.generate_each(prompts, GenConfig(), lambda i, gens: done.append(i))
    assert sorted(done) == list(range(5)) and done[-1] == 0  # completion order: the slow one last
    slow_end = state.spans["p0.6"][1]
    starts = sorted(state.spans[p][0] for p in prompts)
    assert all(s < slow_end for s in starts)  # every request started while the slow one ran
    assert backend.requests_in_flight() == 0


def test_an_exception_in_on_done_stops_sending_and_is_raised(server: tuple[str, FakeState]) -> None:
    url, state = server

    def boom(i: int, gens: list) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        make(url, concurrency=2).generate_each([f"q{i}" for i in range(20)], GenConfig(), boom)
    assert len(state.bodies) < 20  # requests not started when it failed were never sent


def test_a_malformed_stream_chunk_is_retried_like_any_transient_fault(server: tuple[str, FakeState]) -> None:
    url, state = server
    g = make(url, "garble", max_retries=2).generate(["a"], GenConfig())[0][0]
    assert g.error is None and g.text == "Hello world"
    assert state.attempts[json.dumps("a")] == 2


def test_a_malformed_chunk_fails_only_after_the_retries(server: tuple[str, FakeState]) -> None:
    url, state = server
    g = make(url, "garble", max_retries=0).generate(["a"], GenConfig())[0][0]
    assert g.finish_reason == "error" and "malformed stream chunk" in (g.error or "")


def test_a_lone_surrogate_is_replaced_and_counted(server: tuple[str, FakeState]) -> None:
    url, _ = server
    g = make(url, "surrogate").generate(["a"], GenConfig())[0][0]
    assert g.text == "a\ufffdb" and g.replaced_surrogates == 1
    g.text.encode("utf-8")  # storable


def test_eval_cli_ends_with_a_line_and_exit_3_when_requests_failed_for_good(server, tmp_path) -> None:
    from click.testing import CliRunner

    from tourney.cli.main import FAILED_REQUESTS_EXIT, main

    url, _ = server
    data = tmp_path / "q.jsonl"
    data.write_text('{"id": "a", "question": "q?", "answer": "1"}\n{"id": "b", "question": "r?", "answer": "2"}\n')
    args = ["eval", "--model", f"openai:down@{url}", "--data", str(data), "--out", str(tmp_path / "o"),
            "--model-arg", "max_retries=0", "--model-arg", "backoff_s=0"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == FAILED_REQUESTS_EXIT == 3, res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("error: 2 request(s) failed for good") and "run the same command again" in last
    assert (tmp_path / "o" / "report.json").exists()  # the report is written all the same


def test_eval_against_a_server_never_imports_torch_or_transformers(server, tmp_path) -> None:
    """Start-up counts in the whole command's time: the server path stays free of the heavy stack."""
    import subprocess
    import sys
    from pathlib import Path

    url, _ = server
    data = tmp_path / "q.jsonl"
    data.write_text('{"id": "a", "question": "q?", "answer": "1"}\n')
    script = (
        "import sys\n"
        "from tourney.cli.main import main\n"
        f"main(['eval', '--model', 'openai:ok@{url}', '--data', {str(data)!r}, '--out', {str(tmp_path / 'o')!r}],"
        " standalone_mode=False)\n"
        "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'vllm', 'llama_cpp') if m in sys.modules))\n"
    )
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root,
                         env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "HEAVY []" in res.stdout, res.stdout
    assert (tmp_path / "o" / "report.json").exists()


def test_a_slot_stays_taken_until_on_done_s_future_is_settled(server: tuple[str, FakeState]) -> None:
    """on_done hands back a future: with C = 1 no second request is sent until it is settled
    (from another thread, as the run loop settles it once the answer is on disk)."""
    url, state = server
    sent_while_waiting: list[int] = []

    def on_done(i: int, gens: list) -> Future:
        waiting: Future = Future()

        def settle_later() -> None:
            time.sleep(0.2)  # room for a wrongly sent next request to arrive
            sent_while_waiting.append(len(state.bodies))
            waiting.set_result(None)

        threading.Thread(target=settle_later).start()
        return waiting

    make(url, concurrency=1).generate_each(["a", "b", "c"], GenConfig(), on_done)
    assert sent_while_waiting == [1, 2, 3]
    assert len(state.bodies) == 3


def test_a_future_settled_with_an_exception_stops_sending_and_is_raised(server: tuple[str, FakeState]) -> None:
    url, state = server

    def on_done(i: int, gens: list) -> Future:
        waiting: Future = Future()
        waiting.set_exception(OSError("disk full"))
        return waiting

    with pytest.raises(OSError, match="disk full"):
        make(url, concurrency=2).generate_each([f"q{i}" for i in range(20)], GenConfig(), on_done)
    assert len(state.bodies) < 20


def test_answer_all_over_a_server_stops_when_recording_fails(server: tuple[str, FakeState]) -> None:
    """The run loop's failure settles every future it handed out, so no worker waits for ever and
    the recording error is what the caller sees."""
    from tourney.harness.pipeline import Prompting, answer_all
    from tourney.harness.types import Question

    url, state = server
    qs = [Question(id=f"q{i}", question=f"What is {i}?", answer=str(i)) for i in range(40)]
    prompts, stop = Prompting().render(qs)
    calls = 0

    def record(answers: list) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        answer_all(make(url, concurrency=4), qs, prompts, GenConfig(stop=stop), record)
    assert len(state.bodies) < 40


def test_a_failing_worker_never_settles_the_futures_the_caller_handed_out(server: tuple[str, FakeState]) -> None:
    """When one slot's on_done fails, the other slots stop waiting, but the future a waiting slot
    holds stays the caller's to settle: asyncio.wrap_future cancelled it, and a caller settling it
    at that moment met InvalidStateError instead of its own error (issue 27). Deterministic: the
    first answer's future is never settled by the test before the second answer fails."""
    url, _ = server
    handed: list[Future] = []

    def on_done(i: int, gens: list) -> Future:
        if handed:  # the second answer: its slot fails while the first slot waits on its future
            raise OSError("disk full")
        handed.append(Future())
        return handed[0]

    with pytest.raises(OSError, match="disk full"):
        make(url, concurrency=2).generate_each(["a", "b"], GenConfig(), on_done)
    assert len(handed) == 1
    assert not handed[0].done()  # not cancelled: the caller settles it, exactly once
    handed[0].set_exception(OSError("stopped"))  # what the run loop does next: no InvalidStateError


def test_check_is_not_starved_by_requests_holding_every_connection(server: tuple[str, FakeState], monkeypatch) -> None:
    """`check` gets a connection of its own: with the one connection of a concurrency-1 backend
    held by a slow answer, a working server is still found reachable (tourney serve re-checks
    its upstream while answers stream, and called a busy server down)."""
    import tourney.models.openai_backend as ob

    url, state = server
    monkeypatch.setattr(ob, "CHECK_TIMEOUT_S", 30.0)  # far longer than any check on a loaded machine
    backend = make(url, model="vary", concurrency=1, timeout_s=120)
    threading.Thread(target=lambda: backend.generate(["p40"], GenConfig()), daemon=True).start()
    wait_until(lambda: state.bodies, "the slow request to reach the server")
    backend.check()  # raises BackendError if it waits 30 s for the pool's only connection (held 40 s)
