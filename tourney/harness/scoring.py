"""Score a model's output against a gold answer: find the final answer in free text, compare it.

Model output is untrusted: it is only matched with regular expressions and parsed into numbers by
`fractions.Fraction`/`decimal.Decimal`; nothing is evaluated. math-verify (sympy behind it) is
asked only about short extracted answers in LaTeX form, as a second opinion after our own parse.

Numeric answers are normalised to one spelling so that golds and predictions compare as text too:
integers as "1000" (no commas, "$", or ".00"), decimals as "0.5", fractions as the decimal when
it ends ("3/4" -> "0.75") and reduced otherwise ("2/6" -> "1/3"), percentages as the number of
percent ("50%" -> "50", the way GSM8K states them).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext
from fractions import Fraction
from typing import Sequence

from tourney.harness.continuation import continuation_start
from tourney.harness.grading_choice import ANSWERED, HEDGE, STATUSES, UNPARSED, read_choice
from tourney.harness.mathverify import verify_equal
from tourney.harness.prompts import _THINK_TAG, LETTERS, strip_thinking
from tourney.harness.types import Question

REL_TOL = 1e-6  # relative to the gold, when the gold is not a whole number (numbers_equal)
MAX_DIGITS = 100  # a longer digit run is noise, not an answer (and would hit int/str limits)

# A number as people and models write it. The look-behind keeps "x2", "v1.5" and the "3" of "5-3"
# from reading as numbers; a minus counts only when glued to the digits ("-3", "-$3", "$-3").
_NUM = re.compile(
    r"(?<![\w.])"
    r"(?:(?P<sign>-)(?=\$?\s?\.?\d))?\$?\s?(?P<sign2>-(?=\.?\d))?"
    r"(?=\.?\d)(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)?(?P<frac>\.\d+)?"
    r"(?P<exp>[eE][-+]?\d+)?"
    r"(?:/(?P<den>\d+)(?!\d|\.\d))?"
    r"(?P<pct>\s?%)?"
)
MAX_EXPONENT = 30  # "1.5e3" reads exactly as 1500; "1e999999" is not an answer anyone gave
_FULL_NUM = re.compile(r"\s*(?:" + _NUM.pattern + r")\s*\.?\s*")

# LaTeX and markdown that wrap numbers: rewritten before any search so "$\frac{3}{4}$", "**18**",
# "1{,}000" and "\$18" read as plain numbers.
_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*(-?[\d.,]+)\s*\}\s*\{\s*([\d.,]+)\s*\}")
_LATEX_FRAC_SHORT = re.compile(r"\\[dt]?frac(\d)(\d)")  # \frac34
_LATEX_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")
_ANNOTATION = re.compile(r"<<[^<>]*>>")  # GSM8K calculator notes: "<<48/2=24>>"
_SIMPLE_SUBS = (
    ("\\$", "$"), ("\\%", "%"), ("{,}", ","), ("\\!", ""), ("\\,", ""), ("\\;", " "),
    ("\\left", ""), ("\\right", ""), ("^\\circ", ""), ("^{\\circ}", ""), ("−", "-"),
    ("\\(", " "), ("\\)", " "), ("\\[", " "), ("\\]", " "),
)

# "**18**" is bold; "9**9" is a power and stays, so that it reads as an expression, not as 99.
_BOLD = re.compile(r"(?<!\d)\*\*|\*\*(?!\d)")
# A number glued to a base prefix is not a decimal: "0x10", "0b101", "0o17".
_BASE_PREFIX = re.compile(r"[xXbBoO][0-9a-fA-F]")

_HASHES = re.compile(r"####[ \t]*([^\n]*)")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# The span after a marker is capped so that a long line full of markers stays linear to scan.
_ANSWER_IS = re.compile(
    r"\banswer\s*(?:is|would\s+be|will\s+be|should\s+be|=)\s*:?(?=([^\n]{0,300}))", re.IGNORECASE
)
# "A: 18" only as a capital opening a line (Q/A layout), never the "a:" inside a sentence.
_ANSWER_COLON = re.compile(
    r"(?:\banswer\s*:|^[ \t>*#-]*(?-i:A)\s*:)(?=([^\n]{0,300}))", re.IGNORECASE | re.MULTILINE
)
_EXPR_CONTINUES = re.compile(r"\s*(?:\*\*|\^|[-+*/×÷x]|\\times|\\cdot|\\div)\s*[\d$(.{]")


@dataclass
class Score:
    prediction: str | None  # the extracted answer, normalised; None when nothing was found
    correct: bool
    # "answered", "unparsed", "hedge" (several options named: no prediction, never correct) or
    # "conflicting" (statements disagree: the first counts); see harness.grading_choice. Left
    # out, it follows from the prediction: answered when there is one, else unparsed.
    status: str | None = None

    def __post_init__(self) -> None:
        if self.status is None:
            self.status = ANSWERED if self.prediction is not None else UNPARSED
        elif self.status not in STATUSES:
            raise ValueError(f"unknown grading status {self.status!r}; expected one of {STATUSES}")


def _clean(text: str) -> str:
    """Rewrite LaTeX/markdown number wrappers to plain text and drop GSM8K annotations."""
    text = _ANNOTATION.sub("", text)
    text = _LATEX_TEXT.sub(r" \1 ", text)
    text = _LATEX_FRAC.sub(r"\1/\2", text)
    text = _LATEX_FRAC_SHORT.sub(r"\1/\2", text)
    for old, new in _SIMPLE_SUBS:
        text = text.replace(old, new)
    return _BOLD.sub("", text)


def _from_match(m: re.Match[str]) -> str | None:
    """Normalised text of one `_NUM` match, or None when it holds no digits."""
    whole, frac = m.group("int") or "", m.group("frac") or ""
    den, exp = m.group("den"), m.group("exp")
    if not whole and not frac or len(whole) + len(frac) + len(den or "") > MAX_DIGITS:
        return None
    if den is not None and int(den) == 0:
        return None  # "1/0" is no number, and certainly not 1
    if exp is not None and abs(int(exp[1:])) > MAX_EXPONENT:
        return None
    if _BASE_PREFIX.match(m.string, m.end()) and whole == "0" and not frac:
        return None  # "0x10" is hexadecimal, not 0
    negative = bool(m.group("sign") or m.group("sign2"))
    try:
        value = Fraction(Decimal(whole.replace(",", "") + frac if whole else "0" + frac))
    except (InvalidOperation, ValueError):
        return None
    if exp is not None:
        value *= Fraction(10) ** int(exp[1:])
    if den is not None:
        value /= int(den)
    return _format(-value if negative else value)


def _format(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    # A decimal whose digits end (0.5, 2.25) prints as a decimal; others (1/3) stay a fraction.
    d = value.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    if d != 1:
        return f"{value.numerator}/{value.denominator}"
    with localcontext() as ctx:
        ctx.prec = 4 * MAX_DIGITS  # exact: the quotient terminates within this many digits
        text = format(Decimal(value.numerator) / Decimal(value.denominator), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def normalize_number(text: str) -> str | None:
    """The canonical spelling of `text` if the whole of it is one number, else None.

    >>> normalize_number("$1,000.00"), normalize_number("-.5"), normalize_number("6/8")
    ('1000', '-0.5', '0.75')
    """
    m = _FULL_NUM.fullmatch(_clean(text))
    if m is None:
        return None
    return _from_match(m)


def _numbers(text: str) -> list[tuple[re.Match[str], str]]:
    found = []
    for m in _NUM.finditer(text):
        value = _from_match(m)
        if value is not None:
            found.append((m, value))
    return found


def _first_value(span: str) -> str | None:
    """The first number in a span such as the rest of "The answer is ...".

    When that number begins an expression ("5 \\times 3 = 15"), the result after the last "=" is
    the answer, not the first operand.
    """
    nums = _numbers(span)
    if not nums:
        return None
    m, value = nums[0]
    rest = span[m.end():]
    if _EXPR_CONTINUES.match(rest):
        # "5 \\times 3 = 15" is 15; "9**9**9" or "2^{10}" with no result is not an answer we can
        # read exactly, and its first operand is certainly not it.
        after = _first_value(rest[rest.rindex("=") + 1:]) if "=" in rest else None
        return after
    return value


def _boxed_contents(text: str) -> list[str]:
    """Contents of the last 20 `\\boxed{...}`, braces balanced, in order.

    Only the last few are scanned so that a long output full of unclosed boxes stays linear."""
    out = []
    for m in list(_BOXED.finditer(text))[-20:]:
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            out.append(text[m.end(): i - 1])
    return out


def _boxed_value(content: str) -> str | None:
    cleaned = _clean(content).strip()
    if "=" in cleaned:  # "x = 5"
        cleaned = cleaned[cleaned.rindex("=") + 1:].strip()
    full = normalize_number(cleaned)
    if full is not None:
        return full
    if "\\" in cleaned or _EXPR_CONTINUES.search(cleaned):
        # Real LaTeX (\sqrt{2}, \pi) or an expression (2^{10}) that we do not reduce: kept as
        # written for math-verify, which compares it under a time limit (harness.mathverify).
        return cleaned
    return _first_value(cleaned)


def _is_hashes_answer(span: str) -> bool:
    """Whether a cleaned `####` line is an answer. Only "#### N": chat models also write
    "#### Step 1" as a markdown heading. A span that starts with a number we cannot read exactly
    ("1/0", "1e999999", "0x10", "9**9") is the model's answer all the same: unparsed, not a
    guess from elsewhere in the text."""
    m = _NUM.match(span)
    return bool(m and (m.group("int") or m.group("frac")))


def _answer_stated_at(text: str) -> int | None:
    """Where the output's first answer statement ends (a `#### N` line, a box, "the answer is N",
    "Answer: N"), or None: where the continuation cut may start looking (harness.continuation)."""
    firsts = (
        next((m.end() for m in _HASHES.finditer(text) if _is_hashes_answer(_clean(m.group(1)).strip())), None),
        next((m.end() for m in _BOXED.finditer(text)), None),
        *(next((m.end() for m in p.finditer(text) if _first_value(_clean(m.group(1)))), None)
          for p in (_ANSWER_IS, _ANSWER_COLON)),
    )
    return min((e for e in firsts if e is not None), default=None)


def without_continuation(text: str) -> str:
    """`text` up to the exemplar a model invented after stating its answer (harness.continuation)."""
    cut = continuation_start(text, _answer_stated_at(text))
    return text if cut is None else text[:cut]


def hashes_answer_span(text: str) -> tuple[int, int] | None:
    """Where in `text` (as given, thinking included) extract_answer reads a `#### N` answer: the
    character span of the first accepted `####` line's content, the line it scores. None when
    the answer, if any, comes from another format. Signals that score the answer's tokens use
    this, so they read the answer the grader scores (the first `####`, not the last).

    The answer is looked for where strip_thinking leaves it: after the last `</think>`, up to a
    `<think>` that never closes (text kept between two thinking blocks is not searched)."""
    tags = list(_THINK_TAG.finditer(text))
    closes = [t.end() for t in tags if t.group(1)]
    start = closes[-1] if closes else 0
    opens = [t.start() for t in tags if not t.group(1) and t.start() >= start]
    end = opens[0] if opens else len(text)
    end = start + len(without_continuation(text[start:end]))
    for m in _HASHES.finditer(text, start, end):
        if _is_hashes_answer(_clean(m.group(1)).strip()):
            return m.start(1), m.end(1)
    return None


def extract_answer(text: str) -> str | None:
    """The final numeric answer in a model's output, normalised (see module doc), or None.

    Tried in order, the first format found wins:
    1. `#### N`, the GSM8K and miniature-model format (the first one: a base model that runs on
       invents further questions with their own "####" lines);
    2. `\\boxed{N}` (the last one); LaTeX that is not a plain number is returned as written;
    3. "the (final) answer is N" (the last one, as models correct themselves);
    4. "Answer: N" or a line starting "A: N" (the last one);
    5. the last number anywhere.
    Thinking blocks are removed first, so numbers inside them never count, and so is an exemplar
    the model invented after stating its answer (harness.continuation).
    """
    text = without_continuation(strip_thinking(text))
    if not text:
        return None
    for span in _HASHES.findall(text):
        span = _clean(span).strip()
        if _is_hashes_answer(span):
            return _first_value(span)
    for content in reversed(_boxed_contents(text)):
        value = _boxed_value(content)
        if value:
            return value
    cleaned = _clean(text)
    for pattern in (_ANSWER_IS, _ANSWER_COLON):
        for marker in reversed(list(pattern.finditer(cleaned))):
            value = _first_value(marker.group(1))
            if value is not None:
                return value
    nums = _numbers(cleaned)
    return nums[-1][1] if nums else None


def _to_fraction(text: str) -> Fraction | None:
    norm = normalize_number(text)
    return Fraction(norm) if norm is not None else None


def numbers_equal(pred: str | None, gold: str) -> bool:
    """Whether a predicted answer equals the gold one.

    - An integer gold needs that exact integer: "1000000.5" is not 1000000, however close.
    - A gold with a fractional part ("0.5", "1/3") accepts a prediction within REL_TOL (1e-6) of
      the gold's own size: |pred - gold| <= 1e-6 * |gold|, so "0.3333333" equals 1/3, "0.33"
      does not, and "2.5000001" equals 2.5.
    - Anything our parser cannot read as a number (`\\sqrt{2}`, `2^{\\sqrt{4}}`) is left to
      math-verify under its time bound (harness.mathverify); the gold is handed over in its
      normalised spelling, so an integer gold is compared as an integer (math-verify's own
      rounding applies only where a side is a decimal). Not shown equal in time: not equal.
    """
    if pred is None:
        return False
    p, g = _to_fraction(pred), _to_fraction(gold)
    if p is not None and g is not None:
        if p == g:
            return True
        if g.denominator == 1:
            return False
        return abs(p - g) <= REL_TOL * abs(g)
    return verify_equal(pred, _format(g) if g is not None else gold)


def extract_choice(text: str, n_choices: int) -> str | None:
    """The chosen letter (A, B, ...) among the first `n_choices`, or None (nothing read, or a
    hedge). The rules, statements first, are harness.grading_choice's."""
    return read_choice(text, n_choices).letter


_TEXT_MARKER = re.compile(r"\banswer\s*(?:is|:)", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?]\s+|\n")


def _plain(text: str) -> str:
    return " ".join(text.split()).strip().rstrip(".!").strip().lower()


def extract_choice_text(text: str, choices: Sequence[str]) -> str | None:
    """The letter of the option an output names by its text, or None.

    The final answer is the text after the last answer marker ("the answer is", "Answer:"), or
    else the output's last sentence; it counts only when it IS one option's text (case, spacing
    and a final period aside), so nothing is guessed from an option merely mentioned. Models too
    small to bind an answer to its letter answer this way (the miniature pair: "Postia.", or with
    a brief reason first, "Zor. Postia."), as lm-eval scores such models by the options' text.
    """
    text = strip_thinking(text)
    markers = list(_TEXT_MARKER.finditer(text))
    if markers:
        final = text[markers[-1].end():]
    else:
        parts = _SENTENCE_END.split(text.strip())
        final = parts[-1] if parts[-1].strip() or len(parts) < 2 else parts[-2]
    final = _plain(final)
    hits = [i for i, c in enumerate(choices) if final and _plain(c) == final]
    return LETTERS[hits[0]] if len(hits) == 1 else None


def read_option(question: Question, output: str) -> Score:
    """The option an output picks, unscored (correct False): its letter (harness.grading_choice),
    else the option it names by its text. A hedge stays a hedge: its text is not read either."""
    choices = question.choices or ()
    reading = read_choice(output, len(choices))
    if reading.letter is None and reading.status != HEDGE:
        return Score(extract_choice_text(output, choices), False)
    return Score(reading.letter, False, reading.status)


def choose_option(question: Question, output: str) -> str | None:
    """The option an output picks: its letter (extract_choice), else the option it names by text."""
    return read_option(question, output).prediction


def score(question: Question, output: str) -> Score:
    """Extract the answer from `output` and compare it with the question's gold answer."""
    if question.is_multiple_choice:
        read = read_option(question, output)
        gold = question.answer.strip().upper()
        return Score(read.prediction, read.prediction is not None and read.prediction == gold, read.status)
    pred = extract_answer(output)
    return Score(pred, numbers_equal(pred, question.answer))
