"""Parsers under fuzzing, and the inputs hypothesis draws for them. Shared by the fuzz tests (a
few hundred examples each run) and benchmarks/fuzz_parsers.py (10,000 per parser).

A target takes one generated input and either returns or raises the project's own error
(a one-line DataError / ConfigError): anything else, or a hang, is a failure."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Callable

from hypothesis import strategies as st

from tourney.errors import TourneyError
from tourney.harness.questions import load_questions
from tourney.harness.scoring import extract_answer, extract_choice, score
from tourney.harness.types import Question, SampleResult
from tourney.routers.features.option_checks import check_words, numbers, numeric_check
from tourney.routers.runtime.bundle import RouterBundle
from tourney.routers.policies.calibrate import CalibratedRouter
from tourney.routers.evaluation.metrics import CascadeFigures

# Text with what breaks naive parsers: separators, surrogate escapes, markers, LaTeX, digits.
_ATOMS = st.sampled_from([
    "####", "\\boxed{", "}", "{", "^", "**", "e9", "/0", "0x", "$", ",", ".", "-", "%", "\u2028", "\u2029",
    "\u0085", "\x1b[31m", "\\frac{", "The answer is", "Answer:", "A:", "<think>", "</think>", "\n", " ",
    "9" * 50, "1e999999", "\\ud800", '"', "\\", "[", "]", "(B)", "B", "**C**", "\\sqrt{2}",
])
messy_text = st.lists(st.one_of(_ATOMS, st.text(max_size=12)), max_size=40).map("".join)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), messy_text)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(
        ["id", "question", "answer", "type", "choices", "solution", "x"]), inner, max_size=6)), max_leaves=20)


def _record(value) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (ValueError, TypeError):
        return "{}"


question_lines = st.lists(st.one_of(json_values.map(_record), messy_text), min_size=1, max_size=5).map("\n".join)


def parse_question_file(text: str, suffix: str = ".jsonl") -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"q{suffix}"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        try:
            for q in load_questions(str(path)):
                assert isinstance(q.question, str) and q.question.strip()
        except TourneyError as e:
            assert "\n" not in str(e)


def grade_output(text: str) -> None:
    extract_answer(text)
    extract_choice(text, 4)
    score(Question(id="x", question="?", answer="18"), text)
    score(Question(id="x", question="?", answer="B", choices=("a", "b", "c", "d")), text)


def check_options(text: str) -> None:
    """The router's option checks read any output against numeric, word and hostile options."""
    assert all(v == v and abs(v) != float("inf") for v in numbers(text, mantissas=True))
    for choices in (["1e999999", "9" * 50, "4.2 x 10^{-3}", "$1,250"], ["cat", "dog", "fish"], [text[:40]] * 3):
        for prediction in ("B", "Z", None, text[:3]):
            row = SampleResult(id="x", question=text[-60:], type="t", sample=0, output=text, prediction=prediction,
                               gold="B", correct=False, latency_s=0.0, ttft_s=None, prompt_tokens=0,
                               completion_tokens=0, finish_reason="stop", choices=choices)
            assert all(w.startswith("k_") for w in check_words(row))
            c = numeric_check(row)
            assert c is None or c.chosen is None or 0 <= c.chosen < len(choices)


# A valid ROUTER.json (a length threshold, models named) and copies with one field replaced.
_ROUTER = {**RouterBundle(CalibratedRouter("teacher_share", 0.5, 0.25, ["length"], "length",
                                           CascadeFigures(4, 0.5, 1.0))).to_dict(),
           "student": {"spec": "mini-student"}, "teacher": {"spec": "mini-teacher"}}
_ROUTER_KEYS = st.sampled_from(sorted({*_ROUTER, "per_type", "pre", "model", "dev", "selection"}))
_MODEL_KEYS = st.sampled_from(["spec", "samples", "temperature", "max_tokens", "model_args", "trust_remote_code",
                               "api_key_env", "send_api_key", "base_url", "x"])
router_texts = st.one_of(
    messy_text,
    json_values.map(_record),
    st.tuples(_ROUTER_KEYS, json_values).map(lambda kv: _record({**_ROUTER, kv[0]: kv[1]})),
    st.tuples(st.sampled_from(["student", "teacher"]), _MODEL_KEYS, json_values).map(
        lambda r: _record({**_ROUTER, r[0]: {**_ROUTER[r[0]], r[1]: r[2]}})),
)


def load_router_text(text: str) -> None:
    """A router file loads, or gives one line that names the file."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ROUTER.json"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        try:
            assert isinstance(RouterBundle.load(str(path)), RouterBundle)
        except TourneyError as e:
            assert "\n" not in str(e) and str(path) in str(e)


TARGETS: dict[str, tuple[Callable, object]] = {
    "question file (JSONL)": (parse_question_file, question_lines),
    "question file (JSON)": (lambda t: parse_question_file(t, ".json"), question_lines),
    "question file (CSV)": (lambda t: parse_question_file("question,answer,choices\n" + t, ".csv"), messy_text),
    "answer extractor": (grade_output, messy_text),
    "option checks (router)": (check_options, messy_text),
    "router file (ROUTER.json)": (load_router_text, router_texts),
}
