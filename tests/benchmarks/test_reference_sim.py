"""benchmarks/reference_sim.py and the stub server's load model: the pair answers with the recorded
outputs (real accuracy), under load too; the halves split cleanly. No timing is asserted."""
from __future__ import annotations

import json

import httpx
import pytest

from benchmarks.reference_sim import DATASETS, split
from benchmarks.stub_server import load_answers
from tests.stub_openai import missing_modules, stub_server

pytestmark = pytest.mark.skipif(bool(missing_modules()), reason="starlette/uvicorn not installed")


def test_replayed_answers_by_question_id(tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"id": "a", "question": "What is 2+2?", "answer": "4"}) + "\n"
                    + json.dumps({"id": "b", "question": "Pick one", "choices": ["x", "y"], "answer": "B"}) + "\n")
    replay = tmp_path / "s.jsonl"
    replay.write_text(json.dumps({"id": "a", "output": "2+2 = 4. #### 4"}) + "\n")
    assert load_answers(data, f"replay:{replay}") == {"What is 2+2?": "2+2 = 4. #### 4"}


def test_a_loaded_stub_answers_every_request_with_the_recorded_output(tmp_path):
    data = tmp_path / "q.jsonl"
    rows = [{"id": f"q{i}", "question": f"Question number {i}: how many?", "answer": str(i)} for i in range(6)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    replay = tmp_path / "s.jsonl"
    replay.write_text("".join(json.dumps({"id": r["id"], "output": f"It is {r['answer']} apples. #### {r['answer']}"}) + "\n"
                              for r in rows))
    # knee 1: every request past the first slows the others (the Decoder path), streamed or not
    with stub_server(data, system=f"replay:{replay}", base_s=0.001, per_token_s=0.001, itl_knee=1, itl_slope=0.5,
                     tail_every=0, chunk_tokens=2) as server:
        with httpx.Client(timeout=30) as c:
            for stream in (False, True):
                for r in rows:
                    body = {"prompt": f"Question: {r['question']}\nAnswer:", "max_tokens": 64, "stream": stream}
                    if stream:
                        text = ""
                        with c.stream("POST", server.base_url + "/completions", json=body) as resp:
                            for line in resp.iter_lines():
                                if line.startswith("data: {"):
                                    text += "".join(ch.get("text", "") for ch in json.loads(line[6:])["choices"])
                    else:
                        text = c.post(server.base_url + "/completions", json=body).json()["choices"][0]["text"]
                    assert text == f"It is {r['answer']} apples. #### {r['answer']}"
        st = server.stats()
        assert st["requests"] == 12 and set(st["asked"].values()) == {2}


def test_split_halves_are_disjoint_and_cover_the_set(tmp_path):
    if not DATASETS["gsm8k"]["data"].exists():
        pytest.skip("../shared/data/gsm8k-recorded is absent")
    served, dev, test, n_dev, n_test = split(tmp_path, "gsm8k")
    d = {json.loads(x)["id"] for x in dev.read_text().splitlines() if x.strip()}
    t = {json.loads(x)["id"] for x in test.read_text().splitlines() if x.strip()}
    assert not d & t and len(d) == n_dev and len(t) == n_test and n_dev + n_test == 655
