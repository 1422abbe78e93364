"""The knowledge world: seeded, Zipf-like, near-miss options, answers the scorer reads."""
import random
from collections import Counter

import pytest

from tourney.harness.knowledge import (KNOWLEDGE_SHARES, N_OPTIONS, RELATIONS, TIERS, WorldConfig, build_world,
                                       covering_questions, fact_sentences, knowledge_questions, near_misses,
                                       tier_of, two_hop_chains, zipf_count)
from tourney.harness.questions import load_questions
from tourney.harness.scoring import score
from tourney.harness.tournament import write_jsonl

WORLD = build_world(WorldConfig())


def test_same_seed_same_world_other_seed_other_world():
    assert build_world(WorldConfig(seed=0)) == WORLD
    assert build_world(WorldConfig(seed=1)).facts != WORLD.facts
    assert knowledge_questions(WORLD, 50, seed=4) == knowledge_questions(WORLD, 50, seed=4)


def test_frequencies_follow_the_zipf_mandelbrot_law_and_tiers_follow_counts():
    cfg = WorldConfig()
    # count(r) = A / (r + B)^S, rounded, capped, at least one: 1.155e6 / 81^2 = 176 -> 40 (the cap);
    # 1.155e6 / 392^2 = 7.516 -> 8; 1.155e6 / 393^2 = 7.478 -> 7; 1.155e6 / 10080^2 = 0.011 -> 1
    assert zipf_count(1, cfg) == cfg.max_count
    assert zipf_count(312, cfg) == 8 and zipf_count(313, cfg) == 7
    assert zipf_count(10_000, cfg) == 1
    counts = sorted((f.count for f in WORLD.facts), reverse=True)
    assert counts == [zipf_count(r, cfg) for r in range(1, len(counts) + 1)]
    assert (tier_of(8, cfg), tier_of(7, cfg), tier_of(3, cfg), tier_of(2, cfg)) == ("common", "rare", "rare", "obscure")
    tiers = Counter(f.tier for f in WORLD.facts)
    assert all(tiers[t] >= 250 for t in TIERS)  # every tier holds enough distinct facts to test


def test_training_text_states_each_fact_count_times():
    sentences = fact_sentences(WORLD, random.Random(0))
    assert len(sentences) == sum(f.count for f in WORLD.facts)
    f = next(f for f in WORLD.facts if f.tier == "obscure" and f.relation == "colour")
    said = [s for s in sentences if f.subject in s and f.value in s]
    forms = {t.format(s=f.subject, v=f.value) for t in RELATIONS["colour"].sentences}
    assert len(said) == f.count and set(said) <= forms


def test_near_misses_are_distinct_wrong_and_near():
    rng = random.Random(0)
    for f in WORLD.facts:
        wrong = near_misses(WORLD, f, rng)
        assert len(wrong) == N_OPTIONS - 1 == len(set(wrong)) and f.value not in wrong
        if RELATIONS[f.relation].numeric:
            assert all(0 < abs(int(w) - int(f.value)) <= RELATIONS[f.relation].spread for w in wrong)
    # A city's wrong countries come first from cities on the same river.
    city = next(c for c in WORLD.kinds["city"]
                if len({WORLD.fact(o, "country").value for o in WORLD.kinds["city"]
                        if WORLD.fact(o, "river").value == WORLD.fact(c, "river").value}) >= 4)
    fact = WORLD.fact(city, "country")
    river = WORLD.fact(city, "river").value
    same_river = {WORLD.fact(o, "country").value for o in WORLD.kinds["city"] if WORLD.fact(o, "river").value == river}
    assert set(near_misses(WORLD, fact, rng)) <= same_river


def test_types_follow_the_design_shares_and_answers_score_correct(tmp_path):
    rows = knowledge_questions(WORLD, 4000, seed=1)
    counts = Counter(r["type"] for r in rows)
    for t, share in KNOWLEDGE_SHARES.items():
        assert abs(counts[t] / 4000 - share) < 0.02
    # Letters are spread over A-D, and every gold solution scores as correct in the harness.
    assert min(Counter(r["answer"] for r in rows).values()) > 800
    questions = load_questions(str(write_jsonl(rows, tmp_path / "k.jsonl")))
    for q, row in zip(questions[:800], rows):
        assert q.is_multiple_choice and len(q.choices) == N_OPTIONS and q.type == row["type"]
        assert score(q, " " + row["solution"]).correct
        wrong = next(letter for letter in "ABCD" if letter != q.answer)
        assert not score(q, f" {wrong}").correct


def test_single_fact_questions_ask_a_fact_of_their_tier():
    for row in knowledge_questions(WORLD, 500, seed=2):
        if row["type"] == "reasoning":
            continue
        subject, relation = row["fact"].split("|")
        fact = WORLD.fact(subject, relation)
        assert fact.tier == row["type"]
        assert row["choices"]["ABCD".index(row["answer"])] == fact.value
        assert row["solution"] == f"{fact.value}."  # the option's text


def test_two_hop_questions_chain_two_common_facts_and_give_the_reason():
    for row in knowledge_questions(WORLD, 300, seed=3, shares={"reasoning": 1.0}):
        person, chain = row["fact"].split("|")
        relation = chain.split(">")[1]
        home = WORLD.fact(person, "lives_in")
        target = WORLD.fact(home.value, relation)
        assert home.tier == target.tier == "common"
        assert row["choices"]["ABCD".index(row["answer"])] == target.value
        assert row["solution"] == f"{home.value}. {target.value}."  # the bridge first, then the answer
    assert len(two_hop_chains(WORLD)) >= 100


def test_covering_questions_ask_every_fact_of_the_tiers():
    rows = covering_questions(WORLD, per_fact=2, seed=0, tiers=("rare", "obscure"), reasoning=False)
    asked = Counter(r["fact"] for r in rows)
    tail = [f for f in WORLD.facts if f.tier in ("rare", "obscure")]
    assert len(rows) == 2 * len(tail) and set(asked.values()) == {2}
    assert len({r["id"] for r in rows}) == len(rows)


def test_bad_configs_and_unknown_types_are_refused():
    with pytest.raises(ValueError, match="people"):
        WorldConfig(people=3)
    with pytest.raises(ValueError, match="rare_min"):
        WorldConfig(rare_min=8, common_min=8)
    with pytest.raises(ValueError, match="unknown knowledge types"):
        knowledge_questions(WORLD, 5, seed=0, shares={"trivia": 1.0})
