"""Reading the option a multiple-choice output picks: statements, hedges, conflicts, stray letters.

How it decides (README "How grading decides"):

1. **Statements beat stray letters.** An answer statement is an answer marker followed by an
   option ("The answer is (B)", "Answer: B", "answer: (B)", "The correct option is B", "the best
   choice is **B**") or a boxed letter (`\\boxed{B}`). When an output has one, letters elsewhere
   (in the reasoning, in a list of options) are not read.
2. **A hedge is no answer.** One statement that names several options, joined by "or", "and",
   "nor", commas, slashes, "&", a range ("A-C", "A to C"), with or without parentheses, bold or
   boxes ("(C) or (D)", "(A, G)", "either B or D", "both A and C", `\\boxed{C or D}`), has status
   `hedge`: no prediction, never credit, whatever the gold.
3. **Conflicting statements: the first one counts.** An output whose statements name different
   options has status `conflicting` and is scored by its first statement, as MMLU-Pro's own
   extractor does ("the first 'answer is (X)'"). Measured on recorded outputs
   (benchmarks/grading_agreement.py): the later statements of real outputs are mostly answers to
   other questions (a chat model's "Now, let's summarise all the answers", a base model's invented
   next exemplar), rarely a self-correction. If the first statement is a hedge, the output is a hedge.
4. **The continuation cut** (harness.continuation): once a statement has been made, text from a
   line that opens a new exemplar ("Question:", "Q:", ...) is not read at all.
5. **No statement: a line that is nothing but options** ("**B**", "(B)", "B.", "C or D"): the
   last such line; several options on it are a hedge.
6. **Otherwise a stray letter**: the last marked letter (`(b)`, `**B**`), else the first letter
   opening a line ("B. because ..."), else the last capital letter standing alone that is not
   the article "A" or the pronoun "I". It is a hedge when it stands in a list of options
   ("it is **C** or **D**"), or a marked list of several comes after it.

Only letters among the question's options count; a statement naming a letter past them is not a
statement. Everything is regular expressions over the text; nothing in it is evaluated.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from tourney.harness.continuation import continuation_start
from tourney.harness.prompts import LETTERS, strip_thinking

ANSWERED, UNPARSED, HEDGE, CONFLICTING = "answered", "unparsed", "hedge", "conflicting"
STATUSES = (ANSWERED, UNPARSED, HEDGE, CONFLICTING)
STATEMENT, OPTION_LINE, STRAY = "statement", "option line", "stray letter"  # rules 1-4, 5, 6

# One option named: a letter, optionally wrapped in parentheses, bold or a box. A bare capital
# "A" or "I" before a lower-case word is the article or pronoun ("A man", "I think") unless that
# word joins options ("A or B") or gives a reason ("A because ..."); a bare lower-case letter
# counts only when wrapped, or when it ends the phrase ("answer is b.").
_JOINS = r"(?:or|and|nor|to|through|because|since|as|is|was|are|were|for|but|then|so|which|with)\b"
_LIST_JOINS = r"(?:or|and|nor|to|through)\b"
_WRAP_OPEN = r"(?:\*\*|__|\\boxed\s*\{|\\fbox\s*\{|\$){0,3}[ \t]*"  # bounded: stays linear
_WRAP_CLOSE = r"[ \t]*(?:\*\*|__|\}|\$){0,3}"


def _item(after_comma: bool) -> str:
    """A pattern for one option named. After a comma or a dash a bare letter followed by a word is
    the subject of a new clause ("The answer is (B), C is wrong"), not a listed option."""
    not_a_word_after = r"(?![ \t]+(?!" + (_LIST_JOINS if after_comma else _JOINS) + r")[a-z])"
    return (
        r"(?:" + _WRAP_OPEN + r"\([ \t]*([A-Za-z])[ \t]*\)"  # (B), **(b)**, \boxed{(B)}
        + r"|(?:\$|\*\*|__){0,2}[ \t]*(?:\*\*|__|\\boxed\s*\{|\\fbox\s*\{)[ \t]*([A-Za-z])(?=[ \t]*(?:\*\*|__|\}))"  # **b**, \boxed{b}
        + r"|" + _WRAP_OPEN + r"\(?(?<![\w'’])(?:(A|I)(?![\w'’])" + not_a_word_after
        + r"|([B-HJ-Z])(?![\w'’])" + (not_a_word_after if after_comma else "") + r")\)?"  # B, but not "A man"
        + r"|(?<![\w'’])([a-z])(?![\w'’])(?=[ \t]*(?:[.,;:)!]|$))"  # answer is b.
        + r")" + _WRAP_CLOSE
    )


_ITEM = _item(after_comma=False)
_JOINED = (  # a separator and the option after it: words and slashes join options; after a comma
    # or a dash a letter followed by a word starts a new clause ("(B) - A is wrong", "(B), C is wrong")
    r"[ \t]*(?:(?:,[ \t]*(?:or|and)\b|/|&|\+|\band/or\b|\bor\b|\band\b|\bnor\b|\bto\b|\bthrough\b"
    r"|\bvs\.?)[ \t]*(?:(?:maybe|perhaps|possibly|probably|also|even|alternatively)[ \t]+)?"
    r"(?:(?:option|choice|letter)s?[ \t]+)?" + _ITEM
    + r"|(?:,|-|–|—)[ \t]*(?:(?:option|choice|letter)s?[ \t]+)?" + _item(after_comma=True) + r")"
)
_ITEM_RE = re.compile(_ITEM, re.MULTILINE)
_WRAPPED = re.compile(r"\(|\*\*|__|\\boxed|\\fbox")
_CAPITAL_OR_WRAPPED = re.compile(r"[A-Z]|" + _WRAPPED.pattern)
_LIST = re.compile(_ITEM + r"(?:" + _JOINED + r")*", re.MULTILINE)

# Answer markers, matched on text whose marker words were lower-cased (see `as_read`).
_MARKER = (
    r"(?:\banswers?[ \t]*(?:(?:choice|option|letter)[ \t]+)?"
    r"(?:(?:is|are|would[ \t]+be|will[ \t]+be|should[ \t]+be|must[ \t]+be)[ \t]*[:=]?|[:=])"
    r"|\b(?:correct|right|best|final)[ \t]+(?:option|choice|letter)s?"
    r"(?:[ \t]*(?:is|are|would[ \t]+be|will[ \t]+be|should[ \t]+be)|[ \t]*[:=]))"
)
_FILLER = r"[ \t*_$:]*(?:(?:either|both|one[ \t]+of)[ \t]+)?(?:(?:option|choice|letter)s?[ \t]*:?[ \t]*)?"
_STATEMENT = re.compile(_MARKER + _FILLER + r"(?=(" + _LIST.pattern + r"))", re.MULTILINE)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# A line that is nothing but options: "**B**", "(B)", "B.", "C or D" (rule 5).
_LONE_LINE = re.compile(r"^[ \t>*-]*?(" + _LIST.pattern + r")[ \t]*[.:]?[ \t]*$", re.MULTILINE)
_LATEX_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
# "I and III", "(i), (ii)": roman numerals of a question's numbered statements, not option I.
_ROMAN_NEXT = re.compile(r"[ \t]*(?:,|/|&|\band\b|\bor\b)[ \t]*\(?(?:II|III|IV|VI{0,3}|IX|ii|iii|iv|vi{0,3}|ix)\b")
_MARKER_WORDS = re.compile(
    r"\b(?:answers?|options?|choices?|letters?|correct|right|best|final|is|are|would|will|should|must|be|"
    r"either|both|one|of)\b", re.IGNORECASE)

# Fallbacks when no statement is made (rule 6).
_MARKED_LETTER = re.compile(r"\(([A-Za-z])\)|\\boxed\{([A-Za-z])\}|\*\*\(?([A-Za-z])\)?[.:]?\*\*")
_LINE_START_LETTER = re.compile(r"^[ \t]*\**\(?([A-Z])\)?\**\s*(?:[.:)]|$)", re.MULTILINE)
_BARE_LETTER = re.compile(r"\b(A(?!\s+[a-z])|I(?!\s+[a-z])|[B-HJ-Z])\b(?!['’])")


@dataclass(frozen=True)
class ChoiceReading:
    """What a multiple-choice output says: the letter scored (None for a hedge or nothing read),
    the status, and each statement's letters in order, after the continuation cut."""

    letter: str | None
    status: str  # one of STATUSES
    statements: tuple[tuple[str, ...], ...] = ()
    cut: bool = False  # whether the continuation cut removed the output's end (harness.continuation)
    source: str | None = None  # which rule read it: STATEMENT, OPTION_LINE or STRAY (None: nothing read)
    at: int | None = None  # where in `as_read(output)` the answer read (or the hedge) starts


@dataclass(frozen=True)
class _Statement:
    start: int
    end: int
    letters: tuple[str, ...]  # distinct, in order of mention, upper case


def as_read(output: str, fold: bool = True) -> str:
    """The text the rules read: thinking removed, LaTeX text wrappers unwrapped, marker words
    lower-cased (`fold=False` keeps their case, at the same offsets: for showing it)."""
    text = _LATEX_TEXT.sub(r"\1", strip_thinking(output))
    return _MARKER_WORDS.sub(lambda m: m.group(0).lower(), text) if fold else text


def _letters(span: str) -> tuple[str, ...]:
    found = (next(g for g in m.groups() if g).upper() for m in _ITEM_RE.finditer(span))
    return tuple(dict.fromkeys(found))


def _statements(text: str) -> list[_Statement]:
    """Every answer statement in `text` (already folded), in order of position."""
    found: dict[int, _Statement] = {}
    for m in _STATEMENT.finditer(text):
        end = m.end() + len(m.group(1))
        if _ROMAN_NEXT.match(text, end):
            continue  # "the correct options are (i) and (iii)": numbered statements, not an option
        found.setdefault(m.start(), _Statement(m.start(), end, _letters(m.group(1))))
    for m in _BOXED.finditer(text):
        pos = m.start()
        if any(s.start <= pos < s.end for s in found.values()):
            continue  # already inside a marker's statement ("The answer is \boxed{B}")
        lst = _LIST.match(text, pos)  # the box, and any options joined to it
        if lst:
            found.setdefault(pos, _Statement(pos, lst.end(), _letters(lst.group(0))))
    return [found[k] for k in sorted(found)]


def _fallback(text: str, valid: str) -> tuple[str | None, int | None]:
    """Rule 6: (letter, its position) from marked, line-opening or bare letters."""
    for pattern, pick_last in ((_MARKED_LETTER, True), (_LINE_START_LETTER, False), (_BARE_LETTER, True)):
        hits = [m for m in pattern.finditer(text) if next(g for g in m.groups() if g).upper() in valid]
        if hits:
            m = hits[-1] if pick_last else hits[0]
            return next(g for g in m.groups() if g).upper(), m.start()
    return None, None


def _hedged_from(text: str, pos: int) -> bool:
    """Whether the letter read at `pos` stands in a list naming several options ("C or D"), or a
    list of several that is marked ("(A or B)", "**C/D**") or opens its line ("A or B. Good
    luck.") comes after it: without a statement, the output's last word on the options is what it
    answers. (An unmarked pair inside a sentence is more often algebra, "R and H", than options.)"""
    line_start = text.rfind("\n", 0, pos) + 1
    for m in _LIST.finditer(text, line_start):
        if m.end() <= pos or len(_letters(m.group(0))) < 2:
            continue
        opens_line = not text[text.rfind("\n", 0, m.start()) + 1: m.start()].strip(" \t>*-")
        if m.start() <= pos or opens_line or _WRAPPED.search(m.group(0)):
            return True
    return False


def read_choice(output: str, n_choices: int) -> ChoiceReading:
    """The option `output` picks among the first `n_choices` letters, by the module's rules."""
    valid = LETTERS[:n_choices]
    text = as_read(output)
    if not text or n_choices < 1:
        return ChoiceReading(None, UNPARSED)
    # A statement naming only letters past the options says nothing about them; a hedge that
    # names one of them is still a hedge.
    stated = [s for s in _statements(text) if s.letters and (len(s.letters) > 1 or s.letters[0] in valid)]
    cut = continuation_start(text, stated[0].end if stated else None)
    if cut is not None:
        stated = [s for s in stated if s.start < cut]
    letters = tuple(s.letters for s in stated)
    if stated:
        first = stated[0].letters
        if len(first) > 1:
            return ChoiceReading(None, HEDGE, letters, cut is not None, STATEMENT, stated[0].start)
        named = {x for s in stated for x in s.letters}
        status = CONFLICTING if len(named) > 1 else ANSWERED
        return ChoiceReading(first[0], status, letters, cut is not None, STATEMENT, stated[0].start)
    # A lone lower-case letter ("b" closing a line of algebra) is a variable, not an option line.
    lone = [m for m in _LONE_LINE.finditer(text) if _letters(m.group(1)) and _CAPITAL_OR_WRAPPED.search(m.group(1))
            and (len(_letters(m.group(1))) > 1 or _letters(m.group(1))[0] in valid)]
    if lone:
        named, at = _letters(lone[-1].group(1)), lone[-1].start(1)
        if len(named) > 1:
            return ChoiceReading(None, HEDGE, source=OPTION_LINE, at=at)
        return ChoiceReading(named[0], ANSWERED, source=OPTION_LINE, at=at)
    letter, pos = _fallback(text, valid)
    if letter is None:
        return ChoiceReading(None, UNPARSED)
    if pos is not None and _hedged_from(text, pos):
        return ChoiceReading(None, HEDGE, source=STRAY, at=pos)
    return ChoiceReading(letter, ANSWERED, source=STRAY, at=pos)
