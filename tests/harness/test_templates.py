"""harness.templates: template files read, checked and rendered; every bad file is one line that
names the file and the field, and a template never runs code."""
from __future__ import annotations

from pathlib import Path

import pytest

from tourney.errors import ConfigError
from tourney.harness.templates import load_template_file, resolve_template
from tourney.harness.types import Question

MC = Question(id="m1", question="Sky colour?", answer="B", type="nature", choices=("red", "blue"),
              solution="Rayleigh scattering. The answer is (B).")
EX = Question(id="e1", question="Grass colour?", answer="A", type="nature", choices=("green", "pink"),
              solution="Chlorophyll. The answer is (A).")


def write(tmp_path: Path, text: str, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def one_line(exc: pytest.ExceptionInfo, *fragments: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for f in fragments:
        assert f in msg, msg


def test_yaml_and_toml_render_the_same_prompt(tmp_path: Path) -> None:
    y = write(tmp_path, 'description: "About {{ type }}.\\n\\n"\n'
                        'doc_to_text: "Q: {{ question }}\\n{{ choices }}\\n"\nanswer_prefix: "A:"\n')
    t = write(tmp_path, 'description = "About {{ type }}.\\n\\n"\n'
                        'doc_to_text = "Q: {{ question }}\\n{{ choices }}\\n"\nanswer_prefix = "A:"\n', "t.toml")
    expected = ("About nature.\n\n"
                "Q: Grass colour?\nA. green\nB. pink\nA: Chlorophyll. The answer is (A).\n\n"
                "Q: Sky colour?\nA. red\nB. blue\nA:")
    assert load_template_file(y).render(MC, [EX]) == expected == load_template_file(t).render(MC, [EX])


@pytest.mark.parametrize("fmt, first", [("A. text", "A. red"), ("(A) text", "(A) red"), ("A) text", "A) red"),
                                        ("{{ letter | lower }}: {{ text | upper }}", "a: RED")])
def test_choice_formats(tmp_path: Path, fmt: str, first: str) -> None:
    path = write(tmp_path, f"doc_to_text: '{{{{ choices }}}}'\nchoice_format: '{fmt}'\n")
    assert load_template_file(path).render(MC).splitlines()[0] == first


def test_chat_and_multiturn(tmp_path: Path) -> None:
    path = write(tmp_path, 'description: "About {{ type }}."\ndoc_to_text: "{{ question }}\\n{{ choices }}"\n'
                           'chat: true\nsystem: "Be brief."\n')
    t = load_template_file(path)
    one = t.render(MC, [EX])
    assert one[0] == {"role": "system", "content": "Be brief."} and one[1]["role"] == "user" and len(one) == 2
    turns = t.render(MC, [EX], multiturn=True)
    assert turns == [
        {"role": "system", "content": "Be brief.\n\nAbout nature."},
        {"role": "user", "content": "Grass colour?\nA. green\nB. pink"},
        {"role": "assistant", "content": "Chlorophyll. The answer is (A)."},
        {"role": "user", "content": "Sky colour?\nA. red\nB. blue"},
    ]


def test_default_stop_is_the_few_shot_header(tmp_path: Path) -> None:
    assert load_template_file(write(tmp_path, 'doc_to_text: "Question: {{ question }}"\n')).stop == ("\n\nQuestion:",)
    assert load_template_file(write(tmp_path, 'doc_to_text: "{{ question }}"\n')).stop == ()
    assert load_template_file(write(tmp_path, 'doc_to_text: "Q: {{ question }}"\nuntil: []\n')).stop == ()


@pytest.mark.parametrize("text, fragments", [
    ("doc_to_text: [unclosed\n", ["t.yaml", "not valid YAML"]),
    ("- a list\n", ["t.yaml", "mapping"]),
    ("doc_to_txt: '{{ question }}'\n", ["t.yaml", "doc_to_txt"]),
    ("description: hi\n", ["t.yaml", "doc_to_text"]),
    ("doc_to_text: '{{ questoin }}'\n", ["t.yaml", "field 'doc_to_text'", "unknown variable 'questoin'"]),
    ("doc_to_text: '{{ question }} {{ answer }}'\n", ["field 'doc_to_text'", "'answer'", "exemplars only"]),
    ("doc_to_text: '{{ question'\n", ["t.yaml", "field 'doc_to_text'", "line 1"]),
    ("doc_to_text: '{{ question | nosuchfilter }}'\n", ["field 'doc_to_text'", "nosuchfilter"]),
    ("doc_to_text: '{{ question }}'\nnum_fewshot: -1\n", ["t.yaml", "num_fewshot"]),
    ("doc_to_text: '{{ question }}'\nfewshot_config: {sampler: best}\n", ["t.yaml", "sampler"]),
    ("doc_to_text: '{{ question }}'\ndoc_to_target: '{{ solution.upper(1, 2) }}'\n", ["field 'doc_to_target'"]),
])
def test_bad_files_are_one_line_naming_file_and_field(tmp_path: Path, text: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as exc:
        load_template_file(write(tmp_path, text))
    one_line(exc, *fragments)


@pytest.mark.parametrize("source", [
    "{{ ''.__class__ }}",
    "{{ question.__class__.__mro__ }}",
    "{{ options.__len__() }}",
])
def test_the_sandbox_refuses_attribute_access(tmp_path: Path, source: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_template_file(write(tmp_path, f'doc_to_text: "{source}"\n'))
    one_line(exc, "t.yaml", "field 'doc_to_text'", "not allowed")


@pytest.mark.parametrize("source", [
    "{{ question | attr('__class__') }}",  # the filter form, which only the sandbox sees at render time
    "{{ 'x' * 1000000000 }}",
    "{{ 9 ** 999999 }}",
])
def test_the_sandbox_refuses_at_render_time_too(tmp_path: Path, source: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_template_file(write(tmp_path, f'doc_to_text: "{{{{ question }}}}{source}"\n'))
    one_line(exc, "t.yaml", "field 'doc_to_text'")


def test_names_files_and_mismatches(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        resolve_template("no-such-template")
    one_line(exc, "mmlu_pro", "gsm8k_cot", "mc-base")
    with pytest.raises(ConfigError) as exc:
        resolve_template(str(tmp_path / "missing.yaml"))
    one_line(exc, "missing.yaml", "not found")
    plain = load_template_file(write(tmp_path, 'doc_to_text: "Q: {{ question }}"\n'))
    with pytest.raises(ConfigError, match="multiple choice"):
        plain.render(MC)
    shows = load_template_file(write(tmp_path, 'doc_to_text: "{{ question }} {{ choices }}"\n', "mc.yaml"))
    with pytest.raises(ConfigError, match="has none"):
        shows.render(Question(id="n", question="1+1?", answer="2"))


def test_question_text_is_data_not_template(tmp_path: Path) -> None:
    t = load_template_file(write(tmp_path, 'doc_to_text: "Q: {{ question }}"\n'))
    q = Question(id="x", question="What is {{ 7 * 6 }} and {% raw %}?", answer="1")
    assert t.render(q) == "Q: What is {{ 7 * 6 }} and {% raw %}?"
