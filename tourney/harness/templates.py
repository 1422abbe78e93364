"""Prompt templates from a file, in lm-eval's vocabulary, rendered by a sandboxed Jinja2.

    # my_task.yaml (or .toml)                     tourney eval --template my_task.yaml ...
    description: "The following are questions about {{ type }}.\\n\\n"
    doc_to_text: "Question: {{ question }}\\n{{ choices }}\\n"
    answer_prefix: "Answer:"
    doc_to_target: "{{ solution }}"      # an exemplar's worked answer
    choice_format: "A. text"             # or "(A) text", "A) text", or Jinja over letter/text/index
    target_delimiter: " "
    fewshot_delimiter: "\\n\\n"
    until: ["\\n\\nQuestion:"]           # stop sequences (lm-eval's generation_kwargs.until)

A prompt is `description`, then each exemplar as doc_to_text + answer_prefix + target_delimiter +
doc_to_target + fewshot_delimiter, then the question as doc_to_text + answer_prefix: what lm-eval
builds for a `generate_until` task. In chat, the whole text is one user message, or, with
`fewshot_as_multiturn`, each exemplar is a user turn and an assistant turn and the description
joins the system message.

Safety. Every field is a Jinja2 template run in an ImmutableSandboxedEnvironment: no attribute
that starts with "_", no mutation, no Python; a template reads the fields listed in FIELDS and
nothing else (an unknown name is an error when the file is read, not a blank in the prompt). The
question's gold answer and solution are visible to doc_to_target only, which renders exemplars,
so no template can show a model the answer it is asked for. Every failure (a bad file, an unknown
key or variable, a syntax or render error) is one ConfigError naming the file and the field.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence

from jinja2 import StrictUndefined, TemplateError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import Field

from tourney.errors import ConfigError
from tourney.harness.prompts import LETTERS, Message
from tourney.harness.types import Question
from tourney.schema import Strict, parse_option, read_mapping

SHIPPED_DIR = Path(__file__).resolve().parent / "data" / "templates"
TEMPLATE_SUFFIXES = (".yaml", ".yml", ".toml", ".json")

# What each field may read. The asked question's gold (answer, solution) is in EXEMPLAR only.
_DOC = frozenset({"question", "choices", "options", "letters", "type", "id"})
_EXEMPLAR = _DOC | {"answer", "solution"}
FIELDS: dict[str, frozenset[str]] = {
    "description": _DOC, "system": _DOC, "doc_to_text": _DOC, "answer_prefix": _DOC,
    "doc_to_target": _EXEMPLAR, "choice_format": frozenset({"letter", "text", "index"}),
}
# The usual layouts of one option, by the name benchmarks' papers write them.
CHOICE_PRESETS = {"A. text": "{{ letter }}. {{ text }}", "(A) text": "({{ letter }}) {{ text }}",
                  "A) text": "{{ letter }}) {{ text }}", "A: text": "{{ letter }}: {{ text }}"}
_MAX_TEXT = 1_000_000  # characters one rendered field may reach: a prompt, never a memory bomb


class _Env(ImmutableSandboxedEnvironment):
    """The sandbox, with `*` and `**` checked: "x" * 10**9 would otherwise be a gigabyte."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > 64:
            raise SecurityError("exponent too large")
        if operator == "*":
            size = next((len(x) for x in (left, right) if isinstance(x, (str, list, tuple))), 1)
            count = next((x for x in (left, right) if isinstance(x, int) and not isinstance(x, bool)), 1)
            if size * count > _MAX_TEXT:
                raise SecurityError("repetition too long")
        return super().call_binop(context, operator, left, right)


ENV = _Env(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


class FewshotSample(Strict):
    """An exemplar written in the template itself (lm-eval's fewshot_config.samples): the published
    prompts of GSM8K and others are fixed text."""

    question: str = Field(min_length=1)
    target: str = Field(min_length=1)  # the worked answer, lm-eval's name for it
    answer: str = ""  # the gold, when the template shows it
    choices: list[str] | None = None
    type: str = "default"


class FewshotConfig(Strict):
    sampler: Literal["first_n", "random"] = "random"  # first_n: file order (MMLU-Pro, GSM8K-CoT)
    by: Literal["type", "all"] = "all"  # type: exemplars of the question's own type only
    samples: list[FewshotSample] = Field(default_factory=list)


class TemplateSpec(Strict):
    """A template file's fields (module doc); unknown keys are refused."""

    name: str | None = None
    source: str | None = None  # where a published prompt comes from; documentation only
    description: str = ""
    doc_to_text: str = Field(min_length=1)
    answer_prefix: str = ""
    doc_to_target: str = "{{ solution }}"
    choice_format: str = "A. text"
    choice_delimiter: str = "\n"
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    until: list[Annotated[str, Field(min_length=1)]] | None = None  # None: fewshot_delimiter + doc_to_text's opening
    num_fewshot: int = Field(0, ge=0, le=64)
    fewshot_config: FewshotConfig = Field(default_factory=FewshotConfig)
    chat: bool = False
    system: str | None = None


def _where(path: str, field: str) -> str:
    return f"{path}: field {field!r}"


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@dataclass(frozen=True)
class FileTemplate:
    """A template read from a file (or a shipped one), compiled and checked."""

    name: str
    path: str  # for error messages
    spec: TemplateSpec
    sha256: str  # of the file's bytes: part of a run's identity
    compiled: dict[str, Any]  # field -> jinja2 Template

    @property
    def chat(self) -> bool:
        return self.spec.chat

    @property
    def system(self) -> str | None:
        return self.spec.system

    @property
    def multiple_choice(self) -> bool:
        return bool(self.reads("doc_to_text") & {"choices", "options", "letters"})

    @property
    def stop(self) -> tuple[str, ...]:
        if self.spec.until is not None:
            return tuple(self.spec.until)
        # The few-shot header: what starts the next exemplar, where a base model runs on.
        head = re.split(r"\{[{%#]", self.spec.doc_to_text, maxsplit=1)[0].strip()
        return (self.spec.fewshot_delimiter + head,) if head else ()

    def reads(self, field: str) -> set[str]:
        source = _source(self.spec, field)
        return set(meta.find_undeclared_variables(ENV.parse(source))) if source else set()

    def fill(self, field: str, values: dict[str, Any]) -> str:
        """One field rendered; a failure is one ConfigError naming the file and the field."""
        template = self.compiled.get(field)
        if template is None:
            return ""
        try:
            return template.render(values)
        except (TemplateError, ArithmeticError, TypeError, ValueError) as exc:
            raise ConfigError(f"{_where(self.path, field)}: {_one_line(exc)}") from None

    # -- one document's values -------------------------------------------------------------
    def values(self, q: Question, exemplar: bool) -> dict[str, Any]:
        options = list(q.choices or ())
        if len(options) > len(LETTERS):
            raise ConfigError(f"question {q.id!r}: at most {len(LETTERS)} choices, got {len(options)}")
        lines = [self.fill("choice_format", {"letter": LETTERS[i], "text": t, "index": i})
                 for i, t in enumerate(options)]
        out = {"question": q.question, "choices": self.spec.choice_delimiter.join(lines), "options": options,
               "letters": list(LETTERS[: len(options)]), "type": q.type, "id": q.id}
        if exemplar:
            out.update(answer=q.answer, solution=q.solution or "")
        return out

    def check_question(self, q: Question) -> None:
        """The mismatches harness.prompts refuses too: options the template does not show, or a
        template that shows options the question does not have."""
        if self.multiple_choice and not q.is_multiple_choice:
            raise ConfigError(f"template {self.name!r} shows choices but question {q.id!r} has none")
        if q.is_multiple_choice and not self.multiple_choice:
            raise ConfigError(f"question {q.id!r} is multiple choice but template {self.name!r} shows no "
                              "choices (doc_to_text reads neither 'choices' nor 'options')")

    # -- the prompt --------------------------------------------------------------------------
    def render(self, q: Question, exemplars: Sequence[Question] = (), *, chat: bool | None = None,
               multiturn: bool = False, system: str | None = None) -> str | list[Message]:
        """The prompt for `q` after `exemplars`: a string, or chat messages when `chat` (default:
        the template's own setting); `multiturn` makes each exemplar a user and an assistant turn."""
        self.check_question(q)
        chat = self.spec.chat if chat is None else chat
        mine = self.values(q, exemplar=False)
        asked = self.fill("doc_to_text", mine) + self.fill("answer_prefix", mine)
        description = self.fill("description", mine)
        system = system if system is not None else (self.fill("system", mine) or None)
        shots = []
        for ex in exemplars:
            v = self.values(ex, exemplar=True)
            shots.append((self.fill("doc_to_text", v) + self.fill("answer_prefix", v), self.fill("doc_to_target", v)))
        if not (chat and multiturn):
            text = description + "".join(u + self.spec.target_delimiter + a + self.spec.fewshot_delimiter
                                         for u, a in shots) + asked
            if not chat:
                return text
            return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
        head = "\n\n".join(p for p in (system, description.strip()) if p)
        messages: list[Message] = [{"role": "system", "content": head}] if head else []
        for u, a in shots:
            messages += [{"role": "user", "content": u}, {"role": "assistant", "content": a.strip()}]
        return messages + [{"role": "user", "content": asked}]


def _source(spec: TemplateSpec, field: str) -> str:
    """A field's Jinja source, a choice preset written out."""
    source = getattr(spec, field) or ""
    return CHOICE_PRESETS.get(source, source) if field == "choice_format" else source


def _compile(spec: TemplateSpec, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, allowed in FIELDS.items():
        source = _source(spec, field)
        if not source:
            continue
        try:
            ast = ENV.parse(source)
            unknown = sorted(set(meta.find_undeclared_variables(ast)) - allowed)
            if unknown:
                hint = " (the gold is shown to exemplars only, in doc_to_target)" if {"answer", "solution"} & set(
                    unknown) else ""
                raise ConfigError(f"{_where(path, field)}: unknown variable {unknown[0]!r}{hint}; "
                                  f"known: {', '.join(sorted(allowed))}")
            for node in ast.find_all((nodes.Getattr,)):
                if node.attr.startswith("_"):  # the sandbox refuses it at render time; say so now
                    raise ConfigError(f"{_where(path, field)}: attribute {node.attr!r} is not allowed "
                                      "(a template reads values, it runs no code)")
            out[field] = ENV.from_string(source)
        except TemplateError as exc:
            line = f" (line {exc.lineno})" if getattr(exc, "lineno", None) else ""
            raise ConfigError(f"{_where(path, field)}: {_one_line(exc)}{line}") from None
    return out


def load_template_file(path: str | Path, name: str | None = None) -> FileTemplate:
    """Read, validate and compile a template file; a trial render of every field on a sample
    question finds runtime errors before any model is loaded."""
    path = Path(path)
    raw = read_mapping(path, "prompt template")
    spec = parse_option(TemplateSpec, raw, str(path))
    try:
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:  # read_mapping read it a moment ago; racing deletes still get one line
        raise ConfigError(f"{path}: cannot read the prompt template file ({exc.strerror or exc})") from None
    template = FileTemplate(name=spec.name or name or path.stem, path=str(path), spec=spec, sha256=sha,
                            compiled=_compile(spec, str(path)))
    sample = Question(id="sample", question="What is 1 + 1?", answer="B", type="sample",
                      choices=("1", "2") if template.multiple_choice else None, solution="1 + 1 = 2.")
    template.render(sample, [sample], chat=False)
    template.render(sample, [sample], chat=True, multiturn=True)
    return template


def shipped_templates() -> dict[str, Path]:
    """The template files that come with the package, by name (file stem)."""
    if not SHIPPED_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(SHIPPED_DIR.iterdir()) if p.suffix in TEMPLATE_SUFFIXES}


def is_template_file(value: str) -> bool:
    """A --template value that names a file (a path with a template suffix) rather than a name."""
    return Path(value).suffix.lower() in TEMPLATE_SUFFIXES


def find_template_file(value: str) -> FileTemplate | None:
    """A shipped template by name, or a template file by path; None for other names (the
    built-in templates of harness.prompts)."""
    shipped = shipped_templates()
    if value in shipped:
        return load_template_file(shipped[value], name=value)
    if is_template_file(value):
        return load_template_file(value)
    return None


def resolve_template(value: str) -> Any:
    """--template's value as a template: a shipped or file template (FileTemplate), else a
    built-in one (harness.prompts.PromptTemplate); an unknown name lists every choice."""
    from tourney.harness.prompts import TEMPLATES

    found = find_template_file(value)
    if found is not None:
        return found
    if value in TEMPLATES:
        return TEMPLATES[value]
    raise ConfigError(f"unknown prompt template {value!r}; expected a built-in one ({', '.join(TEMPLATES)}), "
                      f"a shipped one ({', '.join(shipped_templates()) or 'none'}), or a template file "
                      f"({'/'.join(TEMPLATE_SUFFIXES)})")
