"""benchmarks/serve_load.py: the requests it sends are read by the server as the questions they are."""
from __future__ import annotations

from benchmarks.serve_load import request_body
from tourney.harness.types import Question
from tourney.serve.adapter import job_from_completion
from tourney.serve.config import ServeConfig
from tourney.serve.schemas import CompletionRequest


def served_question(body: dict) -> Question:
    job = job_from_completion(CompletionRequest.model_validate(body), ServeConfig(router="r.json"), 512, 0.0)
    (q,) = job.questions
    return q


def test_a_multiple_choice_question_reaches_the_server_with_its_options():
    q = Question(id="test-00000", question="In which country is Tudus?", answer="D",
                 type="reasoning", choices=("Nefusia", "Sizia", "Bekusia", "Pupuria"))
    got = served_question(request_body("router", q, "test-00000#0"))
    assert got.is_multiple_choice and got.choices == q.choices
    assert (got.id, got.answer, got.type, got.question) == ("test-00000#0", "D", "reasoning", q.question)


def test_an_arithmetic_question_has_no_options():
    q = Question(id="test-00001", question="Sam has 10 marbles. How many?", answer="10", type="one_step")
    body = request_body("student", q)
    assert "choices" not in body["tourney"] and "id" not in body["tourney"]
    got = served_question(body)
    assert not got.is_multiple_choice and got.answer == "10" and body["model"] == "student"
