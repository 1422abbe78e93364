"""How SFT/KD examples are laid out: the answer follows the prompt exactly as a model writes it."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tourney.harness.prompts import TEMPLATES
from tourney.models.registry import MINI_DIR
from tourney.trainers.losses import shift_labels
from tourney.trainers.pretrain import PROMPT, encode_examples, make_batch

QUESTION = "Leo has 20 coins. Leo sells 8 coins. How many coins does Leo have now?"


def test_teacher_output_and_gold_solution_encode_the_same():
    tok = AutoTokenizer.from_pretrained(str(MINI_DIR / "teacher"))
    gold = {"question": QUESTION, "solution": "20 - 8 = 12\n#### 12"}
    teacher = {"question": QUESTION, "solution": " 20 - 8 = 12\n#### 12"}  # as generated after "Answer:"
    (g_ids, g_start), (t_ids, t_start) = encode_examples(tok, [gold, teacher])
    assert g_ids == t_ids and g_start == t_start
    assert tok.decode(g_ids[g_start:], skip_special_tokens=True) == " 20 - 8 = 12\n#### 12"


def test_teacher_reads_training_text_as_it_wrote_it():
    """The shipped teacher's greedy answer, laid out as a training example, is what it predicts at
    every answer position: KD targets come from text the teacher would itself produce."""
    tok = AutoTokenizer.from_pretrained(str(MINI_DIR / "teacher"))
    model = AutoModelForCausalLM.from_pretrained(str(MINI_DIR / "teacher")).eval()
    prompt = PROMPT.format(question=QUESTION)
    assert prompt == TEMPLATES["base"].text.format(question=QUESTION)  # the harness's eval prompt
    ids = tok(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=24, do_sample=False, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id)
    written = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert written.startswith(" ") and "#### 12" in written
    batch = make_batch(encode_examples(tok, [{"question": QUESTION, "solution": written}]), tok.pad_token_id)
    targets = shift_labels(batch["labels"])
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    mask = targets != -100
    assert bool((logits.argmax(-1)[mask] == targets[mask]).all())


def test_chat_examples_use_the_prompt_the_harness_sends():
    """With chat=True the training prompt is exactly the text the hf backend generates from for
    `tourney eval --chat` (cot-chat template through the tokenizer's chat template)."""
    from tourney.harness.prompts import render, template_for
    from tourney.harness.types import Question
    from tourney.models.hf_backend import HFBackend
    from tourney.models.registry import parse_spec

    tok = AutoTokenizer.from_pretrained(str(MINI_DIR / "student"))
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    model = AutoModelForCausalLM.from_pretrained(str(MINI_DIR / "student"))
    backend = HFBackend(parse_spec(f"hf:{MINI_DIR / 'student'}"), device="cpu", model=model, tokenizer=tok)
    q = Question(id="1", question=QUESTION, answer="12")
    sent = backend._text(render(template_for(q, chat=True), q))
    (ids, start), = encode_examples(tok, [{"question": QUESTION, "solution": "20 - 8 = 12\nThe answer is 12"}], chat=True)
    assert tok.decode(ids[:start]) == sent
    assert tok.decode(ids[start:]) == "20 - 8 = 12\nThe answer is 12" + tok.eos_token
    tok.chat_template = None
    with pytest.raises(ValueError, match="chat template"):
        encode_examples(tok, [{"question": QUESTION, "solution": "x"}], chat=True)
