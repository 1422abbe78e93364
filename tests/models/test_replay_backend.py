"""ReplayBackend on real JSONL files written to tmp_path."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tourney.models.registry import load_backend
from tourney.models.replay_backend import ReplayBackend
from tourney.models.types import BackendError, GenConfig


@dataclass(frozen=True)
class Q:  # the attributes of the harness's Question that replay uses
    id: str
    question: str


def write(tmp_path: Path, rows: list[Any], name: str = "rec.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def replay(path: Path) -> ReplayBackend:
    backend = load_backend(f"replay:{path}")
    assert isinstance(backend, ReplayBackend)
    return backend


def test_matches_by_id_before_text(tmp_path: Path) -> None:
    path = write(tmp_path, [
        {"id": "q1", "question": "What is 2+2?", "output": "4", "latency_s": 0.5, "ttft_s": 0.1,
         "completion_tokens": 1, "token_logprobs": [-0.25]},
        {"id": "q2", "question": "What is 3+3?", "output": "6"},
    ])
    backend = replay(path)
    # the id wins even when the text differs (the harness may reword a question)
    [[g]] = backend.generate_questions([Q("q1", "reworded")], GenConfig())
    assert g.text == "4" and g.latency_s == 0.5 and g.ttft_s == 0.1
    assert g.completion_tokens == 1 and g.token_logprobs == [-0.25]
    out = backend.generate_questions([Q("q2", "x"), Q("q1", "y")], GenConfig())
    assert [gens[0].text for gens in out] == ["6", "4"]


def test_matches_by_question_text_and_outputs_list(tmp_path: Path) -> None:
    path = write(tmp_path, [{"question": "Capital of France?", "outputs": ["Paris", "Lyon", "Paris"]}])
    backend = replay(path)
    out = backend.generate_questions([Q("some-id", "Capital of France?")], GenConfig(n=2))
    assert [g.text for g in out[0]] == ["Paris", "Lyon"]
    assert backend.samples_available(Q("other", "Capital of France?")) == 3
    assert backend.samples_available("Capital of France?") == 3
    assert backend.samples_available(Q("nope", "unknown")) == 0
    assert backend.generate(["Capital of France?"], GenConfig())[0][0].text == "Paris"


def test_results_jsonl_rows_are_grouped_and_ordered_by_sample(tmp_path: Path) -> None:
    def row(sample: int, output: str, **extra: Any) -> dict[str, Any]:
        return {"id": "gsm-7", "question": "Q7", "type": "arith", "sample": sample, "output": output,
                "prediction": None, "gold": "3", "correct": False, "latency_s": 1.0 + sample,
                "ttft_s": None, "prompt_tokens": 12, "completion_tokens": 5, "error": None,
                "finish_reason": "stop", "token_logprobs": None, **extra}

    path = write(tmp_path, [row(2, "c"), row(0, "a", token_logprobs=[-1.0, -2.0]), {"id": "other", "output": "z"}, row(1, "b")])
    backend = replay(path)
    gens = backend.generate_questions([Q("gsm-7", "Q7")], GenConfig(n=3))[0]
    assert [g.text for g in gens] == ["a", "b", "c"]
    assert [g.latency_s for g in gens] == [1.0, 2.0, 3.0]
    assert gens[0].token_logprobs == [-1.0, -2.0] and gens[1].token_logprobs is None
    assert gens[0].prompt_tokens == 12 and gens[0].finish_reason == "stop" and gens[0].ttft_s is None
    # returned Generations are copies: changing one does not change the recording
    gens[0].text = "changed"
    assert backend.generate_questions([Q("gsm-7", "Q7")], GenConfig())[0][0].text == "a"


def test_prompt_field_matches_generate(tmp_path: Path) -> None:
    path = write(tmp_path, [{"id": "1", "question": "Q", "prompt": "Question: Q\nAnswer:", "output": " 5"}])
    assert replay(path).generate(["Question: Q\nAnswer:"], GenConfig())[0][0].text == " 5"
    with pytest.raises(BackendError, match="matches no recorded"):
        replay(path).generate(["Question: other"], GenConfig())


def test_missing_question_names_it_and_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, [{"id": "q1", "question": "A?", "output": "a"}])
    with pytest.raises(BackendError) as info:
        replay(path).generate_questions([Q("q1", "A?"), Q("q404", "B?")], GenConfig())
    assert "'q404'" in str(info.value) and str(path) in str(info.value)


def test_too_few_samples_says_how_many_are_recorded(tmp_path: Path) -> None:
    path = write(tmp_path, [{"id": "q1", "outputs": ["a", "b"]}])
    with pytest.raises(BackendError, match="has 2 recorded sample"):
        replay(path).generate_questions([Q("q1", "?")], GenConfig(n=3))


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ("{not json", "invalid JSON"),
        ({"output": "x"}, "'id' or a 'question'"),
        ({"id": "a"}, "'output'"),
        ({"id": "a", "outputs": ["x", 3]}, "'outputs'"),
        ({"id": "a", "outputs": "x"}, "'outputs'"),
        ({"id": "a", "output": "x", "latency_s": "fast"}, "'latency_s'"),
        ({"id": "a", "output": "x", "token_logprobs": ["?"]}, "'token_logprobs'"),
        ({"id": "a", "output": "x", "sample": -1}, "'sample'"),
    ],
)
def test_malformed_line_names_file_line_and_field(tmp_path: Path, bad: Any, field: str) -> None:
    path = write(tmp_path, [{"id": "ok", "output": "fine"}, "", bad])
    with pytest.raises(BackendError) as info:
        replay(path)
    assert f"{path}:3" in str(info.value) and field in str(info.value)


def test_duplicate_sample_index_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, [{"id": "a", "sample": 0, "output": "x"}, {"id": "a", "sample": 0, "output": "y"}])
    with pytest.raises(BackendError, match=r":2: sample 0 .* twice"):
        replay(path)


def test_missing_file_and_scoring(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="cannot read replay file"):
        replay(tmp_path / "absent.jsonl")
    backend = replay(write(tmp_path, [{"id": "a", "output": "x"}]))
    with pytest.raises(BackendError, match="cannot score choices"):
        backend.score_choices(["p"], [["a"]])
