"""Teacher labels -> distillation rows -> the mixed loss -> a resumable training loop."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from tourney.errors import ConfigError
from tourney.harness.knowledge import WorldConfig, build_world, knowledge_questions
from tourney.harness.runner import EvalConfig, run_eval
from tourney.harness.synthetic import SynthConfig, generate
from tourney.harness.tournament import write_jsonl
from tourney.harness.types import DataError
from tourney.trainers.option_distill import OptionDistillConfig, batch_loss, make_batch, train
from tourney.trainers.teacher_labels import DistillRow, encode_row, read_rows, rows_from_run, write_rows


@pytest.fixture(scope="module")
def tok(tiny_mc_checkpoint):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_mc_checkpoint))


MC = DistillRow(id="q", question="Where does Pim live?", choices=["Zor", "Kel", "Ban", "Tov"], type="reasoning",
                solution=" Pim lives in Kel. The answer is B.", answer="B",
                teacher_choice_logliks=[-3.0, -0.1, -4.0, -5.0])
ARITH = DistillRow(id="a", question="Ava has 3 shells. How many shells does Ava have now?", solution=" #### 3",
                   answer="3")


def test_encoding_puts_the_letter_where_the_solution_has_it(tok):
    e = encode_row(tok, MC)
    assert tok.decode(e.ids[e.start:]) == MC.solution + tok.eos_token
    assert e.ids[e.letter_at] == e.letter_ids[1] and tok.decode([e.ids[e.letter_at]]) == " B"
    assert e.hard == 1 and e.soft == MC.teacher_choice_logliks
    assert tok.decode(e.ids[:e.start]).endswith("D. Tov\nAnswer:")
    plain = encode_row(tok, ARITH)
    assert plain.letter_at is None and tok.decode(plain.ids[plain.start:]) == " #### 3" + tok.eos_token


def test_bad_rows_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**MC.model_dump(), "answer": "E"}) + "\n")
    with pytest.raises(DataError, match="bad.jsonl:1.*option letters"):
        read_rows(bad)
    bad.write_text(json.dumps({**MC.model_dump(), "teacher_choice_logliks": [0.0]}) + "\n")
    with pytest.raises(DataError, match="1 teacher option scores for 4 choices"):
        read_rows(bad)
    with pytest.raises(ConfigError, match="needs a teacher"):
        OptionDistillConfig(student="s", data="d", out="o", token_alpha=0.5)


def test_the_loss_is_the_mean_of_per_position_terms(tok):
    """alpha 0: plain CE at every answer token, the letter's CE taken over the four letters only;
    alpha 1 at the letter: T^2 * KL to the teacher's option distribution instead."""
    examples = [encode_row(tok, MC), encode_row(tok, ARITH)]
    batch = make_batch(examples, tok.pad_token_id)
    torch.manual_seed(0)
    logits = torch.randn(*batch.input_ids.shape, len(tok))
    hard_cfg = OptionDistillConfig(student="s", data="d", out="o", option_alpha=0.0)
    loss, _ = batch_loss(hard_cfg, logits, batch)
    terms = []
    for i, e in enumerate(examples):
        for t in range(e.start, len(e.ids)):
            if t == e.letter_at:
                letters = logits[i, t - 1, list(e.letter_ids)]
                terms.append(-float(letters.log_softmax(-1)[e.hard]))
            else:
                terms.append(-float(logits[i, t - 1].log_softmax(-1)[e.ids[t]]))
    assert float(loss) == pytest.approx(sum(terms) / len(terms), rel=1e-5)

    soft_cfg = OptionDistillConfig(student="s", data="d", out="o", option_alpha=1.0, option_temperature=2.0)
    soft, _ = batch_loss(soft_cfg, logits, batch)
    e = examples[0]
    s = logits[0, e.letter_at - 1, list(e.letter_ids)] / 2
    p = torch.tensor(MC.teacher_choice_logliks) / 2
    kl = float((p.softmax(-1) * (p.log_softmax(-1) - s.log_softmax(-1))).sum())
    letter_term = [k for k, t in enumerate(range(e.start, len(e.ids))) if t == e.letter_at][0]
    expected = (sum(terms) - terms[letter_term] + 4 * kl) / len(terms)
    assert float(soft) == pytest.approx(expected, rel=1e-5)


class ScriptedTeacher:
    """Answers multiple choice with "B" (after a reason for two-hop questions), arithmetic with a
    worked line, nothing readable for the last question; scores options with fixed numbers."""

    spec = "fake:teacher"

    def generate(self, prompts, cfg):
        from tourney.models.types import Generation

        out = []
        for p in prompts:
            if "where" in p and "A." in p:
                text = " Pim lives in Kel. The answer is B."
            elif "A." in p:
                text = " B"
            elif "Omar" in p:
                text = " no idea"
            else:
                text = " 3 + 1 = 4\n#### 4"
            out.append([Generation(text=text, finish_reason="stop")])
        return out

    def score_choices(self, prompts, choices):
        return [[-2.0, -0.5, -3.0, -4.0][: len(c)] for c in choices]

    def close(self):
        pass


def test_rows_from_a_teacher_run_with_and_without_reasons(tmp_path):
    world = build_world(WorldConfig())
    qs = knowledge_questions(world, 6, seed=1, shares={"common": 0.5, "reasoning": 0.5})
    qs += [{"id": "a1", "question": "Ava has 3 shells. Ava finds 1 more shells. How many?", "answer": "4"},
           {"id": "a2", "question": "Omar has 3 pens. How many?", "answer": "3"}]
    data = write_jsonl(qs, tmp_path / "q.jsonl")
    run_eval(EvalConfig(model="fake:teacher", data=str(data), out=str(tmp_path / "t"), max_tokens=8, logprobs=0),
             ScriptedTeacher())
    plain, stats = rows_from_run(tmp_path / "t", data, cot=False)
    cot, _ = rows_from_run(tmp_path / "t", data, cot=True)
    assert (stats.questions, stats.rows, stats.unreadable, stats.multiple_choice) == (8, 7, 1, 6)
    by_id = {q["id"]: q for q in qs}
    for p, c in zip(plain, cot):
        if p.choices:
            assert p.solution == " B" and p.answer == "B" and p.teacher_choice_logliks == [-2.0, -0.5, -3.0, -4.0]
            two_hop = by_id[p.id]["type"] == "reasoning"
            assert c.solution == (" Pim lives in Kel. The answer is B." if two_hop else " B")
        else:
            assert (p.solution, c.solution, p.answer) == (" #### 4", " 3 + 1 = 4\n#### 4", "4")
    assert read_rows(write_rows(plain, tmp_path / "rows.jsonl")) == plain


def test_training_resumes_to_the_same_weights(tmp_path, tiny_mc_checkpoint, tok):
    from safetensors.torch import load_file

    world = build_world(WorldConfig())
    rows = []
    for q in knowledge_questions(world, 24, seed=2):
        letter = q["answer"]
        rows.append(DistillRow(id=q["id"], question=q["question"], choices=q["choices"], type=q["type"],
                               solution=f" {letter}", answer=letter,
                               teacher_choice_logliks=[0.0 if x == letter else -2.0 for x in "ABCD"]))
    data = write_rows(rows + [ARITH], tmp_path / "d.jsonl")
    common = dict(student=str(tiny_mc_checkpoint), data=str(data), epochs=2, batch_size=8, warmup_steps=2)
    whole = train(OptionDistillConfig(out=str(tmp_path / "whole"), **common), log=lambda _m: None)

    class Killed(Exception):
        pass

    def kill_in_epoch_2(msg):
        if msg.startswith("epoch 2/2"):
            raise Killed

    with pytest.raises(Killed):
        train(OptionDistillConfig(out=str(tmp_path / "cut"), **common), log=kill_in_epoch_2)
    resumed = train(OptionDistillConfig(out=str(tmp_path / "cut"), **common), log=lambda _m: None)
    a, b = load_file(whole / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="option_alpha differ"):
        train(OptionDistillConfig(out=str(tmp_path / "cut"), option_alpha=0.0, **common))
