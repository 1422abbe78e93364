import re
from collections import Counter

from tourney.harness.questions import load_questions
from tourney.harness.scoring import score
from tourney.harness.synthetic import MAX_VALUE, TYPE_SHARES, TYPE_STEPS, SynthConfig, generate

LINE = re.compile(r"^(\d+) ([-+*]) (\d+) = (\d+)$")


def test_solutions_are_correct_chains():
    for row in generate(SynthConfig(n=2000, seed=4)):
        *steps, final = row["solution"].split("\n")
        assert len(steps) == TYPE_STEPS[row["type"]]
        value = int(re.search(r"has (\d+)", row["question"]).group(1))
        for line in steps:
            a, op, b, c = LINE.match(line).groups()
            assert int(a) == value
            value = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
            assert int(c) == value and 0 <= value <= MAX_VALUE
        assert final == f"#### {value}" and row["answer"] == str(value)


def test_type_mix_follows_shares():
    counts = Counter(r["type"] for r in generate(SynthConfig(n=5000, seed=0)))
    for t, share in TYPE_SHARES.items():
        assert abs(counts[t] / 5000 - share) < 0.03


def test_seeded():
    assert generate(SynthConfig(n=50, seed=9)) == generate(SynthConfig(n=50, seed=9))
    assert generate(SynthConfig(n=50, seed=9)) != generate(SynthConfig(n=50, seed=10))


def test_questions_load_in_the_harness_and_gold_solutions_score(tmp_path):
    from tourney.harness.synthetic import write_jsonl

    path = write_jsonl(generate(SynthConfig(n=200, seed=3)), tmp_path / "a.jsonl")
    for q in load_questions(str(path)):
        assert q.type in TYPE_STEPS
        assert score(q, q.solution).correct
