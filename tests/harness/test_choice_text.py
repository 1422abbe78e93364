"""Multiple-choice answers that name the option by its text (models without letter binding)."""
import pytest

from tourney.harness.scoring import choose_option, extract_choice_text, score
from tourney.harness.types import Question

CHOICES = ("Bekusia", "Kulia", "Pupuria", "Postia")
YEARS = ("1841", "1843", "1846", "1848")


@pytest.mark.parametrize("text, expected", [
    (" Postia.", "D"), ("Postia", "D"), (" postia\n", "D"),
    (" Zor. Kulia.", "B"),  # a brief reason, then the answer
    ("The answer is Pupuria.", "C"), ("Answer: Bekusia", "A"),
    (" Kulia or Postia", None),  # not one option
    (" Postia is wrong, Kulia.", None),  # the last sentence is no option
    (" Zor. ", None), ("", None), (" Postias.", None),
])
def test_the_final_answer_must_be_exactly_one_options_text(text, expected):
    assert extract_choice_text(text, CHOICES) == expected


def test_numbers_and_letters_first():
    assert extract_choice_text(" 1843.", YEARS) == "B" and extract_choice_text(" 1845.", YEARS) is None
    q = Question(id="q", question="?", answer="D", choices=CHOICES)
    assert choose_option(q, " The answer is B. Postia.") == "B"  # a letter, when there is one, wins
    assert score(q, " Postia.").correct and score(q, " Postia.").prediction == "D"
    assert not score(q, " Kulia.").correct
    assert extract_choice_text("<think>Postia?</think> Kulia.", CHOICES) == "B"
