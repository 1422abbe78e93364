"""harness.grading_choice: a statement beats a stray letter, a hedge never scores, conflicting
statements follow the first, and an exemplar a model invents after its answer is not read.

The outputs are written the way real recorded outputs read (MMLU-Pro's 5-shot chain of thought:
base models that run on into a new "Question:", chat models that summarise other answers)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tourney.harness.grading_choice import ANSWERED, CONFLICTING, HEDGE, UNPARSED, read_choice
from tourney.harness.scoring import Score, score
from tourney.harness.types import Question

TEN = tuple(f"option {i}" for i in range(10))


def mc(gold: str, n: int = 10) -> Question:
    return Question(id="q", question="?", answer=gold, choices=TEN[:n])


@pytest.mark.parametrize("output, letter", [
    ("Both (A) and (C) look plausible at first. The answer is (B).", "B"),  # statement beats stray letters
    ("Answer: B", "B"),
    ("answer: (c)", "C"),
    ("The correct option is D, not A.", "D"),
    ("so the best choice is **E**.", "E"),
    ("Options F and G fail.\n\\boxed{H}", "H"),
    ("Reasoning about (A) and (B).\n**C**", "C"),  # a bold letter alone on its line is a statement
    ("The answer is $\\boxed{\\text{J}}$", "J"),
    ("The answer is A because the others fail.", "A"),
    ("The answer is (B), C is wrong.", "B"),  # a new clause after a comma is not a listed option
    ("The answer is (B) - A is wrong.", "B"),  # nor after a dash
    ("The answer is (I).", "I"),
])
def test_a_statement_names_the_answer(output, letter):
    r = read_choice(output, 10)
    assert (r.letter, r.status) == (letter, ANSWERED)


@pytest.mark.parametrize("output", [
    "The answer is (C) or (D).",
    "The answer is (A, G).",
    "The answer is A and B.",
    "The answer is A or B is correct.",
    "The answer is (C), or maybe (D).",
    "The answer is (c) or possibly (d).",
    "The answer is A-C.",
    "The answer is either B or D.",
    "The answer is both A and C.",
    "Answer: B/D",
    "The answer is (E), (G), (H), and (F).",
    "\\boxed{C} or \\boxed{D}",
    "\\boxed{C, D}",
    "The answer is **C or D**.",
    "It is **C** or **D**.",  # no statement: the letter read stands in a list
])
def test_one_statement_naming_several_options_is_a_hedge(output):
    r = read_choice(output, 10)
    assert (r.letter, r.status) == (None, HEDGE)
    for gold in "ABCDEFGH":
        assert score(mc(gold), output) == Score(None, False, HEDGE)


def test_conflicting_statements_follow_the_first():
    # A chat model that goes on to "summarise" other answers (Qwen1.5-72B-Chat on MMLU-Pro).
    out = "Loudness follows amplitude. The answer is (G).\n\nNow, let's summarise all the answers:\nThe answer is (H)."
    r = read_choice(out, 10)
    assert (r.letter, r.status, r.statements) == ("G", CONFLICTING, (("G",), ("H",)))
    assert score(mc("G"), out) == Score("G", True, CONFLICTING)
    # The same letter stated twice is no conflict.
    assert read_choice("The answer is (D).\n\nFinal Answer:\nThe answer is (D).", 10).status == ANSWERED
    # A hedge first is a hedge, whatever follows.
    assert read_choice("The answer is (C) or (D). So the answer is (C).", 10).status == HEDGE


def test_a_base_models_invented_next_question_is_not_read():
    out = ("Procurement is the process of obtaining goods. The answer is (I).\n\n"
           "Question: Which of these is a retailer?\nOptions:\nA. Procurement\nB. Walmart\n"
           "Answer: Let's think step by step. Walmart sells goods. The answer is (B).")
    r = read_choice(out, 10)
    assert (r.letter, r.status, r.statements, r.cut) == ("I", ANSWERED, (("I",),), True)
    assert score(mc("I"), out).correct and not score(mc("B"), out).correct
    # "Q:" and "Problem 2:" headers too; a header BEFORE any answer is kept (a restated question).
    assert read_choice("The answer is (A).\nQ: next?\nThe answer is (B)", 4).status == ANSWERED
    assert read_choice("Answer: C\n\nProblem 2: more\nAnswer: D", 4).letter == "C"
    assert read_choice("Question: restated?\nThe answer is (B).", 4).letter == "B"


def test_fallbacks_without_a_statement():
    assert read_choice("B. Because the sky is blue.", 4).letter == "B"
    assert read_choice("I pick (b)", 4).letter == "B"
    assert read_choice("I think B is right", 4).letter == "B"
    assert read_choice("A man buys 3 apples and sells them.", 4).status == UNPARSED  # the article
    assert read_choice("C or D", 4).status == HEDGE
    assert read_choice("The answer is E", 4).status == UNPARSED  # past the options
    # Numbered statements: "(i) and (iii)" are roman numerals, not option I; the letter it maps to counts.
    assert read_choice("The correct options are (i) and (iii), which is (H).", 10).letter == "H"


def test_a_hedge_is_not_read_by_its_options_text():
    q = Question(id="q", question="?", answer="A", choices=("Kulia", "Postia"))
    assert score(q, "The answer is (A) or (B). Kulia.") == Score(None, False, HEDGE)


# --- generated hedges: no form of naming several options ever scores -------------------------

_WRAPS = [("({})", "plain"), ("{}", "plain"), ("**{}**", "bold"), ("\\boxed{{{}}}", "boxed"), ("**({})**", "bold"),
          ("$\\boxed{{{}}}$", "boxed")]
_SEPS = [" or ", " and ", ", ", ", or ", ", and ", "/", " / ", " & ", "-", " - ", " to ", " nor "]
_LEADS = ["The answer is ", "Answer: ", "answer: ", "The correct option is ", "The answer is either ",
          "The answer is both ", "So the answer is: ", "The final answer is ", ""]


@settings(max_examples=400, deadline=None)
@given(
    letters=st.lists(st.sampled_from("ABCDEFGHIJ"), min_size=2, max_size=4, unique=True),
    wrap=st.sampled_from(_WRAPS), sep=st.sampled_from(_SEPS), lead=st.sampled_from(_LEADS),
    grouped=st.booleans(), tail=st.sampled_from(["", ".", ". Good luck.", "\n"]),
    prefix=st.sampled_from(["", "Let's think step by step. ", "(A) is wrong and (B) is odd.\n"]),
)
def test_no_hedge_ever_scores(letters, wrap, sep, lead, grouped, tail, prefix):
    fmt, _ = wrap
    if grouped:  # one wrapper around the list: "(A, G)", "**C or D**", "\boxed{C/D}"
        body = fmt.format(sep.join(letters))
    else:  # each option wrapped: "(C) or (D)", "\boxed{C} or \boxed{D}"
        body = sep.join(fmt.format(x) for x in letters)
    out = prefix + lead + body + tail
    for gold in letters:
        s = score(mc(gold), out)
        assert not s.correct, (out, s)
        assert s.prediction is None and s.status == HEDGE, (out, s)


@settings(max_examples=200, deadline=None)
@given(letter=st.sampled_from("ABCDEFGHIJ"), wrap=st.sampled_from(_WRAPS),
       lead=st.sampled_from([x for x in _LEADS if x and "either" not in x and "both" not in x]),
       tail=st.sampled_from(["", ".", ". Good luck.", "\n"]))
def test_a_single_option_stated_is_read(letter, wrap, lead, tail):
    out = lead + wrap[0].format(letter) + tail
    assert score(mc(letter), out) == Score(letter, True, ANSWERED), out


@settings(max_examples=200, deadline=None)
@given(letters=st.lists(st.sampled_from("abcdefghij"), min_size=2, max_size=3, unique=True),
       wrap=st.sampled_from([w for w in _WRAPS if "(" in w[0] or "*" in w[0] or "boxed" in w[0]]),
       sep=st.sampled_from(_SEPS), lead=st.sampled_from(_LEADS))
def test_no_lower_case_hedge_scores_either(letters, wrap, sep, lead):
    out = lead + sep.join(wrap[0].format(x) for x in letters) + "."
    for gold in letters:
        s = score(mc(gold.upper()), out)
        assert not s.correct and s.prediction is None, (out, s)
