"""Prompt templates, and removal of a reasoning model's thinking before its answer is scored.

A template is plain text with a `{question}` slot and, for multiple choice, a `{choices}` slot.
Slots are filled with `str.replace`, not `str.format`, because questions carry braces of their own
(LaTeX `\\frac{3}{4}`, set notation) that `format` would treat as fields.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from tourney.errors import ConfigError, DataError
from tourney.harness.types import Question

Message = dict[str, str]  # {"role": ..., "content": ...}, as OpenAI chat endpoints take it

# Base models run on past their answer into an invented next question; this ends them there.
BASE_STOP: tuple[str, ...] = ("\nQuestion:",)

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class PromptTemplate:
    """One way of asking a question. `chat` templates render to messages, others to one string."""

    name: str
    text: str  # contains `{question}`; multiple-choice templates also contain `{choices}`
    chat: bool = False
    system: str | None = None  # system message, chat templates only
    stop: tuple[str, ...] = ()  # stop sequences this template's output needs

    def __post_init__(self) -> None:
        if "{question}" not in self.text:
            raise ValueError(f"template {self.name!r} has no {{question}} slot")
        if self.system is not None and not self.chat:
            raise ValueError(f"template {self.name!r}: a system message needs chat=True")

    @property
    def multiple_choice(self) -> bool:
        return "{choices}" in self.text


TEMPLATES: dict[str, PromptTemplate] = {
    # The miniature models are trained on exactly "Question: ...\nAnswer: <worked solution>\n#### N",
    # so this prompt is their training prefix and the answer arrives in the "#### N" form.
    "base": PromptTemplate("base", "Question: {question}\nAnswer:", stop=BASE_STOP),
    "cot-chat": PromptTemplate(
        "cot-chat",
        "{question}\nSolve step by step and end with a line 'The answer is N'.",
        chat=True,
    ),
    "mc-base": PromptTemplate(
        "mc-base", "Question: {question}\n{choices}\nAnswer:", stop=BASE_STOP
    ),
    "mc-chat": PromptTemplate(
        "mc-chat",
        "{question}\n\n{choices}\n\nThink it through, then end with a line 'The answer is X' "
        "where X is the letter of the correct choice.",
        chat=True,
    ),
}


def get_template(name: str) -> PromptTemplate:
    """The built-in template called `name`; the error lists the known names."""
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ConfigError(f"unknown prompt template {name!r}; expected one of {', '.join(TEMPLATES)}") from None


def with_system(template: PromptTemplate, system: str | None) -> PromptTemplate:
    """`template` with `system` as its system message (None: unchanged); chat templates only."""
    if system is None:
        return template
    if not template.chat:
        raise ConfigError(f"template {template.name!r} is not a chat template: a system prompt needs chat messages")
    return replace(template, system=system)


def template_for(question: Question, chat: bool) -> PromptTemplate:
    """The built-in template that suits this question: multiple choice or not, chat or base."""
    if question.is_multiple_choice:
        return TEMPLATES["mc-chat" if chat else "mc-base"]
    return TEMPLATES["cot-chat" if chat else "base"]


def format_choices(choices: tuple[str, ...] | list[str]) -> str:
    """`A. first` / `B. second` lines, the layout multiple-choice benchmarks use."""
    if len(choices) > len(LETTERS):
        raise DataError(f"at most {len(LETTERS)} choices, got {len(choices)}")
    return "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))


_SLOT = re.compile(r"\{(question|choices)\}")


def render(template: PromptTemplate, question: Question) -> str | list[Message]:
    """The prompt for one question: a string for a base template, chat messages for a chat one."""
    if template.multiple_choice and not question.is_multiple_choice:
        raise ConfigError(
            f"template {template.name!r} needs choices but question {question.id!r} has none"
        )
    if question.is_multiple_choice and not template.multiple_choice:
        # Asking for a letter without showing the options would score as wrong for no reason.
        raise ConfigError(
            f"question {question.id!r} is multiple choice but template {template.name!r} "
            "has no {choices} slot"
        )
    values = {"question": question.question}
    if template.multiple_choice:
        values["choices"] = format_choices(question.choices or ())
    # One pass over the template: text put into a slot is never scanned again, so a question or
    # a choice that mentions "{question}" or "{choices}" literally stays as written.
    text = _SLOT.sub(lambda m: values.get(m.group(1), m.group(0)), template.text)
    if not template.chat:
        return text
    messages: list[Message] = []
    if template.system:
        messages.append({"role": "system", "content": template.system})
    messages.append({"role": "user", "content": text})
    return messages


_THINK_TAG = re.compile(r"<(/?)think>", re.IGNORECASE)


def strip_thinking(text: str) -> str:
    """The answer part of a reasoning model's output, without its `<think>...</think>` blocks.

    Two unbalanced cases matter in practice:
    - a `<think>` that never closes (the model ran out of tokens while thinking): everything after it
      is thinking, so only the text before it (usually nothing) is kept;
    - a `</think>` with no opening tag: chat templates such as Qwen3-Thinking put `<think>` in the
      prompt, so the output starts inside the thinking and everything up to the tag is dropped.
    One pass over the tags, not a regex over the text, so a flood of unclosed tags stays linear.
    """
    kept: list[str] = []
    pos = 0  # start of the text not yet kept or dropped
    inside = False
    for tag in _THINK_TAG.finditer(text):
        if not tag.group(1):  # <think>
            if not inside:
                kept.append(text[pos: tag.start()])
                inside = True
        elif inside:  # </think> closing a block
            inside, pos = False, tag.end()
        else:  # </think> without an opening: all so far was thinking
            kept, pos = [], tag.end()
    if not inside:
        kept.append(text[pos:])
    return "".join(kept).strip()
