"""Teacher labels -> distillation rows -> the mixed loss -> a resumable training loop."""
import json

import pytest

from tourney.models.types import Backend
import torch

from tourney.errors import ConfigError
from tourney.harness.knowledge import WorldConfig, build_world, knowledge_questions
from tourney.harness.runner import EvalConfig, run_eval
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
NAMED = DistillRow(id="n", question="In which year was Zor founded?", choices=["1841", "1843", "1846", "1848"],
                   type="common", solution=" Zor. 1843.", answer="B", teacher_choice_logliks=[-2.0, -0.2, -3.0, -2.5])
ARITH = DistillRow(id="a", question="Ava has 3 shells. How many shells does Ava have now?", solution=" #### 3",
                   answer="3")


def test_encoding_finds_the_answer_by_letter_or_by_option_text(tok):
    e = encode_row(tok, MC)
    assert tok.decode(e.ids[e.start:]) == MC.solution + tok.eos_token
    assert tok.decode(e.ids[e.answer_at: e.answer_at + 1]) == " B" and e.options[1] == (e.ids[e.answer_at],)
    assert [tok.decode(o) for o in e.options] == [" A", " B", " C", " D"]
    assert e.hard == 1 and e.soft == MC.teacher_choice_logliks
    assert tok.decode(e.ids[:e.start]).endswith("D. Tov\nAnswer:")
    n = encode_row(tok, NAMED)
    assert [tok.decode(o) for o in n.options] == [" 1841", " 1843", " 1846", " 1848"]
    assert tok.decode(n.ids[n.answer_at: n.answer_at + len(n.options[1])]) == " 1843"
    assert tok.decode(n.ids[n.start: n.answer_at]) == " Zor."
    plain = encode_row(tok, ARITH)
    assert plain.answer_at is None and tok.decode(plain.ids[plain.start:]) == " #### 3" + tok.eos_token


def test_bad_rows_are_one_line_errors(tmp_path, tok):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**MC.model_dump(), "answer": "E"}) + "\n")
    with pytest.raises(DataError, match="bad.jsonl:1.*option letters"):
        read_rows(bad)
    bad.write_text(json.dumps({**MC.model_dump(), "teacher_choice_logliks": [0.0]}) + "\n")
    with pytest.raises(DataError, match="1 teacher option scores for 4 choices"):
        read_rows(bad)
    with pytest.raises(DataError, match="names no option"):
        encode_row(tok, DistillRow(**{**NAMED.model_dump(), "solution": " Zor."}))
    with pytest.raises(DataError, match="answers C but the row's answer is B"):
        encode_row(tok, DistillRow(**{**NAMED.model_dump(), "solution": " 1846."}))
    with pytest.raises(ConfigError, match="needs a teacher"):
        OptionDistillConfig(student="s", data="d", out="o", token_alpha=0.5)


def _terms(logits, examples):
    out = []
    for i, e in enumerate(examples):
        out.append([-float(logits[i, t - 1].log_softmax(-1)[e.ids[t]]) for t in range(e.start, len(e.ids))])
    return out


def test_hard_labels_are_token_cross_entropy_and_soft_labels_add_the_option_kl(tok, tiny_mc_checkpoint):
    """alpha 0: the mean token CE of the teacher's text. alpha > 0: a multiple-choice row's tokens
    keep (1 - alpha) of their CE and its n_q * alpha * T^2 * KL over the options (the student's
    option scores: each option's summed log-likelihood after the row's context) joins them."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_mc_checkpoint)).eval()
    examples = [encode_row(tok, MC), encode_row(tok, NAMED), encode_row(tok, ARITH)]
    hard_cfg = OptionDistillConfig(student="s", data="d", out="o", option_alpha=0.0)
    batch = make_batch(examples, tok.pad_token_id, 0.0)
    assert batch.option_ids.shape[0] == 0  # hard labels need no option passes
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        terms = _terms(logits, examples)
        n = sum(len(t) for t in terms)
        assert float(batch_loss(hard_cfg, logits, batch)[0]) == pytest.approx(sum(map(sum, terms)) / n, rel=1e-5)

        alpha, temp = 0.4, 2.0
        soft_cfg = OptionDistillConfig(student="s", data="d", out="o", option_alpha=alpha, option_temperature=temp)
        sb = make_batch(examples, tok.pad_token_id, alpha)
        o_logits = model(input_ids=sb.option_ids, attention_mask=sb.option_mask).logits
        soft, _ = batch_loss(soft_cfg, logits, sb, option_logits=o_logits)
        expected = sum(terms[2]) + (1 - alpha) * (sum(terms[0]) + sum(terms[1]))
        for e, row_terms in zip(examples[:2], terms[:2]):
            student = []
            for opt in e.options:  # the option's summed log-likelihood after the context
                ids = e.ids[: e.answer_at] + list(opt)
                lp = model(torch.tensor([ids])).logits.log_softmax(-1)[0]
                student.append(sum(float(lp[t - 1, ids[t]]) for t in range(e.answer_at, len(ids))))
            p, q = torch.tensor(e.soft) / temp, torch.tensor(student) / temp
            kl = float((p.softmax(-1) * (p.log_softmax(-1) - q.log_softmax(-1))).sum())
            expected += len(row_terms) * alpha * temp**2 * kl
    assert float(soft) == pytest.approx(expected / n, rel=1e-4)


def test_per_token_kd_matches_the_mean_of_losses_kd_loss():
    from tourney.trainers.losses import kd_loss
    from tourney.trainers.option_distill import token_losses

    torch.manual_seed(1)
    s, t = torch.randn(2, 5, 11), torch.randn(2, 5, 11)
    targets = torch.tensor([[3, 4, -100, 1, 0], [-100, 2, 2, 9, -100]])
    ours = token_losses(s, targets, t, alpha=0.3, temperature=2.0).mean()
    theirs = kd_loss(s, t, targets, temperature=2.0, alpha=0.3, kind="forward").total
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)


class ScriptedTeacher(Backend):
    """Answers multiple choice with "B" (after a reason for two-hop questions), arithmetic with a
    worked line, nothing readable for the last question; scores options with fixed numbers."""

    spec = "fake:teacher"

    @property
    def capabilities(self):
        from tourney.models.types import Capabilities

        return Capabilities(batch_size=16, choice_scoring=True)

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
            two_hop = by_id[p.id]["type"] == "reasoning"
            assert p.solution == (" B." if two_hop else " B")  # the answer as written, without the reason
            assert p.answer == "B" and p.teacher_choice_logliks == [-2.0, -0.5, -3.0, -4.0]
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
                               solution=" " + q["solution"], answer=letter,
                               teacher_choice_logliks=[0.0 if x == letter else -2.0 for x in "ABCD"]))
    data = write_rows(rows + [ARITH], tmp_path / "d.jsonl")
    common = dict(student=str(tiny_mc_checkpoint), data=str(data), epochs=2, batch_size=8, warmup_steps=2,
                  option_alpha=0.5)
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
        train(OptionDistillConfig(out=str(tmp_path / "cut"), **{**common, "option_alpha": 0.0}))
