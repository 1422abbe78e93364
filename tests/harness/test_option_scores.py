"""Option log-likelihoods where the output commits to its letter, recorded by the run loop."""
import json

import pytest

from tourney.models.types import Backend
import torch

from tourney.harness.option_scores import (commit_point, locate_answer, option_probabilities, option_request,
                                           score_options)
from tourney.harness.runner import EvalConfig, run_eval
from tourney.harness.types import DataError, Question

MC = Question(id="q1", question="Where does Pim live?", answer="B", choices=("Zor", "Kel", "Ban", "Tov"))
PLAIN = Question(id="q2", question="Ava has 3 shells. How many shells does Ava have now?", answer="3")


def test_commit_point_is_just_before_the_last_standalone_answer():
    assert commit_point(" B", "B") == ("", " ")
    assert commit_point("B", "B") == ("", "")
    assert commit_point(" Pim lives in Zor. Zor is in Kulia. The answer is C.", "C") == (
        " Pim lives in Zor. Zor is in Kulia. The answer is", " ")
    assert commit_point("Between B and C, the answer is (C)", "C") == ("Between B and C, the answer is (", "")
    assert commit_point(" Caesar", "C") == ("", " ")  # a letter inside a word is no answer
    assert commit_point(" Zor. Kulia.", "Kulia") == (" Zor.", " ")


def test_letters_are_scored_at_the_letter_and_named_options_at_their_text():
    prompt = "Question: Where does Pim live?\nA. Zor\nB. Kel\nAnswer:"
    assert option_request(prompt, " B", ["Zor", "Kel"]) == (prompt, [" A", " B"])
    assert option_request(prompt, " The answer is B.", ["Zor", "Kel"]) == (prompt + " The answer is", [" A", " B"])
    assert option_request(prompt, " Kel.", ["Zor", "Kel"]) == (prompt, [" Zor", " Kel"])
    assert option_request(prompt, " Ban. Kel.", ["Zor", "Kel"]) == (prompt + " Ban.", [" Zor", " Kel"])
    assert option_request(prompt, " no idea", ["Zor", "Kel"]) is None
    span = locate_answer(" Ban. Kel.", ["Zor", "Kel"])
    assert (span.start, span.end, span.choice) == (5, 9, 1) and " Ban. Kel."[span.start:span.end] == " Kel"


def test_probabilities_are_a_softmax_and_refuse_bad_values():
    assert option_probabilities([0.0, 0.0]) == [0.5, 0.5]
    p = option_probabilities([-1000.0, -1000.0 + torch.log(torch.tensor(3.0)).item()])
    assert p == pytest.approx([0.25, 0.75])
    for bad in ([], [float("inf"), 0.0], ["x"], [True, 0.0]):
        with pytest.raises(DataError):
            option_probabilities(bad)


class Recorder:
    def __init__(self):
        self.calls = []

    def score_choices(self, prompts, choices):
        self.calls.append((list(prompts), [list(c) for c in choices]))
        return [[-float(i) for i in range(len(c))] for c in choices]


def test_only_multiple_choice_text_prompts_with_an_answer_are_scored_in_one_call():
    rec = Recorder()
    prompts = ["Question: Where does Pim live?\n...\nAnswer:", "Question: Ava...\nAnswer:"]
    out = score_options(rec, [MC, PLAIN], prompts, [[" B", " Kel.", " no idea"], [" 3"]])
    assert out == [[[0.0, -1.0, -2.0, -3.0], [0.0, -1.0, -2.0, -3.0], None], [None]]
    assert len(rec.calls) == 1 and rec.calls[0][0] == [prompts[0], prompts[0]]
    assert rec.calls[0][1] == [[" A", " B", " C", " D"], [" Zor", " Kel", " Ban", " Tov"]]
    chat = [{"role": "user", "content": "Where does Pim live?"}]
    assert score_options(rec, [MC], [chat], [[" B"]]) == [[None]]
    assert len(rec.calls) == 1


class Answers(Backend):
    """Generates fixed answers and scores options with a real model: the run loop's record is
    then checkable against the model's own logits."""

    def __init__(self, real, texts):
        self.real, self.texts, self.spec = real, texts, "scripted"

    @property
    def capabilities(self):
        from tourney.models.types import Capabilities

        return Capabilities(batch_size=6, choice_scoring=True)  # the six questions in one batch

    def generate(self, prompts, cfg):
        from tourney.models.types import Generation

        return [[Generation(text=self.texts[i % len(self.texts)], finish_reason="stop")] for i in range(len(prompts))]

    def score_choices(self, prompts, choices):
        return self.real.score_choices(prompts, choices)

    def close(self):
        pass


def test_run_records_option_scores_that_match_the_models_own_logits(tmp_path, tiny_checkpoint):
    """End to end on a real checkpoint: with --logprobs the rows carry the option log-likelihoods,
    equal to the model's next-token log-probabilities of " A".." D" after the prompt when the
    output commits to a letter at once; the report gains a calibration section."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tourney.models.registry import load_backend

    data = tmp_path / "mc.jsonl"
    rows = [{"id": f"m{i}", "question": f"Which one is {i}?", "choices": ["1", "2", "3", "4"], "answer": "B",
             "type": "common" if i % 2 else "rare"} for i in range(6)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    backend = Answers(load_backend(f"hf:{tiny_checkpoint}", batch_size=4), [" B", " 3.", " junk"])
    report = run_eval(EvalConfig(model="scripted", data=str(data), out=str(tmp_path / "run"),
                                 max_tokens=3, logprobs=0), backend)
    results = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").open()]
    assert [r["choice_logliks"] is None for r in results] == [False, False, True] * 2  # " junk" names no option
    assert all(len(r["choice_logliks"]) == 4 for r in results if r["output"] != " junk")
    assert set(report["calibration"]) == {"common", "rare", "overall"}
    assert "Calibration of option probabilities" in (tmp_path / "run" / "report.md").read_text()

    tok = AutoTokenizer.from_pretrained(str(tiny_checkpoint))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_checkpoint)).eval()
    prompt = "Question: Which one is 0?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:"
    first = results[0]
    ctx, conts = option_request(prompt, first["output"], ["1", "2", "3", "4"])
    assert conts == [" A", " B", " C", " D"]
    second = results[1]  # " 3." names the option "3": options scored by their text
    assert option_request("", second["output"], ["1", "2", "3", "4"])[1] == [" 1", " 2", " 3", " 4"]
    expected = []
    for c in conts:
        ids = tok(ctx + c).input_ids
        n_ctx = len(tok(ctx).input_ids)
        with torch.no_grad():
            lp = model(torch.tensor([ids])).logits.log_softmax(-1)[0]
        expected.append(sum(float(lp[t - 1, ids[t]]) for t in range(n_ctx, len(ids))))
    assert first["choice_logliks"] == pytest.approx(expected, abs=1e-4)

    run_eval(EvalConfig(model="scripted", data=str(data), out=str(tmp_path / "plain"), max_tokens=3),
            backend)
    plain = [json.loads(line) for line in (tmp_path / "plain" / "results.jsonl").open()]
    assert all(r["choice_logliks"] is None for r in plain)
    assert "calibration" not in json.loads((tmp_path / "plain" / "report.json").read_text())
