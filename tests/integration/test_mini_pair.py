"""The shipped miniature pair keeps its promises on the held-out miniature test set: the teacher
scores at least 80% and at least 15 points above the student, which is at least 5x smaller; the
shipped distilled student (same size as the student) recovers at least 70% of that gap."""
import pytest

from tourney.cli.demo import run_demo
from tourney.harness.tournament import MINI_TEST
from tourney.models.registry import MINI_DIR

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_shipped_pair_meets_its_targets(tmp_path, mini_teacher, mini_student):
    from transformers import AutoModelForCausalLM

    reports = run_demo(str(tmp_path / "demo"), echo=lambda _msg: None)
    teacher = reports["mini-teacher"]["overall"]["accuracy"]
    student = reports["mini-student"]["overall"]["accuracy"]
    assert reports["mini-teacher"]["overall"]["n"] == sum(1 for line in MINI_TEST.open() if line.strip())
    assert teacher >= 0.80
    assert teacher - student >= 0.15
    distilled = reports["mini-distilled"]["overall"]["accuracy"]
    assert distilled - student >= 0.70 * (teacher - student)
    sizes = {p: sum(t.numel() for t in AutoModelForCausalLM.from_pretrained(p).parameters())
             for p in (mini_teacher, mini_student, MINI_DIR / "distilled")}
    assert sizes[mini_teacher] >= 5 * sizes[mini_student]
    assert sizes[MINI_DIR / "distilled"] == sizes[mini_student]
    assert (tmp_path / "demo" / "comparison.md").exists() and (tmp_path / "demo" / "comparison.html").exists()
