"""harness.questions on small hand-made files of every supported format, good and bad."""
from __future__ import annotations

import hashlib
import json
import sys
import types
from pathlib import Path

import pytest

from tourney.harness.questions import file_sha256, gsm8k_type, load_questions
from tourney.harness.types import DataError

GSM = {
    "question": "Janet's ducks lay 16 eggs per day. How much does she make?",
    "answer": "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n"
              "She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18",
}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_native_gsm8k_lines(tmp_path: Path) -> None:
    big = {"question": "q2", "answer": "a = <<1+1=2>>2\n#### 1,080"}
    neg = {"question": "q3", "answer": "so it is\n####  -$3.50 "}
    f = write_jsonl(tmp_path / "test.jsonl", [GSM, "", big, neg])  # the blank line 2 is skipped
    qs = load_questions(str(f))
    assert [q.id for q in qs] == ["test-00001", "test-00003", "test-00004"]
    assert [q.answer for q in qs] == ["18", "1080", "-3.5"]
    assert qs[0].solution == GSM["answer"]
    assert qs[0].type == "short"
    assert qs[0].source == f"{f}:1"
    assert not qs[0].is_multiple_choice


def test_limit(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "t.jsonl", [dict(GSM, id=str(i)) for i in range(5)])
    assert [q.id for q in load_questions(str(f), limit=2)] == ["0", "1"]
    assert load_questions(str(f), limit=0) == []
    with pytest.raises(ValueError):
        load_questions(str(f), limit=-1)


@pytest.mark.parametrize("steps, expected", [(0, "short"), (1, "short"), (2, "short"), (3, "medium"),
                                             (4, "medium"), (5, "long"), (6, "long"), (7, "very_long"),
                                             (12, "very_long")])
def test_gsm8k_type_bins(steps: int, expected: str) -> None:
    solution = "".join(f"step {i}: <<{i}+1={i + 1}>>{i + 1}\n" for i in range(steps)) + "#### 1"
    assert gsm8k_type(solution) == expected


def test_gsm8k_type_falls_back_to_lines_with_equals() -> None:
    solution = "2 + 2 = 4\nno equation here\n\n4 * 2 = 8\n8 - 1 = 7\n#### 7 = 7"
    assert gsm8k_type(solution) == "medium"  # three '=' lines before '####'


def test_generic_fields_and_types(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "question": "2+2?", "answer": "4", "type": "arith", "solution": "2+2=4"},
        {"id": 7, "question": "half?", "answer": 0.5},
        {"id": "c", "question": "frac?", "answer": "3/4"},
        {"id": "d", "question": "big?", "answer": 1e20},
    ]
    qs = load_questions(str(write_jsonl(tmp_path / "g.jsonl", rows)))
    assert [(q.id, q.answer, q.type) for q in qs] == [("a", "4", "arith"), ("7", "0.5", "default"),
                                                      ("c", "0.75", "default"), ("d", "100000000000000000000", "default")]
    assert qs[0].solution == "2+2=4" and qs[1].solution is None


def test_multiple_choice_gold_forms(tmp_path: Path) -> None:
    ch = ["red", "green", "blue"]
    rows = [
        {"id": "l", "question": "q", "choices": ch, "answer": "b"},
        {"id": "i", "question": "q", "choices": ch, "answer": 2},
        {"id": "t", "question": "q", "choices": ch, "answer": "green"},
    ]
    qs = load_questions(str(write_jsonl(tmp_path / "mc.jsonl", rows)))
    assert [q.answer for q in qs] == ["B", "C", "B"]
    assert qs[0].choices == ("red", "green", "blue") and qs[0].is_multiple_choice


def test_json_list(tmp_path: Path) -> None:
    f = tmp_path / "items.json"
    f.write_text(json.dumps([GSM, {"question": "q", "answer": 3}]))
    qs = load_questions(str(f))
    assert [q.id for q in qs] == ["items-00001", "items-00002"]
    assert qs[1].source == f"{f}:item 2"


def test_csv_with_both_choice_spellings(tmp_path: Path) -> None:
    f = tmp_path / "mc.csv"
    f.write_text(
        "id,question,answer,choices,type\n"
        'x1,"Pick, please",B,"[""a"", ""b, with comma""]",quiz\n'
        "\n"
        "x2,Which?,2,1|2|3,\n"  # "2" is the text of choice B, not index 2
        ",Plain number,\"1,000\",,\n"
    )
    qs = load_questions(str(f))
    assert [(q.id, q.answer, q.type) for q in qs] == [("x1", "B", "quiz"), ("x2", "B", "default"),
                                                      ("mc-00003", "1000", "default")]
    assert qs[0].choices == ("a", "b, with comma") and qs[1].choices == ("1", "2", "3")
    assert qs[2].choices is None and qs[2].source == f"{f}:5"


def test_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    f = tmp_path / "d.parquet"
    pq.write_table(pa.table({"question": ["q1", "q2"], "answer": ["a\n#### 5", "C"],
                             "choices": [None, ["x", "y", "z"]]}), f)
    qs = load_questions(str(f))
    assert [(q.id, q.answer, q.choices) for q in qs] == [("d-00001", "5", None), ("d-00002", "C", ("x", "y", "z"))]


def test_file_sha256(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "t.jsonl", [GSM])
    assert file_sha256(f) == hashlib.sha256(f.read_bytes()).hexdigest()


def test_hf_without_datasets_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(DataError, match=r"hf:openai/gsm8k:main:test: .*'datasets' package is not installed"):
        load_questions("hf:openai/gsm8k:main:test")


def test_hf_with_a_fake_datasets_module(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def load_dataset(name: str, config: str | None, split: str, revision: str | None = None) -> list[dict]:
        calls.append((name, config, split))
        if name == "offline/thing":
            raise ConnectionError("Couldn't reach the Hub\n(no network)")
        return [GSM, {"question": "q", "answer": "x\n#### 4"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    qs = load_questions("hf:openai/gsm8k:main:test")
    assert [q.id for q in qs] == ["test-00001", "test-00002"] and qs[1].answer == "4"
    load_questions("hf:gsm8k:train")
    load_questions("hf:gsm8k:main")
    assert calls[1:] == [("gsm8k", None, "train"), ("gsm8k", "main", "test")]
    with pytest.raises(DataError) as e:
        load_questions("hf:offline/thing")
    assert "hf:offline/thing" in str(e.value) and "ConnectionError" in str(e.value)
    assert "\n" not in str(e.value)


# -- errors: each names the file, the line and the field --------------------------------------------


def _error(path: Path) -> str:
    with pytest.raises(DataError) as e:
        load_questions(str(path))
    msg = str(e.value)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    return msg


@pytest.mark.parametrize("bad, field, expected", [
    ({"answer": "4"}, "question", "non-empty string"),
    ({"question": "q"}, "answer", "#### N"),
    ({"question": 12, "answer": "4"}, "question", "a string"),
    ({"question": "q", "answer": "four"}, "answer", "plain number"),
    ({"question": "q", "answer": "worked\n#### many"}, "answer", "#### N"),
    ({"question": "q", "answer": "B", "choices": "not a list"}, "choices", "list of strings"),
    ({"question": "q", "answer": "B", "choices": ["a", 2]}, "choices", "list of strings"),
    ({"question": "q", "answer": "E", "choices": ["a", "b", "c"]}, "answer", "letter A-C"),
    ({"question": "q", "answer": 5, "choices": ["a", "b", "c"]}, "answer", "index below 3"),
    ({"question": "q", "answer": "4", "type": 3}, "type", "a string"),
    ({"question": "q", "answer": float("nan")}, "answer", "plain number"),
    ({"question": "q", "answer": [4]}, "answer", "a string or a number"),
    ({"question": "q", "answer": "4", "id": 1.5}, "id", "a string or an integer"),
])
def test_bad_fields(tmp_path: Path, bad: dict, field: str, expected: str) -> None:
    f = write_jsonl(tmp_path / "bad.jsonl", [GSM, "", bad])
    msg = _error(f)
    assert f"{f}:3: field '{field}'" in msg
    assert expected in msg


def test_malformed_json_line(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "m.jsonl", [GSM, '{"question": "q", "answer": '])
    msg = _error(f)
    assert f"{f}:2:" in msg and "not valid JSON" in msg


def test_line_that_is_not_an_object(tmp_path: Path) -> None:
    msg = _error(write_jsonl(tmp_path / "m.jsonl", ["[1, 2]"]))
    assert ":1:" in msg and "object" in msg


def test_duplicate_ids_name_both_lines(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "d.jsonl", [dict(GSM, id="q1"), dict(GSM, id="q2"), dict(GSM, id="q1")])
    msg = _error(f)
    assert f"{f}:3: field 'id'" in msg and f"{f}:1" in msg and "'q1'" in msg


def test_missing_empty_and_blank_files(tmp_path: Path) -> None:
    assert "file not found" in _error(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    assert "empty" in _error(tmp_path / "empty.jsonl")
    (tmp_path / "blank.jsonl").write_text("\n  \n")
    assert "no questions" in _error(tmp_path / "blank.jsonl")
    (tmp_path / "empty.json").write_text("[]")
    assert "no questions" in _error(tmp_path / "empty.json")


def test_unsupported_extension(tmp_path: Path) -> None:
    (tmp_path / "q.txt").write_text("hello")
    assert ".jsonl" in _error(tmp_path / "q.txt")


def test_csv_errors(tmp_path: Path) -> None:
    f = tmp_path / "h.csv"
    f.write_text("id,question\n1,q\n")
    assert f"{f}:1: field 'answer'" in _error(f)
    f.write_text("question,answer\nq,4\nq,4,extra\n")
    assert f"{f}:3:" in _error(f)
    f.write_text('question,answer,choices\nq,A,"[""a"", 1]"\n')
    assert f"{f}:2: field 'choices'" in _error(f)


def test_json_not_a_list(tmp_path: Path) -> None:
    f = tmp_path / "o.json"
    f.write_text('{"question": "q"}')
    assert "JSON list" in _error(f)


def test_hf_dataset_is_identified_by_its_contents_and_a_revision_is_passed(tmp_path, monkeypatch):
    """hf: data has no file to hash: its identity is the questions as loaded, so a resumed run
    notices a dataset that changed under its name; @REVISION pins a version."""
    pytest.importorskip("datasets")
    from tourney.harness.questions import _parse_hf, data_sha256

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    repo = tmp_path / "ds"
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "test.jsonl").write_text('{"question": "q1", "answer": "1"}\n{"question": "q2", "answer": "2"}\n')
    spec = f"hf:{repo}"
    first = data_sha256(spec, load_questions(spec))
    assert first == data_sha256(spec, load_questions(spec))
    (repo / "data" / "test.jsonl").write_text('{"question": "q1", "answer": "1"}\n{"question": "q2", "answer": "3"}\n')
    assert data_sha256(spec, load_questions(spec)) != first
    assert _parse_hf("hf:openai/gsm8k:main:test@abc123") == ("openai/gsm8k", "main", "test", "abc123")
    assert _parse_hf("hf:gsm8k:test") == ("gsm8k", None, "test", None)
    with pytest.raises(DataError, match="nothing after '@'"):
        _parse_hf("hf:gsm8k@")
