"""A seeded world of invented facts, and multiple-choice questions about it with a long tail.

The world has people (home city, profession, birth year), cities (country, river, founding
year) and elements (atomic number, colour), all with invented names so no model brings prior
knowledge. Each fact gets a frequency in the training text from a Zipf-Mandelbrot law over its
popularity rank, count(r) = A / (r + B)^S: the head facts are repeated dozens of times, the body
a few times, the tail once. A fact's tier follows its count:

| tier    | sentences per epoch | questions (share of the knowledge questions) |
|---------|---------------------|----------------------------------------------|
| common  | >= 8                | `common` 70%: one fact                       |
| rare    | 3-7                 | `rare` 8%: one fact                          |
| obscure | 1-2                 | `obscure` 2%: one fact                       |
| -       | -                   | `reasoning` 20%: two common facts chained    |

A `reasoning` question chains two common facts through a person's home city ("In which country
is the city where Pim Valo lives?"). Answers name the option by its text, the form in which
lm-eval scores models too small to bind an answer to its letter (harness.scoring reads it:
`extract_choice_text`): a single fact is answered "Postia.", a two-hop question with the bridge
first, a brief reason: "Zor. Postia.". (Trained from scratch on this CPU, neither miniature
model learnt to answer with the option's letter: in 1,300 steps of questions that only asked
which option equals a word, both stayed at chance. README, "The miniature tournament".)

Wrong options are near misses, so a model's probabilities over them say something: neighbouring
numbers for years and atomic numbers, and the attribute of a related entity otherwise (another
city in the same country, the colour of the neighbouring element, the profession of a
neighbour). Everything is drawn from one `random.Random(seed)`: the same config gives the same
world, sentences and questions, byte for byte.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterable

from tourney.harness.prompts import LETTERS

KNOWLEDGE_SHARES: dict[str, float] = {"common": 0.70, "reasoning": 0.20, "rare": 0.08, "obscure": 0.02}
TIERS = ("common", "rare", "obscure")
N_OPTIONS = 4

PROFESSIONS = ("baker", "weaver", "potter", "miller", "smith", "sailor", "tailor", "mason", "farmer",
               "painter", "singer", "doctor")
COLOURS = ("red", "blue", "green", "yellow", "white", "black", "grey", "violet", "orange", "silver")
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "st", "tr")
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("", "", "n", "r", "l", "s")


@dataclass(frozen=True)
class Relation:
    """One attribute: the subject's kind, sentence templates, the question, how to pick options."""

    name: str
    kind: str  # "person" | "city" | "element"
    sentences: tuple[str, ...]  # with {s} (subject) and {v} (value)
    question: str  # with {s}
    numeric: bool = False
    spread: int = 0  # numeric near misses lie within +-spread of the true value


RELATIONS: dict[str, Relation] = {r.name: r for r in (
    Relation("lives_in", "person", ("{s} lives in {v}.", "{s} has a home in {v}.", "The home of {s} is in {v}."),
             "Where does {s} live?"),
    Relation("profession", "person", ("{s} works as a {v}.", "{s} is a {v} by trade.", "By trade {s} is a {v}."),
             "What is the trade of {s}?"),
    Relation("born", "person", ("{s} was born in {v}.", "The birth year of {s} is {v}.",
                                "{s} was born in the year {v}."),
             "In which year was {s} born?", numeric=True, spread=4),
    Relation("country", "city", ("{s} is a city in {v}.", "{s} lies in {v}.", "The city of {s} is in {v}."),
             "In which country is {s}?"),
    Relation("river", "city", ("The river {v} flows through {s}.", "{s} stands on the river {v}.",
                               "{s} lies on the river {v}."),
             "Which river flows through {s}?"),
    Relation("founded", "city", ("{s} was founded in {v}.", "The founding year of {s} is {v}.",
                                 "{s} was founded in the year {v}."),
             "In which year was {s} founded?", numeric=True, spread=4),
    Relation("number", "element", ("{s} has atomic number {v}.", "The atomic number of {s} is {v}.",
                                   "{s} is element number {v}."),
             "What is the atomic number of {s}?", numeric=True, spread=3),
    Relation("colour", "element", ("{s} is {v} in colour.", "Pure {s} is {v}.", "The colour of {s} is {v}."),
             "What colour is {s}?"),
)}

# Two hops through a person's home city, by the city's relation asked.
TWO_HOP: dict[str, str] = {
    "country": "In which country is the city where {s} lives?",
    "river": "Which river flows through the city where {s} lives?",
    "founded": "In which year was the city where {s} lives founded?",
}


@dataclass(frozen=True)
class WorldConfig:
    """Size of the world and the shape of its frequency law (see the module doc)."""

    seed: int = 0
    people: int = 220
    cities: int = 60
    countries: int = 12
    rivers: int = 16
    elements: int = 80  # atomic numbers 1..elements, one each
    zipf_a: float = 1.155e6  # count(r) = A / (r + B)^S, rank r from 1
    zipf_b: float = 80.0
    zipf_s: float = 2.0
    max_count: int = 40  # the head is capped: beyond this a repetition teaches nothing new
    common_min: int = 8  # a fact seen at least this often per epoch is common
    rare_min: int = 3  # ... at least this often (and below common_min) rare; below it obscure
    city_popularity: float = 0.35  # < 1 moves city facts up the popularity ranking

    def __post_init__(self) -> None:
        for name in ("people", "cities", "countries", "rivers", "elements"):
            if getattr(self, name) < N_OPTIONS:
                raise ValueError(f"{name} must be >= {N_OPTIONS} (a question needs {N_OPTIONS} distinct options)")
        if not (self.zipf_a > 0 and self.zipf_b >= 0 and self.zipf_s > 0):
            raise ValueError("zipf_a and zipf_s must be > 0 and zipf_b >= 0")
        if not 1 <= self.rare_min < self.common_min <= self.max_count:
            raise ValueError("need 1 <= rare_min < common_min <= max_count")
        if not 0 < self.city_popularity <= 1:
            raise ValueError(f"city_popularity must be in (0, 1], got {self.city_popularity}")


@dataclass(frozen=True)
class Fact:
    subject: str
    relation: str
    value: str
    count: int  # sentences stating it per epoch of training text
    tier: str  # common | rare | obscure


@dataclass(frozen=True)
class World:
    facts: tuple[Fact, ...]
    kinds: dict[str, tuple[str, ...]]  # kind -> entity names, in creation order
    index: dict[tuple[str, str], Fact] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {(f.subject, f.relation): f for f in self.facts})

    def fact(self, subject: str, relation: str) -> Fact:
        return self.index[(subject, relation)]

    def values(self, relation: str) -> list[str]:
        """Every value the relation takes in this world (the pool of random fill-in options)."""
        return sorted({f.value for f in self.facts if f.relation == relation})

    def tier_facts(self, tier: str) -> list[Fact]:
        return [f for f in self.facts if f.tier == tier]


# -- building the world ------------------------------------------------------------------------

def _names(rng: random.Random, n: int, syllables: tuple[int, int], taken: set[str], suffix: str = "") -> list[str]:
    out: list[str] = []
    while len(out) < n:
        k = rng.randint(*syllables)
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(k)) + rng.choice(_CODAS)
        name = ((word.rstrip("aeiou") if suffix else word) + suffix).capitalize()
        if name not in taken:
            taken.add(name)
            out.append(name)
    return out


def zipf_count(rank: int, cfg: WorldConfig) -> int:
    """Sentences per epoch for the fact of popularity `rank` (1 = most popular); at least 1."""
    return max(1, min(cfg.max_count, round(cfg.zipf_a / (rank + cfg.zipf_b) ** cfg.zipf_s)))


def tier_of(count: int, cfg: WorldConfig) -> str:
    return "common" if count >= cfg.common_min else "rare" if count >= cfg.rare_min else "obscure"


def build_world(cfg: WorldConfig) -> World:
    rng = random.Random(cfg.seed)
    taken: set[str] = set()
    people = [f"{a} {b}" for a, b in zip(_names(rng, cfg.people, (1, 2), taken), _names(rng, cfg.people, (2, 2), taken))]
    cities = _names(rng, cfg.cities, (2, 3), taken)
    countries = _names(rng, cfg.countries, (2, 2), taken, suffix="ia")
    rivers = _names(rng, cfg.rivers, (1, 2), taken)
    elements = _names(rng, cfg.elements, (2, 2), taken, suffix="ium")
    values: list[tuple[str, str, str]] = []  # (subject, relation, value)
    for c in cities:
        values += [(c, "country", rng.choice(countries)), (c, "river", rng.choice(rivers)),
                   (c, "founded", str(rng.randint(900, 1800)))]
    for p in people:
        values += [(p, "lives_in", rng.choice(cities)), (p, "profession", rng.choice(PROFESSIONS)),
                   (p, "born", str(rng.randint(1600, 1950)))]
    numbers = list(range(1, cfg.elements + 1))
    rng.shuffle(numbers)
    for e, z in zip(elements, numbers):
        values += [(e, "number", str(z)), (e, "colour", rng.choice(COLOURS))]
    # Popularity rank: random, but cities sit higher (a place is better known than most of the
    # people living there), which also gives the two-hop questions enough common chains.
    keys = [rng.random() * (cfg.city_popularity if r in ("country", "river", "founded") else 1.0)
            for _, r, _ in values]
    order = sorted(range(len(values)), key=lambda i: keys[i])
    facts: list[Fact] = [None] * len(values)  # type: ignore[list-item]
    for rank, i in enumerate(order, start=1):
        s, r, v = values[i]
        n = zipf_count(rank, cfg)
        facts[i] = Fact(s, r, v, n, tier_of(n, cfg))
    kinds = {"person": tuple(people), "city": tuple(cities), "country": tuple(countries),
             "river": tuple(rivers), "element": tuple(elements)}
    return World(facts=tuple(facts), kinds=kinds)


# -- training text -----------------------------------------------------------------------------

def fact_sentences(world: World, rng: random.Random) -> list[str]:
    """Every fact `count` times, each time in a template drawn at random, in random order."""
    out = []
    for f in world.facts:
        rel = RELATIONS[f.relation]
        out += [rng.choice(rel.sentences).format(s=f.subject, v=f.value) for _ in range(f.count)]
    rng.shuffle(out)
    return out


def text_rows(world: World, seed: int, per_row: int = 6, prefix: str = "text") -> list[dict]:
    """The training text as rows of `per_row` sentences ({"id", "text"}); one epoch's worth."""
    sentences = fact_sentences(world, random.Random(seed))
    return [{"id": f"{prefix}-{i // per_row:05d}", "text": " ".join(sentences[i: i + per_row])}
            for i in range(0, len(sentences), per_row)]


# -- questions ---------------------------------------------------------------------------------

def near_misses(world: World, fact: Fact, rng: random.Random) -> list[str]:
    """Three wrong options close to the truth (see the module doc), distinct, never the truth."""
    rel = RELATIONS[fact.relation]
    wrong: list[str] = []

    def add(candidates: Iterable[str]) -> None:
        pool = [c for c in dict.fromkeys(candidates) if c != fact.value and c not in wrong]
        rng.shuffle(pool)
        wrong.extend(pool[: N_OPTIONS - 1 - len(wrong)])

    if rel.numeric:
        v = int(fact.value)
        low = 1 if fact.relation == "number" else 0
        add(str(v + d) for d in range(-rel.spread, rel.spread + 1) if d and v + d >= low)
    else:
        add(_related_values(world, fact))
    add(world.values(fact.relation))  # fill from the whole pool when the neighbourhood is small
    return wrong


def _related_values(world: World, fact: Fact) -> list[str]:
    """The same attribute of entities related to the subject."""
    rel, s = fact.relation, fact.subject
    if rel == "lives_in":  # other cities of the same country
        country = world.fact(fact.value, "country").value
        return [c for c in world.kinds["city"] if world.fact(c, "country").value == country]
    if rel == "profession":  # trades of people living in the same city
        city = world.fact(s, "lives_in").value
        return [world.fact(p, "profession").value for p in world.kinds["person"]
                if world.fact(p, "lives_in").value == city]
    if rel in ("country", "river"):  # the other attribute shared: same river / same country
        other = "river" if rel == "country" else "country"
        mine = world.fact(s, other).value
        return [world.fact(c, rel).value for c in world.kinds["city"] if world.fact(c, other).value == mine]
    if rel == "colour":  # elements next to it in the table
        z = int(world.fact(s, "number").value)
        by_number = {int(world.fact(e, "number").value): e for e in world.kinds["element"]}
        return [world.fact(by_number[z + d], "colour").value for d in (-1, 1, -2, 2) if z + d in by_number]
    raise ValueError(f"no related values for relation {rel!r}")


def _options(world: World, fact: Fact, rng: random.Random) -> tuple[list[str], str]:
    options = [fact.value, *near_misses(world, fact, rng)]
    rng.shuffle(options)
    return options, LETTERS[options.index(fact.value)]


def single_fact_question(world: World, fact: Fact, rng: random.Random, qid: str) -> dict:
    options, letter = _options(world, fact, rng)
    return {"id": qid, "question": RELATIONS[fact.relation].question.format(s=fact.subject), "choices": options,
            "answer": letter, "solution": f"{fact.value}.", "type": fact.tier,
            "fact": f"{fact.subject}|{fact.relation}"}


def two_hop_question(world: World, person: str, relation: str, rng: random.Random, qid: str) -> dict:
    city = world.fact(person, "lives_in").value
    target = world.fact(city, relation)
    options, letter = _options(world, target, rng)
    return {"id": qid, "question": TWO_HOP[relation].format(s=person), "choices": options, "answer": letter,
            "solution": f"{city}. {target.value}.", "type": "reasoning", "fact": f"{person}|lives_in>{relation}"}


def two_hop_chains(world: World) -> list[tuple[str, str]]:
    """(person, city relation) pairs whose both hops are common facts."""
    out = []
    for p in world.kinds["person"]:
        home = world.fact(p, "lives_in")
        if home.tier != "common":
            continue
        out += [(p, r) for r in TWO_HOP if world.fact(home.value, r).tier == "common"]
    return out


def knowledge_questions(world: World, n: int, seed: int, prefix: str = "k",
                        shares: dict[str, float] | None = None) -> list[dict]:
    """`n` questions with types drawn by `shares` (default KNOWLEDGE_SHARES); within a type, the
    fact (or two-hop chain) is drawn uniformly, so the test covers as many facts as it can."""
    shares = shares or KNOWLEDGE_SHARES
    unknown = set(shares) - set(KNOWLEDGE_SHARES)
    if unknown:
        raise ValueError(f"unknown knowledge types {sorted(unknown)}; known: {sorted(KNOWLEDGE_SHARES)}")
    rng = random.Random(seed)
    pools = {t: world.tier_facts(t) for t in TIERS}
    chains = two_hop_chains(world)
    for t in shares:
        if shares[t] > 0 and not (chains if t == "reasoning" else pools[t]):
            raise ValueError(f"the world has no {t} facts; change WorldConfig")
    types = rng.choices(list(shares), weights=list(shares.values()), k=n)
    out = []
    for i, t in enumerate(types):
        qid = f"{prefix}-{i:05d}"
        if t == "reasoning":
            out.append(two_hop_question(world, *rng.choice(chains), rng, qid))
        else:
            out.append(single_fact_question(world, rng.choice(pools[t]), rng, qid))
    return out


def covering_questions(world: World, per_fact: int, seed: int, prefix: str = "kc",
                       tiers: Iterable[str] = TIERS, reasoning: bool = True) -> list[dict]:
    """`per_fact` questions about every fact of `tiers` (and every two-hop chain), each with its
    own options and order: the questions a team would have its teacher answer to cover a topic."""
    rng = random.Random(seed)
    out: list[dict] = []
    tiers = set(tiers)
    for f in world.facts:
        if f.tier in tiers:
            out += [single_fact_question(world, f, rng, "") for _ in range(per_fact)]
    if reasoning:
        for p, r in two_hop_chains(world):
            out += [two_hop_question(world, p, r, rng, "") for _ in range(per_fact)]
    rng.shuffle(out)
    for i, q in enumerate(out):
        q["id"] = f"{prefix}-{i:05d}"
    return out
