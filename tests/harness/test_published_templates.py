"""The shipped templates render the published prompts, character for character: MMLU-Pro's 5-shot
chain of thought (TIGER-AI-Lab/MMLU-Pro evaluate_from_local.py) and GSM8K's 8-shot chain of thought
(lm-evaluation-harness gsm8k-cot.yaml, Wei et al. 2022). Each expected prompt is written out here by
hand, from the published texts, not produced by the code under test."""
from __future__ import annotations

import json
from pathlib import Path

from tourney.harness.fewshot import FewshotOptions
from tourney.harness.pipeline import Prompting
from tourney.harness.types import Question

# The eight exemplars of gsm8k-cot.yaml, each "Q: <question>\nA: <target>" and "\n\n".
GSM8K_8SHOT = (
    "Q: There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, there will be 21 trees. How many trees did the grove workers plant today?\n"
    "A: There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have been 21 - 15 = 6. The answer is 6.\n\n"
    "Q: If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?\n"
    "A: There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.\n\n"
    "Q: Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?\n"
    "A: Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, they had 74 - 35 = 39. The answer is 39.\n\n"
    "Q: Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did Jason give to Denny?\n"
    "A: Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. The answer is 8.\n\n"
    "Q: Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have now?\n"
    "A: Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. The answer is 9.\n\n"
    "Q: There were nine computers in the server room. Five more computers were installed each day, from monday to thursday. How many computers are now in the server room?\n"
    "A: There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 computers were added. 9 + 20 is 29. The answer is 29.\n\n"
    "Q: Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf balls did he have at the end of wednesday?\n"
    "A: Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, he had 35 - 2 = 33 golf balls. The answer is 33.\n\n"
    "Q: Olivia has $23. She bought five bagels for $3 each. How much money does she have left?\n"
    "A: Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars left. 23 - 15 is 8. The answer is 8.\n\n"
)


def test_gsm8k_cot_is_the_published_8_shot_prompt() -> None:
    question = Question(id="t1", question="Janet has 3 apples and buys 2 more. How many apples does she have?",
                        answer="5", solution="3 + 2 = 5\n#### 5")
    prompts, stop = Prompting(template="gsm8k_cot").render([question])
    assert prompts == [GSM8K_8SHOT + "Q: Janet has 3 apples and buys 2 more. How many apples does she have?\nA:"]
    assert stop == ("Q:", "</s>", "<|im_end|>")


def test_mmlu_pro_is_the_published_5_shot_prompt(tmp_path: Path) -> None:
    # Exemplars as MMLU-Pro's validation split has them (cot_content as `solution`, category as
    # `type`): six of the question's category, of which the first five are shown, and one of another.
    shots = [{"id": f"v{i}", "question": f"Which gate is number {i}?", "choices": ["AND", "OR", "NOT"],
              "answer": "B", "type": "computer_science",
              "solution": f"A: Let's think step by step. Gate {i} is OR. The answer is (B)."} for i in range(6)]
    shots.insert(2, {"id": "law0", "question": "Is a tort a crime?", "choices": ["Yes", "No"], "answer": "B",
                     "type": "law", "solution": "A: Let's think step by step. No. The answer is (B)."})
    path = tmp_path / "validation.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in shots))
    question = Question(id="t1", question="What does a compiler produce?", answer="C", type="computer_science",
                        choices=("Images", "Sound", "Machine code", "Nothing"))
    prompts, stop = Prompting(template="mmlu_pro", fewshot=FewshotOptions(path=str(path))).render([question])
    initial = ('The following are multiple choice questions (with answers) about computer science. Think step by '
               'step and then finish your answer with "the answer is (X)" where X is the correct letter choice.\n\n')
    expected = initial + "\n"
    for i in range(5):
        expected += (f"Question:\nWhich gate is number {i}?\nOptions:\nA. AND\nB. OR\nC. NOT\n"
                     f"Answer: Let's think step by step. Gate {i} is OR. The answer is (B).\n\n")
    expected += ("Question:\nWhat does a compiler produce?\nOptions:\nA. Images\nB. Sound\nC. Machine code\n"
                 "D. Nothing\nAnswer: Let's think step by step.")
    assert prompts == [expected]
    assert stop == ("Question:",)


def test_mmlu_pro_validation_split_is_read_as_released(tmp_path: Path) -> None:
    # MMLU-Pro's own field names, its "N/A" padding options, and integer question ids.
    native = [{"question_id": 70 + i, "question": f"Which gate is number {i}?", "options": ["AND", "OR", "NOT", "N/A"],
               "answer": "B", "answer_index": 1, "category": "computer science", "src": "cot_lib-x",
               "cot_content": f"A: Let's think step by step. Gate {i} is OR. The answer is (B)."} for i in range(5)]
    path = tmp_path / "validation.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in native))
    # The recorded outputs' questions spell the category computer_science: the same type.
    question = Question(id="t1", question="What does a compiler produce?", answer="C", type="computer_science",
                        choices=("Images", "Sound", "Machine code", "Nothing"))
    [prompt], _ = Prompting(template="mmlu_pro", fewshot=FewshotOptions(path=str(path))).render([question])
    assert prompt.count("Options:\nA. AND\nB. OR\nC. NOT\nAnswer: Let's think step by step. Gate") == 5
    assert "N/A" not in prompt and "about computer science." in prompt
