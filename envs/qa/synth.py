"""SynthHop: a fictional world, the passages written from it, and multi-hop questions over them.

Offline by construction and unknowable by any pretrained model: every name is invented (syllables,
never a real word list), every fact drawn at random.

* **The world** (``build_world``) is a pure function of ``WorldConfig``: people, towns, provinces,
  organisations, works and events, with attributes (years, the river a town stands on) and relations
  (birthplace, employer, province, seat, founder, base, creator, venue, organiser). Facts are drawn
  independently of names, so nothing in a question hints at its answer.
* **The corpus**: one passage per entity (title = its name), one or two short sentences from one
  template per entity kind, so every answer is a short span that appears verbatim in a gold passage.
  ``paraphrase`` (0..1) is the share of passages and questions that use alternative phrasings.
  ``distractors`` (0..1) is how often a new name reuses a word of an earlier one (``Dezusk Kufox``,
  ``Kufox Press``, a town ``Kufox``), so searches return passages sharing names, kinds and wording.
* **Questions** (``SynthQuestions``), HotpotQA's item form with HotpotQA's and 2Wiki's kinds:
  ``single`` (1 hop: an attribute or relation of a named entity), ``bridge`` (2-3 hops: follow
  relations, then read an attribute: "On which river does the town where Bugisp Thevasp was born
  stand?"), ``compositional`` (2-3 hops, every hop a relation, the answer an entity: "In which town
  was the founder of Pumesk Bank born?") and ``comparison`` (2-3 hops: compare two entities' years,
  then read a fact of the winner: "In which town was the younger of Lisink Vomonk and Brobosp Pavulk
  born?";
  the answer is never one of the compared names, so it cannot be guessed from the question).
  Every question names the entity to search for first; its gold passages are ``supporting_titles``
  in the order a solver reads them, and ``evidence`` holds the fact read from each.
* **Splits**: every entity belongs to the train or the test partition (``test_fraction`` of each
  kind) and relations never cross partitions, so a question's gold passages all lie in one
  partition. Train questions are drawn from train entities only and test questions from test
  entities only: no test question is a train question, and no entity a test question is about
  (named, bridged or compared) is the subject of any train question's gold passage. The corpus
  holds both partitions (searching the whole world is the task).
* **Determinism**: item ``i`` of a split is a pure function of (world config, question knobs,
  split, ``i``). For each split and hop count the valid (question pattern, first entity) pairs are
  listed and shuffled once; item ``i`` takes the next pair, so the first items of a split are
  distinct questions until the pairs run out (then they cycle).
"""

from __future__ import annotations

import array
import bisect
import hashlib
import logging
import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from envs.core.shared import SharedValues
from envs.retrieval.base import Passage

logger = logging.getLogger(__name__)

SPLITS = ("train", "test")
QUESTION_KINDS = ("single", "bridge", "compositional", "comparison")
HOPS = (1, 2, 3)
ENTITY_KINDS = ("person", "town", "province", "organisation", "work", "event")
# Share of the corpus per entity kind (people take the remainder).
_KIND_SHARES = {"town": 0.14, "province": 0.03, "organisation": 0.16, "work": 0.19, "event": 0.12}
MIN_PASSAGES = 100


# ---------------------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class WorldConfig:
    """Everything the world (and so the corpus) is a function of."""

    seed: int = 0
    passages: int = 10_000  # one passage per entity
    distractors: float = 0.5  # how often a new name reuses a word of an earlier name
    paraphrase: float = 0.0  # share of passages (and questions) written in an alternative phrasing
    test_fraction: float = 0.2  # share of each entity kind held out for the test split

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"world seed must be an int, got {self.seed!r}")
        if not isinstance(self.passages, int) or self.passages < MIN_PASSAGES:
            raise ValueError(f"passages must be an int >= {MIN_PASSAGES}, got {self.passages!r}")
        for name in ("distractors", "paraphrase"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if not 0.0 < float(self.test_fraction) < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction!r}")


@dataclass(frozen=True)
class QuestionConfig:
    """What questions a split poses (the world is ``WorldConfig``'s)."""

    split: str = "train"
    hops: tuple[int, ...] = HOPS
    kinds: tuple[str, ...] = QUESTION_KINDS
    context_distractors: int = 8  # non-gold passages in an item's ``context`` (HotpotQA's distractor setting)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        hops = (self.hops,) if isinstance(self.hops, int) else tuple(self.hops)
        if not hops or any(h not in HOPS for h in hops) or len(set(hops)) != len(hops):
            raise ValueError(f"hops must be 1, 2, 3 or a sequence of distinct ones, got {self.hops!r}")
        kinds = (self.kinds,) if isinstance(self.kinds, str) else tuple(self.kinds)
        if not kinds or any(k not in QUESTION_KINDS for k in kinds):
            raise ValueError(f"kinds must be a non-empty subset of {QUESTION_KINDS}, got {self.kinds!r}")
        if not any(_kinds_at(h, kinds) for h in hops):
            raise ValueError(f"no question kind in {kinds} has {hops} hops (single: 1; the others: 2 or 3)")
        hops = tuple(h for h in hops if _kinds_at(h, kinds))  # kinds=("comparison",) with hops (1, 2, 3): 2 and 3
        if not isinstance(self.context_distractors, int) or not 0 <= self.context_distractors <= 50:
            raise ValueError(f"context_distractors must be an int in 0..50, got {self.context_distractors!r}")
        object.__setattr__(self, "hops", hops)
        object.__setattr__(self, "kinds", kinds)


def _kinds_at(hops: int, kinds: Sequence[str]) -> list[str]:
    return [k for k in kinds if (k == "single") == (hops == 1)]


# ---------------------------------------------------------------------------------------- the schema
@dataclass(frozen=True)
class Fact:
    """One attribute or relation of an entity kind, and every way the world writes or asks it.

    Templates: ``{x}`` is the subject's noun phrase, ``{v}`` the value; work facts also fill
    ``{made}`` (wrote), ``{maker}`` (author), ``{made_passive}`` (written) and ``{out}`` (published).
    """

    subject: str
    name: str
    target: str | None  # the entity kind a relation points to; None for a value (a year, a river)
    ask: tuple[str, ...]  # questions, canonical first
    says: str  # a one-sentence statement (the evidence a solver reads)
    of: str = ""  # relation as a noun phrase, 2Wiki style: "the founder of {x}"
    that: str = ""  # relation as a relative clause, HotpotQA style: "the person who founded {x}"
    year: bool = False  # the kind's year: what comparisons compare

    @property
    def key(self) -> tuple[str, str]:
        return (self.subject, self.name)


FACTS: tuple[Fact, ...] = (
    Fact("person", "born", None, ("In what year was {x} born?", "What is the birth year of {x}?"),
         "{x} was born in {v}.", year=True),
    Fact("person", "birthplace", "town", ("In which town was {x} born?", "What is the birthplace of {x}?"),
         "{x} was born in {v}.", of="the birthplace of {x}", that="the town where {x} was born"),
    Fact("person", "employer", "organisation", ("Which organisation did {x} work for?", "Who employed {x}?"),
         "{x} worked for {v}.", of="the employer of {x}", that="the organisation that {x} worked for"),
    Fact("town", "founded", None, ("In what year was {x} founded?", "When was {x} founded?"),
         "{x} was founded in {v}.", year=True),
    Fact("town", "river", None, ("On which river does {x} stand?", "Which river flows through {x}?"),
         "{x} stands on the river {v}."),
    Fact("town", "province", "province", ("In which province is {x}?", "Which province is {x} part of?"),
         "{x} is in the province of {v}.", of="the province containing {x}", that="the province that {x} is in"),
    Fact("province", "formed", None, ("In what year was {x} formed?", "When was {x} created?"),
         "{x} was formed in {v}.", year=True),
    Fact("province", "seat", "town", ("Which town is the seat of {x}?", "What is the seat of {x}?"),
         "The seat of {x} is {v}.", of="the seat of {x}", that="the town that is the seat of {x}"),
    Fact("organisation", "founded", None, ("In what year was {x} founded?", "When was {x} established?"),
         "{x} was founded in {v}.", year=True),
    Fact("organisation", "founder", "person", ("Who founded {x}?", "Who was the founder of {x}?"),
         "{x} was founded by {v}.", of="the founder of {x}", that="the person who founded {x}"),
    Fact("organisation", "base", "town", ("In which town is {x} based?", "Where does {x} have its headquarters?"),
         "{x} is based in {v}.", of="the home town of {x}", that="the town where {x} is based"),
    Fact("work", "year", None, ("In what year was {x} first {out}?", "When was {x} first {out}?"),
         "{x} was first {out} in {v}.", year=True),
    Fact("work", "creator", "person", ("Who {made} {x}?", "Who was the {maker} of {x}?"),
         "{x} was {made_passive} by {v}.", of="the {maker} of {x}", that="the person who {made} {x}"),
    Fact("event", "year", None, ("In what year was {x} held?", "When did {x} take place?"),
         "{x} was held in {v}.", year=True),
    Fact("event", "venue", "town", ("In which town was {x} held?", "Where did {x} take place?"),
         "{x} took place in {v}.", of="the host town of {x}", that="the town where {x} was held"),
    Fact("event", "organiser", "organisation", ("Which organisation organised {x}?", "Who organised {x}?"),
         "{x} was organised by {v}.", of="the organiser of {x}", that="the organisation that organised {x}"),
)
FACT = {f.key: f for f in FACTS}
YEAR_FACT = {f.subject: f for f in FACTS if f.year}
# Relation pairs that lead back where they started (a province's seat lies in that province).
_INVERSES = {(("province", "seat"), ("town", "province"))}

# How a comparison names the winner, by kind: (earliest year, latest year).
_SUPERLATIVES = {"person": ("elder", "younger"), "town": ("older", "younger"), "province": ("older", "younger"),
                 "organisation": ("older", "younger"), "work": ("earlier", "later"), "event": ("earlier", "later")}

# Work subtypes: (made, maker, made_passive, out, the occupation of its makers).
WORK_SUBTYPES = {
    "novel": ("wrote", "author", "written", "published", "novelist"),
    "film": ("directed", "director", "directed", "released", "film director"),
    "opera": ("composed", "composer", "composed", "staged", "composer"),
    "painting": ("painted", "painter", "painted", "exhibited", "painter"),
    "album": ("recorded", "singer", "recorded", "released", "singer"),
}
OCCUPATIONS = (*(s[4] for s in WORK_SUBTYPES.values()), "chemist", "architect", "engineer", "botanist",
               "cartographer", "astronomer", "merchant", "physician", "sculptor", "clockmaker", "shipwright",
               "librarian", "mathematician")
# Organisation subtypes and the word their names end with.
ORG_SUBTYPES = {"trading company": "Trading Company", "publishing house": "Press", "bank": "Bank",
                "foundry": "Foundry", "research institute": "Institute", "guild": "Guild",
                "observatory": "Observatory", "shipyard": "Yards", "theatre company": "Players",
                "orchestra": "Orchestra"}
EVENT_SUBTYPES = {"rowing regatta": "Regatta", "trade fair": "Fair", "music festival": "Festival",
                  "scientific congress": "Congress", "art exhibition": "Exhibition", "chess tournament": "Tournament",
                  "lantern festival": "Lantern Night", "horse fair": "Horse Fair"}
_TITLE_WORDS = ("Lantern", "Orchard", "Harbour", "Meridian", "Garden", "Tide", "Compass", "Bridge", "Mirror",
                "Archive", "Voyage", "Letters", "Bell", "Lighthouse", "Crossing", "Season", "Threshold", "Atlas",
                "Feather", "Winter", "Ember", "Salt", "Copper", "Glass", "Silver", "Amber", "Hollow", "Quiet")
_PROVINCE_SUFFIXES = ("ia", "land", "mark")
# Words of names that are not invented: searching them finds every name that has them.
_GENERIC_WORDS = frozenset(w.lower() for words in (_TITLE_WORDS, ORG_SUBTYPES.values(), EVENT_SUBTYPES.values())
                           for phrase in words for w in phrase.split())

# Passages: one template per kind, canonical first (``paraphrase`` picks the others).
PASSAGES: dict[str, tuple[str, ...]] = {
    "person": ("{name} was {a_subtype} born in {birthplace} in {born}. {name} worked for {employer}.",
               "Born in {born} in {birthplace}, {name} became {a_subtype} and was employed by {employer}.",
               "{name} ({born}) was {a_subtype} from {birthplace} who worked at {employer}."),
    "town": ("{name} is a town in the province of {province}, founded in {founded}. "
             "{name} stands on the river {river}.",
             "Founded in {founded}, the town of {name} lies on the {river} river in {province}.",
             "{name}, a town on the river {river}, was founded in {founded} and belongs to {province}."),
    "province": ("{name} is a province formed in {formed}. Its seat is the town of {seat}.",
                 "The province of {name} was created in {formed}, with {seat} as its seat.",
                 "Formed in {formed}, {name} is a province governed from {seat}."),
    "organisation": ("{name} is {a_subtype} founded by {founder} in {founded}. {name} is based in {base}.",
                     "{founder} founded the {subtype} {name} in {founded}; it has its headquarters in {base}.",
                     "Based in {base}, {name} is {a_subtype} that {founder} established in {founded}."),
    "work": ("{name} is {a_subtype} {made_passive} by {creator}, first {out} in {year}.",
             "{creator} {made} the {subtype} {name}, which was first {out} in {year}.",
             "First {out} in {year}, {name} is {a_subtype} by the {maker} {creator}."),
    "event": ("The {name} was {a_subtype} held in {venue} in {year}. It was organised by {organiser}.",
              "In {year}, {organiser} organised the {name}, {a_subtype} in {venue}.",
              "The {name}, {a_subtype} organised by {organiser}, took place in {venue} in {year}."),
}
# Years each kind's year is drawn from (creators are at least 15, founders 20, at the time).
_YEARS = {"person": (1720, 1990), "town": (700, 1850), "province": (1000, 1800), "organisation": (1750, 2010),
          "work": (1800, 2015), "event": (1790, 2015)}


# ---------------------------------------------------------------------------------------- names
# Invented, pronounceable stems from a small grammar (no word list): a consonant (or cluster), then
# one or two vowel + consonant pairs, then a vowel and a closing cluster (``Dezusk``, ``Tolank``,
# ``Kavisp``). Real names and words almost never end so; the few the grammar can make are left out
# (``_REAL_WORDS``: every grammar word among Faker's first names, surnames and place names of all
# its locales and the ``english-words`` lists; tests/envs/qa/test_synth.py keeps it complete).
# SmolLM2's tokenizer takes ~2.8 tokens per stem.
_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "kr", "tr",
           "st", "th")
_SIMPLE_ONSETS = tuple(o for o in _ONSETS if len(o) == 1)
_VOWELS = ("a", "e", "i", "o", "u")
_ENDINGS = tuple(v + c for v in _VOWELS for c in ("sk", "nk", "lk", "sp", "ft"))
STEM_PATTERN = (f"(?:{'|'.join(_ONSETS)})(?:[{''.join(_VOWELS)}][{''.join(_SIMPLE_ONSETS)}]){{1,2}}"
                f"(?:{'|'.join(_ENDINGS)})")
_REAL_WORDS = frozenset({
    "bedusk", "begift", "begunk", "bemask", "bemusk", "bereft", "betalk", "betask", "damask", "debunk", "defalk",
    "dorask", "moresk", "morisk", "podunk", "rebulk", "regift", "relift", "relink", "remask", "rerank", "resift",
    "resink", "retalk", "sisask", "sokulk", "basilisk", "bobolink", "demimonk", "foredesk", "foregift",
    "forelift", "foremilk", "forerank", "foretalk", "ludefisk", "runefolk", "semidisk", "semisoft", "solotink",
    "tamarisk", "zolotink",
})


def _stem(rng: random.Random, syllables: int = 2) -> str:
    middle = "".join(rng.choice(_VOWELS) + rng.choice(_SIMPLE_ONSETS) for _ in range(syllables - 1))
    return (rng.choice(_ONSETS) + middle + rng.choice(_ENDINGS)).capitalize()


class _Namer:
    """Unique titles from invented stems; ``distractors`` is how often a stem is reused."""

    def __init__(self, rng: random.Random, distractors: float):
        self.rng = rng
        self.distractors = distractors
        self.titles: set[str] = set()
        self.stems: list[str] = []  # every stem used so far, once
        self._stem_set: set[str] = set()
        self.syllables = 2

    def fresh_stem(self) -> str:
        for attempt in range(10_000):
            stem = _stem(self.rng, self.syllables)
            if stem not in self._stem_set and stem.lower() not in _REAL_WORDS:
                self._stem_set.add(stem)
                self.stems.append(stem)
                return stem
            if attempt == 20:  # the shorter stems are nearly used up: longer ones from now on
                self.syllables += 1
        raise RuntimeError("ran out of invented names")  # pragma: no cover - each syllable multiplies them by 70

    def stem(self) -> str:
        if self.stems and self.rng.random() < self.distractors:
            return self.rng.choice(self.stems)
        return self.fresh_stem()

    def unique(self, make: Callable[[bool], str]) -> str:
        """``make()`` until it gives a title not used yet (after a few tries, with fresh stems only)."""
        for attempt in range(64):
            title = make(attempt >= 8)
            if title not in self.titles:
                self.titles.add(title)
                return title
        raise RuntimeError("could not find a unique name")  # pragma: no cover - the stem space is huge


# ---------------------------------------------------------------------------------------- the world
@dataclass(frozen=True)
class Entity:
    """One thing in the world; ``facts`` maps a fact name to a value (year, river) or an entity id."""

    id: int
    kind: str
    name: str
    subtype: str
    split: str
    facts: dict[str, int | str] = field(default_factory=dict)

    def mention(self) -> str:
        """How a question names the entity (works and events get their kind, provinces a noun)."""
        if self.kind == "work":
            return f"the {self.subtype} {self.name}"
        if self.kind == "event":
            return f"the {self.name}"
        if self.kind == "province":
            return f"the province of {self.name}"
        return self.name


class World:
    """The entities, their passages (one each, ``passages[i]`` about ``entities[i]``) and lookups."""

    def __init__(self, config: WorldConfig, entities: list[Entity], passages: list[Passage]):
        self.config = config
        self.entities = entities
        self.passages = passages
        self.by_kind: dict[tuple[str, str], list[int]] = {}  # (kind, split) -> ids
        self.by_word: dict[str, list[int]] = {}  # a lower-cased name word -> ids of entities whose name has it
        for e in entities:
            self.by_kind.setdefault((e.kind, e.split), []).append(e.id)
            for word in set(_name_words(e.name)):
                self.by_word.setdefault(word, []).append(e.id)

    def value(self, entity: Entity, fact: str) -> str:
        """The fact as text: a year, a river, or the related entity's name."""
        raw = entity.facts[fact]
        return self.entities[raw].name if FACT[(entity.kind, fact)].target else str(raw)

    def follow(self, entity: Entity, fact: str) -> Entity:
        return self.entities[int(entity.facts[fact])]

    def __len__(self) -> int:
        return len(self.entities)


_STOP_WORDS = frozenset({"the", "of"})


def _name_words(name: str) -> list[str]:
    """The invented words of a name (``"The Kufox Lantern"`` -> ``["kufox"]``)."""
    return [w for w in name.lower().replace("'s", "").split() if w not in _STOP_WORDS and w not in _GENERIC_WORDS]


def _kind_counts(total: int) -> dict[str, int]:
    counts = {kind: max(4, round(share * total)) for kind, share in _KIND_SHARES.items()}
    counts["person"] = total - sum(counts.values())
    return {kind: counts[kind] for kind in ENTITY_KINDS}


def _work_fill(subtype: str) -> dict[str, str]:
    made, maker, made_passive, out, _ = WORK_SUBTYPES[subtype]
    return {"made": made, "maker": maker, "made_passive": made_passive, "out": out}


class _Builder:
    def __init__(self, config: WorldConfig):
        self.config = config
        self.rng = random.Random(f"synthhop-world-{config.seed}")
        self.namer = _Namer(self.rng, config.distractors)
        self.entities: list[Entity] = []

    def build(self) -> World:
        rng, namer = self.rng, self.namer
        counts = _kind_counts(self.config.passages)
        given_pool = [namer.fresh_stem() for _ in range(max(40, counts["person"] // 6))]
        rivers = [namer.fresh_stem() for _ in range(max(8, counts["town"] // 4))]
        for kind in ENTITY_KINDS:
            n = counts[kind]
            n_test = min(n - 2, max(2, round(self.config.test_fraction * n)))
            splits = ["test"] * n_test + ["train"] * (n - n_test)
            rng.shuffle(splits)
            for split in splits:
                subtype, name = self._name(kind, given_pool)
                low, high = _YEARS[kind]
                facts: dict[str, int | str] = {YEAR_FACT[kind].name: rng.randint(low, high)}
                if kind == "town":
                    facts["river"] = rng.choice(rivers)
                self.entities.append(Entity(len(self.entities), kind, name, subtype, split, facts))
        for split in SPLITS:
            self._relate(split)
        wording = random.Random(f"synthhop-wording-{self.config.seed}")
        passages = [self._passage(e, wording) for e in self.entities]
        return World(self.config, self.entities, passages)

    def _name(self, kind: str, given_pool: list[str]) -> tuple[str, str]:
        rng, namer = self.rng, self.namer
        if kind == "person":
            return rng.choice(OCCUPATIONS), namer.unique(
                lambda fresh: f"{rng.choice(given_pool)} {namer.fresh_stem() if fresh else namer.stem()}")
        if kind == "town":
            return "town", namer.unique(lambda fresh: namer.fresh_stem() if fresh else namer.stem())
        if kind == "province":
            return "province", namer.unique(lambda fresh: namer.fresh_stem() + rng.choice(_PROVINCE_SUFFIXES))
        if kind == "organisation":
            subtype = rng.choice(list(ORG_SUBTYPES))
            return subtype, namer.unique(
                lambda fresh: f"{namer.fresh_stem() if fresh else namer.stem()} {ORG_SUBTYPES[subtype]}")
        if kind == "work":
            subtype = rng.choice(list(WORK_SUBTYPES))

            def title(fresh: bool) -> str:
                stem = namer.fresh_stem() if fresh else namer.stem()
                word = rng.choice(_TITLE_WORDS)
                forms = (f"The {stem} {word}", f"{word} of {stem}", f"{stem}'s {word}", f"The {word} of {stem}")
                return rng.choice(forms)

            return subtype, namer.unique(title)
        subtype = rng.choice(list(EVENT_SUBTYPES))
        return subtype, namer.unique(
            lambda fresh: f"{namer.fresh_stem() if fresh else namer.stem()} {EVENT_SUBTYPES[subtype]}")

    def _relate(self, split: str) -> None:
        """Draw every relation within one partition, keeping dates plausible where it is cheap to."""
        rng = self.rng
        of_kind = {kind: [e for e in self.entities if e.kind == kind and e.split == split] for kind in ENTITY_KINDS}
        towns, provinces = of_kind["town"], of_kind["province"]
        for i, town in enumerate(towns):  # every province gets at least one town, so it has a seat
            town.facts["province"] = provinces[i].id if i < len(provinces) else rng.choice(provinces).id
        members: dict[int, list[Entity]] = {}
        for town in towns:
            members.setdefault(int(town.facts["province"]), []).append(town)
        for province in provinces:
            province.facts["seat"] = rng.choice(members[province.id]).id
        people = _ByYear(of_kind["person"], "born")
        makers = {occupation: _ByYear([p for p in of_kind["person"] if p.subtype == occupation], "born")
                  for occupation in OCCUPATIONS}
        orgs = _ByYear(of_kind["organisation"], "founded")
        dated_towns = _ByYear(towns, "founded")
        for org in of_kind["organisation"]:
            org.facts["founder"] = people.before(rng, int(org.facts["founded"]) - 20).id
            org.facts["base"] = dated_towns.before(rng, int(org.facts["founded"])).id
        for person in of_kind["person"]:
            person.facts["birthplace"] = dated_towns.before(rng, int(person.facts["born"])).id
            person.facts["employer"] = orgs.before(rng, int(person.facts["born"]) + 50).id
        for work in of_kind["work"]:
            pool = makers[WORK_SUBTYPES[work.subtype][4]]
            work.facts["creator"] = (pool if pool.items else people).before(rng, int(work.facts["year"]) - 15).id
        for event in of_kind["event"]:
            event.facts["venue"] = dated_towns.before(rng, int(event.facts["year"])).id
            event.facts["organiser"] = orgs.before(rng, int(event.facts["year"])).id

    def _passage(self, entity: Entity, rng: random.Random) -> Passage:
        templates = PASSAGES[entity.kind]
        alternative = rng.choice(templates[1:])  # drawn for every passage, so paraphrase changes only wording
        template = alternative if rng.random() < self.config.paraphrase else templates[0]
        article = "an" if entity.subtype[0] in "aeiou" else "a"
        fill: dict[str, Any] = {"name": entity.name, "subtype": entity.subtype,
                                "a_subtype": f"{article} {entity.subtype}"}
        if entity.kind == "work":
            fill.update(_work_fill(entity.subtype))
        for fact, raw in entity.facts.items():
            target = FACT[(entity.kind, fact)].target
            fill[fact] = self.entities[int(raw)].name if target else raw
        return Passage(id=f"synthhop-{self.config.seed}-{entity.id}", title=entity.name, text=template.format(**fill))


class _ByYear:
    """Entities sorted by a year: draw one dated no later than a bound (the earliest if none is)."""

    def __init__(self, items: list[Entity], fact: str):
        self.items = sorted(items, key=lambda e: int(e.facts[fact]))
        self.years = [int(e.facts[fact]) for e in self.items]

    def before(self, rng: random.Random, year: int) -> Entity:
        n = bisect.bisect_right(self.years, year)
        return self.items[rng.randrange(n)] if n else self.items[0]


_WORLDS: SharedValues[World] = SharedValues()


def build_world(config: WorldConfig | None = None) -> World:
    """The world for ``config`` (built once per process; under a second for 10,000 passages)."""
    config = config or WorldConfig()
    return _WORLDS.get(config, lambda: _build(config))


def _build(config: WorldConfig) -> World:
    world = _Builder(config).build()
    logger.info("built the SynthHop world (seed %d): %d passages", config.seed, len(world.passages))
    return world


# ---------------------------------------------------------------------------------------- questions
@dataclass(frozen=True)
class Pattern:
    """One question shape: a kind, the entity kind named first, the relations followed, the fact asked.

    For ``comparison`` the compared kind is ``anchor``; the second side is a named entity of the same
    kind (``path == ()``) or reached from a named ``other`` entity through one relation.
    """

    kind: str
    anchor: str
    path: tuple[str, ...]
    final: str
    other: str = ""


def _relations_from(kind: str) -> list[Fact]:
    return [f for f in FACTS if f.subject == kind and f.target]


def patterns(hops: int, kind: str) -> list[Pattern]:
    """Every question pattern of ``kind`` with ``hops`` gold passages."""
    out: list[Pattern] = []
    if kind == "single":
        return [Pattern("single", f.subject, (), f.name) for f in FACTS] if hops == 1 else []
    if kind == "comparison":
        if hops == 2:
            return [Pattern("comparison", f.subject, (), g.name) for f in FACTS if f.year
                    for g in FACTS if g.subject == f.subject]
        if hops == 3:  # not via a relation the asked fact inverts (the seat's province is the one named)
            return [Pattern("comparison", f.subject, (r.name,), g.name, other=r.subject) for f in FACTS if f.year
                    for r in FACTS if r.target == f.subject for g in FACTS if g.subject == f.subject
                    and (r.key, g.key) not in _INVERSES]
        return []
    if hops < 2:
        return []

    def chains(start: str, length: int) -> Iterator[tuple[tuple[str, ...], str]]:
        if length == 0:
            yield (), start
            return
        for rel in _relations_from(start):
            for rest, end in chains(rel.target or "", length - 1):
                yield (rel.name, *rest), end

    for anchor in ENTITY_KINDS:
        for path, end in chains(anchor, hops - 1):
            for f in FACTS:
                if f.subject == end and (f.target is not None) == (kind == "compositional"):
                    out.append(Pattern(kind, anchor, path, f.name))
    return out


def _walk(world: World, start: Entity, path: Sequence[str]) -> list[Entity] | None:
    """``start`` and each entity ``path`` reaches from it; None if it comes back to one already on it."""
    chain = [start]
    for rel in path:
        nxt = world.follow(chain[-1], rel)
        if any(nxt.id == e.id for e in chain):
            return None
        chain.append(nxt)
    return chain


class SynthQuestions:
    """The questions of one split over one world (see the module docstring).

    ``item(i)`` is a pure function of the configs and ``i``; ``items(n)`` the first ``n``.
    """

    def __init__(self, world: World, config: QuestionConfig):
        self.world = world
        self.config = config
        self._pairs: dict[int, tuple[list[Pattern], array.array]] = {}

    def __len__(self) -> int:
        """How many distinct questions the split holds before item numbers cycle."""
        return sum(len(self._pairs_for(h)[1]) for h in self.config.hops)

    def _pairs_for(self, hops: int) -> tuple[list[Pattern], array.array]:
        """The patterns for ``hops``, and their valid (pattern, first entity) pairs in a fixed shuffled
        order, each as ``pattern index * len(world) + entity id`` (8 bytes a pair)."""
        if hops not in self._pairs:
            split, size = self.config.split, len(self.world)
            found = [p for kind in _kinds_at(hops, self.config.kinds) for p in patterns(hops, kind)]
            pairs = array.array("q", [k * size + eid for k, p in enumerate(found)
                                      for eid in self._valid_starts(p, self.world.by_kind.get((p.anchor, split), []))])
            rng = random.Random(f"synthhop-pairs-{self.world.config.seed}-{split}-{hops}-{','.join(self.config.kinds)}")
            rng.shuffle(pairs)  # type: ignore[arg-type]
            self._pairs[hops] = (found, pairs)
        return self._pairs[hops]

    def _valid_starts(self, pattern: Pattern, ids: Sequence[int]) -> list[int]:
        """The entities a pattern can start from: its chain never comes back to an entity (nor answers one)."""
        if pattern.kind == "comparison":  # the second side is drawn per item
            entities = self.world.entities
            return [eid for eid in ids
                    if not _leaks(self.world.value(entities[eid], pattern.final), entities[eid].name)]
        end = pattern.anchor
        for rel in pattern.path:
            end = FACT[(end, rel)].target or ""
        asks_entity = FACT[(end, pattern.final)].target is not None
        entities, out = self.world.entities, []
        for eid in ids:
            seen, facts = [eid], entities[eid].facts
            for rel in pattern.path:
                nxt = int(facts[rel])
                if nxt in seen:
                    break
                seen.append(nxt)
                facts = entities[nxt].facts
            else:
                answer = entities[int(facts[pattern.final])].name if asks_entity else str(facts[pattern.final])
                if not (asks_entity and int(facts[pattern.final]) in seen) and not _leaks(answer, entities[eid].name):
                    out.append(eid)
        return out

    def item(self, index: int) -> dict[str, Any]:
        """Question ``index`` of the split (HotpotQA's item form plus ``hops``, ``split``, ``evidence``)."""
        if index < 0:
            raise IndexError(f"question index must be >= 0, got {index}")
        config, world = self.config, self.world
        hops = config.hops[index % len(config.hops)]
        found, pairs = self._pairs_for(hops)
        if not pairs:
            raise ValueError(f"the world has no {hops}-hop questions of kinds {config.kinds} in the {config.split} "
                             "split; use a larger world (passages=...)")
        rng = random.Random(f"synthhop-item-{world.config.seed}-{config.split}-{index}-{hops}")
        position = index // len(config.hops)
        for attempt in range(len(pairs)):
            pattern_index, eid = divmod(pairs[(position + attempt) % len(pairs)], len(world))
            pattern = found[pattern_index]
            built = self._compose(pattern, world.entities[eid], rng)
            if built is not None:
                break
        else:  # pragma: no cover - every listed pair but a comparison's is valid by construction
            raise ValueError("no valid question found")
        question, answer, gold, evidence = built
        return {
            "id": f"synthhop-{world.config.seed}-{config.split}-{_digest(question)}",  # one id per question
            "question": question,
            "answers": [answer],
            "supporting_titles": [e.name for e in gold],
            "context": self._context(gold, rng),
            "type": pattern.kind,
            "hops": len(gold),
            "split": config.split,
            "evidence": evidence,
        }

    def items(self, n: int, start: int = 0) -> list[dict[str, Any]]:
        return [self.item(i) for i in range(start, start + n)]

    # -- composing one question
    def _ask(self, fact: Fact, subject: str, rng: random.Random, sample: Entity) -> str:
        templates = fact.ask
        template = templates[0] if rng.random() >= self.world.config.paraphrase else rng.choice(templates[1:])
        fill = _work_fill(sample.subtype) if sample.kind == "work" else {}
        return _capitalise(template.format(x=subject, **fill))

    def _say(self, entity: Entity, fact: str) -> str:
        f = FACT[(entity.kind, fact)]
        fill = _work_fill(entity.subtype) if entity.kind == "work" else {}
        return _capitalise(f.says.format(x=entity.mention(), v=self.world.value(entity, fact), **fill))

    def _phrase(self, chain: list[Entity], path: Sequence[str], style: str) -> str:
        """The noun phrase for the chain's last entity, built outward from the named one.

        ``"of"``: nested noun phrases (2Wiki's compositional questions); ``"that"``: the first
        relation as a relative clause (HotpotQA's bridge questions), the rest as noun phrases.
        """
        text = chain[0].mention()
        for step, (entity, rel) in enumerate(zip(chain, path, strict=False)):
            f = FACT[(entity.kind, rel)]
            fill = _work_fill(entity.subtype) if entity.kind == "work" else {}
            text = (f.that if style == "that" and step == 0 else f.of).format(x=text, **fill)
        return text

    def _compose(self, pattern: Pattern, start: Entity, rng: random.Random
                 ) -> tuple[str, str, list[Entity], list[str]] | None:
        world = self.world
        if pattern.kind != "comparison":
            chain = _walk(world, start, pattern.path)
            assert chain is not None
            last = chain[-1]
            style = "that" if pattern.kind == "bridge" else "of"
            subject = self._phrase(chain, pattern.path, style)
            question = self._ask(FACT[(last.kind, pattern.final)], subject, rng, last)
            evidence = [self._say(e, rel) for e, rel in zip(chain, pattern.path, strict=False)]
            evidence.append(self._say(last, pattern.final))
            return question, world.value(last, pattern.final), chain, evidence
        return self._compare(pattern, start, rng)

    def _compare(self, pattern: Pattern, first: Entity, rng: random.Random
                 ) -> tuple[str, str, list[Entity], list[str]] | None:
        world, split = self.world, self.config.split
        key = YEAR_FACT[pattern.anchor].name
        # The second side: a named entity of the same kind, or the end of one relation from another kind.
        pool = world.by_kind.get((pattern.other or pattern.anchor, split), [])
        for _ in range(64):
            named = world.entities[rng.choice(pool)]
            chain = _walk(world, named, pattern.path)
            if chain is None:
                continue
            second = chain[-1]
            if (any(e.id == first.id for e in chain) or second.facts[key] == first.facts[key]
                    or (first.kind == "work" and second.subtype != first.subtype)
                    # reading one side must not be enough, and no named entity may give the answer away
                    or world.value(first, pattern.final) == world.value(second, pattern.final)
                    or any(_leaks(world.value(side, pattern.final), f"{first.name} {named.name}")
                           for side in (first, second))):
                continue
            break
        else:
            return None
        sides = [first, second] if rng.random() < 0.5 else [second, first]
        earliest = rng.random() < 0.5
        winner = (min if earliest else max)(sides, key=lambda e: int(e.facts[key]))
        mentions = [first.mention() if e is first else self._phrase(chain, pattern.path, "of") for e in sides]
        word = _SUPERLATIVES[pattern.anchor][0 if earliest else 1]
        subject = f"the {word} of {mentions[0]} and {mentions[1]}"
        question = self._ask(FACT[(winner.kind, pattern.final)], subject, rng, winner)
        gold = [first, *chain]
        evidence = [self._say(first, key)]
        evidence += [self._say(e, rel) for e, rel in zip(chain, pattern.path, strict=False)]
        evidence.append(self._say(second, key))
        if pattern.final != key:
            evidence[-1 if winner is second else 0] += " " + self._say(winner, pattern.final)
        return question, world.value(winner, pattern.final), gold, evidence

    def _context(self, gold: list[Entity], rng: random.Random) -> list[dict[str, str]]:
        """Gold passages plus distractors: entities sharing a name word first, then of the same kinds."""
        world, want = self.world, self.config.context_distractors
        chosen: dict[int, None] = {}
        gold_ids = {e.id for e in gold}
        similar = sorted({i for e in gold for w in _name_words(e.name) for i in world.by_word.get(w, ())} - gold_ids)
        for i in rng.sample(similar, min(len(similar), (want + 1) // 2)):
            chosen[i] = None
        kinds = [e.kind for e in gold]
        for attempt in range(100 * want):  # then the same kinds, then any (a small world has few provinces)
            if len(chosen) >= want:
                break
            kind = rng.choice(kinds) if attempt < 4 * want else rng.choice(ENTITY_KINDS)
            candidate = rng.choice(world.by_kind[(kind, rng.choice(SPLITS))])
            if candidate not in gold_ids:
                chosen[candidate] = None
        ids = [e.id for e in gold] + list(chosen)
        rng.shuffle(ids)
        return [{"title": world.passages[i].title, "text": world.passages[i].text} for i in ids]


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=6).hexdigest()


def _leaks(answer: str, text: str) -> bool:
    """Whether ``answer`` occurs in ``text`` as whole words (so a guess from the question could find it)."""
    if answer.lower() not in text.lower():  # the common case, without the word split
        return False
    def words(t: str) -> str:
        return " ".join(re.findall(r"[a-z0-9]+", t.lower()))

    return f" {words(answer)} " in f" {words(text)} "


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


_QUESTIONS: SharedValues[SynthQuestions] = SharedValues()


def questions(world: WorldConfig | None = None, config: QuestionConfig | None = None) -> SynthQuestions:
    """The (shared, per process) question generator of one split over one world."""
    world_config, config = world or WorldConfig(), config or QuestionConfig()
    return _QUESTIONS.get((world_config, config), lambda: SynthQuestions(build_world(world_config), config))


def generate_items(world: WorldConfig, config: QuestionConfig, num_items: int) -> list[dict[str, Any]]:
    """The first ``num_items`` questions of a split (what ``AgentR1/SynthHop-v0`` poses)."""
    return questions(world, config).items(num_items)


_WORLD_KNOBS = {"world_seed": "seed", "passages": "passages", "distractors": "distractors",
                "paraphrase": "paraphrase", "test_fraction": "test_fraction"}
_QUESTION_KNOBS = ("split", "hops", "kinds", "context_distractors")


def configs(**knobs: Any) -> tuple[WorldConfig, QuestionConfig]:
    """The two configs from ``AgentR1/SynthHop-v0``'s flat knobs (``world_seed``, ``passages``,
    ``distractors``, ``paraphrase``, ``test_fraction``; ``split``, ``hops``, ``kinds``,
    ``context_distractors``); unknown names raise ``TypeError``."""
    unknown = sorted(set(knobs) - set(_WORLD_KNOBS) - set(_QUESTION_KNOBS))
    if unknown:
        raise TypeError(f"unknown SynthHop knob(s) {', '.join(map(repr, unknown))}; "
                        f"known: {', '.join([*_WORLD_KNOBS, *_QUESTION_KNOBS])}")
    world = WorldConfig(**{field_: knobs[k] for k, field_ in _WORLD_KNOBS.items() if k in knobs})
    return world, QuestionConfig(**{k: knobs[k] for k in _QUESTION_KNOBS if k in knobs})


def corpus_and_questions(seed: int = 0, passages: int = 10_000, num_questions: int = 1_000, *,
                         split: str = "test", **knobs: Any) -> tuple[list[Passage], list[dict[str, Any]]]:
    """A world's corpus and the first ``num_questions`` questions of a split (gold titles, answers).

    For benchmarks and exports; ``knobs`` are ``configs``' (``hops``, ``distractors``, ...).
    """
    world, config = configs(world_seed=seed, passages=passages, split=split, **knobs)
    return list(build_world(world).passages), generate_items(world, config, num_questions)


def team_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A SynthHop item in team QA's form (``answer`` instead of ``answers``)."""
    out = {k: v for k, v in item.items() if k != "answers"}
    out["answer"] = item["answers"][0]
    return out

