"""benchmarks/serve_load.py: the requests it sends are read by the server as the questions they are."""
from __future__ import annotations

from benchmarks.serve_load import batch_totals, mean_batches, request_body
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


def test_mean_batch_is_counted_over_one_phase_not_since_the_server_started():
    def metrics(student: tuple[int, int], teacher: tuple[int, int]) -> str:
        return "\n".join([f'tourney_batch_size_sum{{model="student"}} {student[0]}',
                          f'tourney_batch_size_count{{model="student"}} {student[1]}',
                          f'tourney_batch_size_sum{{model="teacher"}} {teacher[0]}',
                          f'tourney_batch_size_count{{model="teacher"}} {teacher[1]}'])

    start = batch_totals(metrics((0, 0), (0, 0)))
    after_router = batch_totals(metrics((120, 10), (30, 6)))  # router phase: 10 student batches of 12, 6 of 5
    after_teacher = batch_totals(metrics((120, 10), (190, 16)))  # teacher phase: 10 batches of 16
    assert mean_batches(start, after_router) == {"student": 12.0, "teacher": 5.0}
    assert mean_batches(after_router, after_teacher) == {"student": 0.0, "teacher": 16.0}
