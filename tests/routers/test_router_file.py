"""ROUTER.json is untrusted data: malicious and malformed router files, through the loader and the
command line. Each case is one line naming the file (and the field), never a traceback, and no
router file can run code, choose a secret or send the user's key to a server it names."""
from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from tourney.cli.main import main
from tourney.errors import DataError
from tourney.routers.runtime.bundle import ModelSettings, RouterBundle
from tourney.routers.policies.calibrate import CalibratedRouter
from tourney.routers.evaluation.metrics import CascadeFigures
from tourney.routers.fitting.router_file import FORMAT, FORMAT_V1, MAX_DEPTH
from tests.models.test_openai_backend import SECRET, server  # noqa: F401 -- the fixture

QUESTIONS = [{"id": f"q{i}", "question": f"Sam has {i} cards. How many?", "answer": str(i)} for i in range(4)]


def good(tmp_path, **student) -> dict:
    router = CalibratedRouter("teacher_share", 0.5, 0.0, ["length"], "length", CascadeFigures(4, 0.5, 1.0))
    replay = tmp_path / "student.jsonl"
    replay.write_text("".join(json.dumps({"id": q["id"], "output": f"#### {q['answer']}"}) + "\n" for q in QUESTIONS))
    bundle = RouterBundle(router, ModelSettings(spec=f"replay:{replay}", **student),
                          ModelSettings(spec=f"replay:{replay}"), target="share=0.5")
    return json.loads(json.dumps(bundle.to_dict()))


def write(tmp_path, obj, name="router.json") -> str:
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(path)


def one_line_error(tmp_path, path, *extra):
    """`tourney submit` and `tourney route eval` refuse the file: exit 2, one line naming it."""
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    res = CliRunner().invoke(main, ["submit", "--questions", str(questions), "--router", path, "--mode", "balanced",
                                    "--deadline-ms", "5000", "--out", str(tmp_path / "sub"), *extra])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and path in lines[0], res.output
    assert "Traceback" not in res.output
    return lines[0]


@pytest.mark.parametrize("args, words", [
    ({"trust_remote_code": True}, "'trust_remote_code' is not accepted from a router file: it would run Python code"),
    ({"api_key_env": "HOME"}, "'api_key_env' is not accepted from a router file: it would choose which environment"),
    ({"api_key": "sk-x"}, "'api_key' is not accepted"),
    ({"tokenizer": "x"}, "'tokenizer' is not accepted"),
    ({"dtype": "load"}, "'dtype' must be auto or float32 or float16 or bfloat16"),
    ({"chat_template_kwargs": {"chat_template": "{{ x }}"}}, "'chat_template_kwargs' must be"),
    ({"extra_body": {"prompt": "other"}}, "'extra_body' must be an object of extra request fields"),
    ({"lora_path": "/x"}, "'lora_path' is not an option a router file may set; it may set device, dtype"),
])
def test_security_relevant_options_are_refused_with_the_reason(tmp_path, args, words):
    path = write(tmp_path, good(tmp_path, model_args=args))
    line = one_line_error(tmp_path, path)
    assert "field 'student.model_args'" in line and words in line


def test_safe_options_are_read(tmp_path):
    raw = good(tmp_path, model_args={"device": "cpu", "batch_size": 8, "extra_body": {"repeat_penalty": 1.0},
                                     "chat_template_kwargs": {"enable_thinking": False}})
    bundle = RouterBundle.load(write(tmp_path, raw))
    assert bundle.student.model_args["batch_size"] == 8 and not bundle.student.send_api_key


@pytest.mark.parametrize("edit, words", [
    (lambda d: d.update(format="tourney-router/99"),
     f"field 'format': unsupported router format 'tourney-router/99'; this version reads {FORMAT_V1} and {FORMAT}"),
    (lambda d: d.pop("format"), "field 'format': missing"),
    (lambda d: d["student"].update(max_tokens=1e30), "field 'student.max_tokens'"),
    (lambda d: d["student"].update(max_tokens=10 ** 9), "field 'student.max_tokens': Input should be less than or equal to 1048576"),
    (lambda d: d["student"].update(samples=0), "field 'student.samples'"),
    (lambda d: d["student"].update(model_args=[1, 2]), "field 'student.model_args': Input should be a valid dictionary"),
    (lambda d: d.update(threshold="big"), "field 'threshold': expected a finite number, 'inf' or '-inf'"),
    (lambda d: d["dev"].update(teacher_share=1.5), "field 'dev.teacher_share'"),
    (lambda d: d.update(model="vibes"), "unknown signal name(s) ['vibes']"),
    (lambda d: d.update(surprise=1), "field 'surprise': Extra inputs are not permitted"),
])
def test_bad_fields_name_the_field(tmp_path, edit, words):
    raw = good(tmp_path)
    edit(raw)
    assert words in one_line_error(tmp_path, write(tmp_path, raw))


def test_nan_and_infinite_numbers_are_refused(tmp_path):
    text = json.dumps(good(tmp_path)).replace('"threshold": 0.0', '"threshold": NaN')
    assert "field 'threshold'" in one_line_error(tmp_path, write(tmp_path, text))
    raw = good(tmp_path)
    raw["dev"]["accuracy"] = "x"
    text = json.dumps(raw).replace('"accuracy": "x"', '"accuracy": Infinity')
    assert "field 'dev.accuracy'" in one_line_error(tmp_path, write(tmp_path, text))


def test_deep_nesting_invalid_utf8_and_bad_json_name_the_file(tmp_path):
    deep = '{"format": "tourney-router/2", "data": ' + "[" * 200_000 + "]" * 200_000 + "}"
    assert f"JSON nested deeper than {MAX_DEPTH} levels" in one_line_error(tmp_path, write(tmp_path, deep))
    path = tmp_path / "bytes.json"
    path.write_bytes(json.dumps(good(tmp_path)).encode()[:40] + b"\xff\xfe" + b"}")
    assert "not valid UTF-8 (byte 0xff at offset 40)" in one_line_error(tmp_path, str(path))
    assert "not valid JSON" in one_line_error(tmp_path, write(tmp_path, '{"format": '))
    assert "field 'format': missing" in one_line_error(tmp_path, write(tmp_path, "{}"))
    assert "Input should be a valid dictionary" in one_line_error(tmp_path, write(tmp_path, "[1, 2]"))
    # brackets inside strings are text, not nesting
    raw = good(tmp_path)
    raw["data"] = {"note": "[" * 1000}
    assert RouterBundle.load(write(tmp_path, raw)).data["note"] == "[" * 1000


def test_a_format_1_router_still_loads(tmp_path):
    raw = good(tmp_path)
    raw["format"] = FORMAT_V1
    assert RouterBundle.load(write(tmp_path, raw)).router.threshold == 0.0
    raw["per_type"] = {"all_types": {"x": [0.0], "y": [0.0]}, "by_type": {}, "min_questions": 5, "center": 0.0,
                       "spread": 1.0}
    assert f"{FORMAT_V1} has no per_type" in one_line_error(tmp_path, write(tmp_path, raw))


def _submit_teacher(tmp_path, router_path, *extra):
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    out = tmp_path / ("sub" + str(len(extra)))
    return CliRunner().invoke(main, ["submit", "--questions", str(questions), "--router", router_path, "--mode",
                                     "accuracy", "--deadline-ms", "10000", "--out", str(out), *extra])


def test_a_router_cannot_send_the_key_to_a_server_it_names(tmp_path, server, monkeypatch):  # noqa: F811
    url, state = server
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    raw = good(tmp_path)
    raw["teacher"] = {"spec": f"openai:ok@{url}"}
    path = write(tmp_path, raw)
    res = _submit_teacher(tmp_path, path)
    assert res.exit_code == 0, res.output
    assert state.auth and all(a is None for a in state.auth)  # the router's server got no key
    # the user naming the same server on the command line is the user's choice: the key goes
    res = _submit_teacher(tmp_path, path, "--teacher", f"openai:ok@{url}")
    assert res.exit_code == 0, res.output
    assert state.auth[-1] == f"Bearer {SECRET}"


def test_router_objects_round_trip_and_stay_finite(tmp_path):
    router = CalibratedRouter("teacher_share", 1.0, math.inf, ["length"], "length", CascadeFigures(4, 1.0, 1.0))
    path = tmp_path / "r.json"
    router.save(path)
    assert json.loads(path.read_text())["threshold"] == "inf" and CalibratedRouter.load(path).threshold == math.inf
    with pytest.raises(DataError, match="r.json"):
        path.write_text(path.read_text().replace('"inf"', '"nan"'))
        CalibratedRouter.load(path)


@pytest.mark.parametrize("edit, words", [
    (lambda d: d["teacher"].update(spec="nosuch:thing"), "teacher model: field 'teacher.spec': unknown model spec"),
    (lambda d: d["teacher"].update(spec="replay:/nonexistent/x.jsonl"),
     "teacher model: field 'teacher.spec': cannot read replay file"),
    (lambda d: d["student"].update(samples=2, temperature=0.0, spec="mini-student"),
     "student model: field 'student.samples': more than one sample needs temperature > 0"),
])
def test_a_model_the_file_names_fails_naming_file_model_and_field(tmp_path, edit, words):
    raw = good(tmp_path)
    edit(raw)
    assert words in one_line_error(tmp_path, write(tmp_path, raw))


def test_a_spec_the_user_gives_fails_as_the_users_own(tmp_path):
    res = _submit_teacher(tmp_path, write(tmp_path, good(tmp_path)), "--teacher", "replay:/nonexistent/y.jsonl")
    assert res.exit_code == 2 and res.output.strip().splitlines() == [
        "error: cannot read replay file /nonexistent/y.jsonl: No such file or directory"]


def test_an_over_long_integer_names_its_field(tmp_path):
    text = json.dumps(good(tmp_path)).replace('"seed": 0', '"seed": ' + "9" * 5000, 1)
    line = one_line_error(tmp_path, write(tmp_path, text))
    assert "field 'student.seed': an integer of 5000 digits (at most 4000)" in line


@pytest.mark.parametrize("kind, value, relative, words", [
    ("teacher_share", 1.5, False, "a teacher share is in [0, 1], got 1.5"),
    ("teacher_share", -0.1, False, "a teacher share is in [0, 1], got -0.1"),
    ("accuracy", 1.2, False, "an accuracy is in [0, 1], got 1.2"),
    ("accuracy", -1.0, True, "a share of the teacher's accuracy is >= 0, got -1"),
    ("latency", 0.0, False, "a latency budget is a positive number of seconds, got 0"),
    ("latency", -2.0, False, "a latency budget is a positive number of seconds, got -2"),
])
def test_the_target_is_checked_against_its_kind(tmp_path, kind, value, relative, words):
    raw = good(tmp_path)
    raw.update(target_kind=kind, target_value=value, relative=relative)
    assert f"field 'target_value': {words}" in one_line_error(tmp_path, write(tmp_path, raw))


@pytest.mark.parametrize("kind, value, relative", [("accuracy", 1.01, True), ("latency", 0.25, False),
                                                   ("teacher_share", 0.0, False), ("accuracy", 1.0, False)])
def test_targets_that_fit_their_kind_are_read(tmp_path, kind, value, relative):
    raw = good(tmp_path)
    raw.update(target_kind=kind, target_value=value, relative=relative)
    assert RouterBundle.load(write(tmp_path, raw)).router.target_value == value


def test_an_option_the_backend_refuses_names_the_model_args_field(tmp_path):
    raw = good(tmp_path, model_args={"device": "cpu"})  # allowed in a router file; a replay takes no device
    line = one_line_error(tmp_path, write(tmp_path, raw))
    assert "student model: field 'student.model_args': model spec" in line and "unknown option 'device'" in line
