"""harness.prompts: rendering of the built-in templates and removal of thinking."""
from __future__ import annotations

import pytest

from tourney.harness.prompts import (BASE_STOP, TEMPLATES, PromptTemplate, get_template, render,
                             strip_thinking, template_for)
from tourney.harness.types import Question

Q = Question(id="q1", question="What is {x} + \\frac{1}{2}?", answer="1")
MC = Question(id="m1", question="Sky colour?", answer="B", choices=("red", "blue", "green"))


def test_base_is_the_miniature_training_prefix() -> None:
    assert render(TEMPLATES["base"], Q) == "Question: What is {x} + \\frac{1}{2}?\nAnswer:"
    assert TEMPLATES["base"].stop == ("\nQuestion:",) == BASE_STOP


def test_cot_chat_messages() -> None:
    assert render(TEMPLATES["cot-chat"], Q) == [{
        "role": "user",
        "content": "What is {x} + \\frac{1}{2}?\nSolve step by step and end with a line 'The answer is N'.",
    }]
    assert TEMPLATES["cot-chat"].stop == ()


def test_multiple_choice_templates() -> None:
    text = render(TEMPLATES["mc-base"], MC)
    assert text == "Question: Sky colour?\nA. red\nB. blue\nC. green\nAnswer:"
    messages = render(TEMPLATES["mc-chat"], MC)
    assert isinstance(messages, list) and messages[0]["role"] == "user"
    assert "A. red\nB. blue\nC. green" in messages[0]["content"] and "letter" in messages[0]["content"]


def test_system_message_comes_first() -> None:
    t = PromptTemplate("sys", "{question}", chat=True, system="Be brief.")
    assert render(t, Q) == [{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": Q.question}]


def test_template_choice_and_mismatches() -> None:
    assert template_for(Q, chat=False).name == "base" and template_for(MC, chat=True).name == "mc-chat"
    with pytest.raises(ValueError, match="needs choices"):
        render(TEMPLATES["mc-base"], Q)
    with pytest.raises(ValueError, match="multiple choice"):
        render(TEMPLATES["base"], MC)
    with pytest.raises(ValueError, match="cot-chat"):
        get_template("nope")
    with pytest.raises(ValueError, match="no {question} slot"):
        PromptTemplate("bad", "hello")


@pytest.mark.parametrize("text, expected", [
    ("The answer is 18.", "The answer is 18."),
    ("<think>maybe 17</think>The answer is 18.", "The answer is 18."),
    ("<think>a</think>\n<think>b</think>\nfinal", "final"),
    ("<think>I ran out of tokens while thinking about 17", ""),
    ("  <think>\nunterminated", ""),
    ("thinking that the template opened\n</think>\n\nThe answer is 4", "The answer is 4"),
    ("Answer 3 <think>after the answer, never closed", "Answer 3"),
    ("", ""),
])
def test_strip_thinking(text: str, expected: str) -> None:
    assert strip_thinking(text) == expected


def test_slot_names_inside_questions_and_choices_stay_as_written() -> None:
    q = Question(id="x", question="Is {choices} a slot?", answer="A", choices=("say {question}", "no"))
    text = render(get_template("mc-base"), q)
    assert "Is {choices} a slot?" in text and "say {question}" in text
    assert text.count("Is {choices} a slot?") == 1
