"""Malformed and hostile question files: one DataError line naming the file, line and field,
never a traceback from deep inside json, int() or a tokenizer."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tourney.cli.main import main
from tourney.harness.questions import load_questions
from tourney.harness.types import DataError

OK = '{"id": "ok", "question": "How many?", "answer": "3"}'


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    return p


CASES = {
    "deep nesting": ("q.jsonl", '{"question": "q", "answer": "1", "x": ' + "[" * 200_000 + "]" * 200_000 + "}",
                     ":1: JSON nested deeper"),
    "deep nesting (json)": ("q.json", "[" * 200_000 + "]" * 200_000, ": JSON nested deeper"),
    "5,000-digit number": ("q.jsonl", '{"question": "q", "answer": ' + "9" * 5000 + "}", ":1: field 'answer': an integer of 5000 digits"),
    "5,000-digit string": ("q.jsonl", '{"question": "q", "answer": "' + "9" * 5000 + '"}', "field 'answer'"),
    "lone surrogate (escape)": ("q.jsonl", '{"question": "q\\ud800", "answer": "1"}', "field 'question': a lone surrogate"),
    "huge question": ("q.jsonl", json.dumps({"question": "x" * 300_000, "answer": "1"}), "field 'question': 300,000 characters"),
    "ANSI in type": ("q.jsonl", json.dumps({"question": "q", "answer": "1", "type": "\x1b]0;pwned\x07red"}),
                     "field 'type': a control character"),
    "ANSI in id": ("q.jsonl", json.dumps({"id": "\x1b[31mx", "question": "q", "answer": "1"}), "field 'id': a control character"),
    "invalid UTF-8": ("q.jsonl", b'{"question": "q\xff", "answer": "1"}\n', "not UTF-8"),
    "truncated line": ("q.jsonl", OK + '\n{"question": "q", "answer": ', ":2: not valid JSON"),
    "not an object": ("q.jsonl", "[1, 2]", ":1:"),
    "nan answer": ("q.jsonl", '{"question": "q", "answer": NaN}', "field 'answer'"),
    "choices nested deep (csv)": ("q.csv", 'question,answer,choices\nq,A,"' + "[" * 100 + "]" * 100 + '"\n', "JSON nested deeper"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_one_line_error_naming_the_file(tmp_path, name):
    filename, content, fragment = CASES[name]
    path = write(tmp_path, filename, content)
    with pytest.raises(DataError) as err:
        load_questions(str(path))
    message = str(err.value)
    assert str(path) in message and fragment in message
    assert "\n" not in message and "\x1b" not in message


def test_a_raw_line_separator_inside_a_string_is_text_not_a_line_break(tmp_path):
    path = write(tmp_path, "q.jsonl", json.dumps({"question": "a\u2028b\u2029c\u0085d", "answer": "1"},
                                                  ensure_ascii=False) + "\n" + OK + "\n")
    qs = load_questions(str(path))
    assert [q.question for q in qs] == ["a\u2028b\u2029c\u0085d", "How many?"]


@pytest.mark.parametrize("name", ["deep nesting", "ANSI in type", "lone surrogate (escape)"])
def test_the_cli_prints_one_line_and_exits_2(tmp_path, name):
    filename, content, fragment = CASES[name]
    path = write(tmp_path, filename, content)
    res = CliRunner().invoke(main, ["eval", "--model", "mini-student", "--data", str(path), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0]
    assert "Traceback" not in res.output


def test_an_over_long_integer_in_a_question_line_names_line_and_field(tmp_path):
    from tourney.harness.jsonl import loads

    with pytest.raises(DataError, match=r"q.jsonl:3: field 'meta.0.n': an integer of 4001 digits"):
        loads('{"id": "a", "meta": [{"n": ' + "7" * 4001 + "}]}", "q.jsonl:3")
