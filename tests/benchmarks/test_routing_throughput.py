"""benchmarks/routing_throughput.py hands `tourney submit` the questions as a tournament would."""
from __future__ import annotations

import json

from benchmarks import routing_throughput as script
from tourney.routers.runtime.submit import load_submit_questions


def test_questions_keep_their_options_and_lose_the_gold(tmp_path):
    lines = [
        json.dumps({"id": "q1", "question": "Where does Tudus Nonor live?", "choices": ["Nefusia", "Pupuria"],
                    "answer": "B", "solution": "Pupuria.", "type": "common", "fact": "Tudus Nonor|lives_in"}),
        "",
        json.dumps({"id": "q2", "question": "Sam has 2 marbles and gets 3. How many?", "answer": "5",
                    "solution": "2 + 3 = 5\n#### 5", "type": "one_step"}),
    ]
    out = tmp_path / "questions.jsonl"
    out.write_text(script.questions_without_gold(lines))

    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert rows == [
        {"id": "q1", "question": "Where does Tudus Nonor live?", "choices": ["Nefusia", "Pupuria"], "type": "common"},
        {"id": "q2", "question": "Sam has 2 marbles and gets 3. How many?", "type": "one_step"},
    ]
    qs = load_submit_questions(out)  # what submit reads: the options are there, the gold is not
    assert [tuple(q.choices or ()) for q in qs] == [("Nefusia", "Pupuria"), ()]
    assert [q.answer for q in qs] == ["", ""]
