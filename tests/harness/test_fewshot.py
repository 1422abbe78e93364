"""harness.fewshot and its use by Prompting and `tourney eval`: which exemplars each question gets,
deterministically; never the question itself; the choice is part of the run's identity."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tourney.errors import ConfigError, DataError
from tourney.harness.fewshot import ExemplarPool, FewshotOptions
from tourney.harness.pipeline import Prompting
from tourney.harness.runner import EvalConfig, prepare_run, run_eval
from tourney.harness.questions import load_questions
from tourney.harness.types import Question
from tests.fakes import EchoMathBackend
from tests.models.test_openai_backend import server  # noqa: F401 -- the fake OpenAI server fixture

TEMPLATE = ('doc_to_text: "Question: {{ question }}\\nAnswer:"\ndoc_to_target: "{{ solution }}"\n'
            'num_fewshot: 2\nfewshot_config: {sampler: first_n, by: type}\n')


def q(i: int, qtype: str, solution: str | None = "Because. #### 1") -> Question:
    return Question(id=f"x{i}", question=f"Question {i}?", answer="1", type=qtype, solution=solution)


POOL = tuple(q(i, "odd" if i % 2 else "even") for i in range(12))


def test_by_type_takes_the_first_of_the_same_type_and_never_the_question_itself() -> None:
    pool = ExemplarPool(POOL, k=3, by="type", sampler="first_n", seed=0, origin="shots.jsonl")
    assert [e.id for e in pool.choose(q(99, "odd"))] == ["x1", "x3", "x5"]
    assert [e.id for e in pool.choose(POOL[3])] == ["x1", "x5", "x7"]  # x3 is the question
    same_text = Question(id="other-id", question="Question 1?", answer="1", type="odd")
    assert "x1" not in [e.id for e in pool.choose(same_text)]
    mixed = ExemplarPool(POOL, k=3, by="all", sampler="first_n", seed=0, origin="shots.jsonl")
    assert [e.id for e in mixed.choose(q(99, "odd"))] == ["x0", "x1", "x2"]


def test_random_choice_is_a_function_of_seed_and_question() -> None:
    def pick(seed: int, question: Question) -> list[str]:
        return [e.id for e in ExemplarPool(POOL, k=3, by="all", sampler="random", seed=seed, origin="f").choose(question)]

    asked = [q(100 + i, "odd") for i in range(8)]
    first = [pick(0, a) for a in asked]
    assert [pick(0, a) for a in reversed(asked)] == list(reversed(first))  # order-free: resumes get the same
    assert first == [pick(0, a) for a in asked]
    assert [pick(1, a) for a in asked] != first
    assert all(len(set(p)) == 3 for p in first)


def test_too_few_exemplars_of_a_type_names_it() -> None:
    pool = ExemplarPool(POOL[:4], k=2, by="type", sampler="first_n", seed=0, origin="shots.jsonl")
    with pytest.raises(ConfigError) as exc:
        pool.choose(POOL[1])
    assert "shots.jsonl" in str(exc.value) and "type 'odd'" in str(exc.value) and "--fewshot-by all" in str(exc.value)


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    shots = write(tmp_path / "shots.jsonl", [
        {"id": f"s{i}", "question": f"Shot {i}?", "answer": f"Step {i}.\n#### {i}", "type": "a" if i < 3 else "b"}
        for i in range(6)])
    data = write(tmp_path / "q.jsonl", [{"id": f"q{i}", "question": f"Ann has {i} cats?", "answer": str(i),
                                         "type": "a" if i % 2 else "b"} for i in range(4)])
    template = tmp_path / "t.yaml"
    template.write_text(TEMPLATE)
    return {"shots": shots, "data": data, "template": template}


def test_prompts_carry_the_chosen_exemplars(files: dict[str, Path]) -> None:
    questions = load_questions(str(files["data"]))
    prompts, stop = Prompting(template=str(files["template"]), fewshot=FewshotOptions(path=str(files["shots"]))).render(
        questions)
    assert prompts[1] == ("Question: Shot 0?\nAnswer: Step 0.\n#### 0\n\nQuestion: Shot 1?\nAnswer: Step 1.\n#### 1\n\n"
                          "Question: Ann has 1 cats?\nAnswer:")
    assert prompts[0].startswith("Question: Shot 3?") and stop == ("\n\nQuestion:",)


def test_exemplars_without_a_worked_solution_are_refused(files: dict[str, Path], tmp_path: Path) -> None:
    bare = write(tmp_path / "bare.jsonl", [{"id": "s0", "question": "Shot?", "answer": "3", "type": "a"}])
    with pytest.raises(DataError) as exc:
        Prompting(template=str(files["template"]), fewshot=FewshotOptions(path=str(bare))).render(
            load_questions(str(files["data"])))
    assert "bare.jsonl:1" in str(exc.value) and "'solution'" in str(exc.value)


def test_few_shot_needs_a_template_file_and_multiturn_needs_chat(files: dict[str, Path]) -> None:
    questions = load_questions(str(files["data"]))
    with pytest.raises(ConfigError, match="template file"):
        Prompting(template="base", fewshot=FewshotOptions(path=str(files["shots"]))).render(questions)
    with pytest.raises(ConfigError, match="--chat"):
        Prompting(template=str(files["template"]),
                  fewshot=FewshotOptions(path=str(files["shots"]), multiturn=True)).render(questions)
    with pytest.raises(ConfigError, match="--fewshot FILE"):
        Prompting(template="mmlu_pro").render([Question(id="m", question="?", answer="A", choices=("x", "y"))])


def test_other_exemplars_refuse_to_resume_the_run(files: dict[str, Path]) -> None:
    def cfg(**kw) -> EvalConfig:
        return EvalConfig(model="fake", data=str(files["data"]), out=str(files["data"].parent / "run"),
                          template=str(files["template"]), fewshot=str(files["shots"]), **kw)

    run_eval(cfg(), EchoMathBackend(batch_size=2))
    meta = json.loads((files["data"].parent / "run" / "run.json").read_text())
    assert meta["identity"]["fewshot"] == {"file": str(files["shots"]), "sha256": meta["identity"]["fewshot"]["sha256"],
                                           "k": 2, "by": "type", "sampler": "first_n", "multiturn": False}
    questions = load_questions(str(files["data"]))
    prepare_run(cfg(), questions)  # the same run resumes
    with pytest.raises(DataError, match="fewshot.k"):
        prepare_run(cfg(num_fewshot=1), questions)
    with pytest.raises(DataError, match="fewshot.by"):
        prepare_run(cfg(fewshot_by="all"), questions)
    with files["shots"].open("a") as f:
        f.write(json.dumps({"id": "s9", "question": "New?", "answer": "A step.\n#### 9", "type": "a"}) + "\n")
    with pytest.raises(DataError, match="fewshot.sha256"):
        prepare_run(cfg(), questions)
    files["template"].write_text(TEMPLATE.replace("Answer:", "A:"))
    with pytest.raises(DataError, match="template_sha256"):
        prepare_run(cfg(), questions)


def test_multiturn_exemplars_reach_a_chat_server(files: dict[str, Path], server) -> None:  # noqa: F811
    from click.testing import CliRunner

    from tourney.cli.main import main

    url, state = server
    res = CliRunner().invoke(main, ["eval", "--model", f"openai:ok@{url}", "--data", str(files["data"]), "--limit", "1",
                                    "--out", str(files["data"].parent / "run"), "--template", str(files["template"]),
                                    "--fewshot", str(files["shots"]), "--chat", "--fewshot-as-multiturn",
                                    "--system-prompt", "Be brief."], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    [body] = state.bodies
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Question: Shot 3?\nAnswer:"}, {"role": "assistant", "content": "Step 3.\n#### 3"},
        {"role": "user", "content": "Question: Shot 4?\nAnswer:"}, {"role": "assistant", "content": "Step 4.\n#### 4"},
        {"role": "user", "content": "Question: Ann has 0 cats?\nAnswer:"}]
    assert body["stop"] == ["\n\nQuestion:"]
