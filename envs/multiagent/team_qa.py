"""Team multi-hop QA: a researcher who can search, an answerer who cannot, one shared outcome.

The researcher reads the question, searches (``<search>query</search>``; the results come back to
the researcher only) and passes findings to its teammate with ``<note>...</note>``. The answerer
sees only the question and the notes; it replies ``<answer>...</answer>`` to end the episode, or
``<ask>...</ask>`` to send the researcher a request. Neither can succeed alone: the answerer has no
evidence, the researcher cannot answer.

Rewards are the QA envs' rules (``envs.qa.rewards``: one scorer, one reward table), as sums of
named components per agent (``infos[agent]["reward_components"]``):

* shared ``outcome`` (Agent-R1, as in the QA envs): EM (``outcome_metric``) of the answerer's
  answer if ``format == 1``, else ``format - 1``; ``format`` is the mean of "the answer is well
  presented" and "every search the researcher wrote was well formed". Both agents get it;
* researcher process rewards, the QA envs' table and bounds: ``tool_call_valid`` (first new
  search of the episode), ``retrieval_hit`` (share of gold titles first retrieved),
  ``repeated_query``, ``repeated_call``, ``tool_error`` (empty query, failed search),
  ``invalid_action`` (an unclosed ``<search>``);
* ``idle_turn`` for a turn that does nothing: a researcher turn with neither a search nor a note,
  an answerer turn with neither an answer nor a question (turn-based version only; in the
  parallel version waiting is a move);
* an episode that runs out of steps without an answer scores as unfinished for both agents: the QA
  no-answer outcome, each agent's process bonuses forfeited, and the core's ``unfinished`` penalty.

A retrieval backend that fails (``RetrievalError``) is an infrastructure fault: never charged, counted
in the ``env_error`` metric. Metrics mean what they mean in the QA envs: ``acc`` is cover-EM,
``em`` and ``f1`` the official metrics.

Two interfaces over one game: ``TeamQAEnv`` (AEC, turn-based: the researcher keeps the turn while it
searches, a note hands it over, a question hands it back) and ``TeamQAParallelEnv`` (both agents act
every round; notes and questions arrive the next round). Observations are ``{"text": str}``, the new
text for that agent (PettingZoo's checkers read a ``dtype`` from any observation that is not a dict);
``infos[agent]["messages"]`` holds the agent's whole conversation in chat form.

Data: items ``{"question", "answer", "context": [{"title", "text"}], "supporting_titles"?, "aliases"?}``
(HotpotQA's distractor setting has this shape); by default a generator invents two-hop questions
about a fictional world from the reset seed, so the env runs offline. Search goes through any
``envs.retrieval`` ``Retriever``: by default BM25 over the item's own context, or a shared
retriever (full-corpus setting) passed as ``retriever``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv, ParallelEnv

from envs.core.data import DataError, load_records, require_fields
from envs.core.env import TOOL_PROCESS_RULES, TOOL_REWARD_WEIGHTS, coerce_action
from envs.core.parsing import extract_tag, parse_turn, strip_reasoning
from envs.core.rewards import (
    PROCESS_FORFEIT,
    UNFINISHED,
    ProcessBudget,
    ProcessRule,
    RewardLedger,
    resolve_weights,
    reward_bounds,
)
from envs.core.spaces import UnicodeText
from envs.core.tools import UNAVAILABLE, ToolResult, run_tool, tool
from envs.qa.rewards import (
    OUTCOME_METRICS,
    QA_PROCESS_RULES,
    QA_REWARD_WEIGHTS,
    QAScore,
    new_gold_share,
    norm_query,
    norm_title,
    score_answer,
)
from envs.retrieval.base import Passage, RetrievalError, Retriever, format_passages

RESEARCHER, ANSWERER = "researcher_0", "answerer_0"
AGENTS = (RESEARCHER, ANSWERER)

_IDLE = {"idle_turn": -0.1}  # a turn that does nothing (Agent-R1's invalid-action value)
# The QA envs' table for the researcher (it searches); the answerer shares only the outcome.
DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    RESEARCHER: {**TOOL_REWARD_WEIGHTS, **QA_REWARD_WEIGHTS, **_IDLE},
    ANSWERER: {"outcome": QA_REWARD_WEIGHTS["outcome"], "format": QA_REWARD_WEIGHTS["format"], **_IDLE},
}
PROCESS_RULES: dict[str, dict[str, ProcessRule]] = {
    RESEARCHER: {**TOOL_PROCESS_RULES, **QA_PROCESS_RULES, "idle_turn": ProcessRule()},
    ANSWERER: {"idle_turn": ProcessRule()},
}

RESEARCHER_PROMPT = (
    "You are the researcher in a two-person team answering a question. You can search a document "
    "collection with <search>query</search> (one or more per turn); only you see the results. Your teammate, "
    "the answerer, cannot search and sees only the notes you send with <note>...</note>. Search for the facts "
    "the question needs, then send a note with the evidence. Sending a note passes the turn to the answerer."
)
ANSWERER_PROMPT = (
    "You are the answerer in a two-person team answering a question. You cannot search; your teammate, the "
    "researcher, searches and sends you notes. When the notes are enough, reply with <answer>short answer</answer>. "
    "To ask the researcher for something specific, reply with <ask>your request</ask>."
)

_NOTE_RE = re.compile(r"<note>(.*?)</note>", re.DOTALL)


# --------------------------------------------------------------------------- data
_SYLLABLES = ("ka", "lo", "mi", "ren", "to", "va", "shi", "dor", "el", "un", "bra", "zen", "qua", "ith", "mor", "pel")
_PROFESSIONS = ("painter", "chemist", "architect", "novelist", "engineer", "composer", "botanist")
_INDUSTRIES = ("shipping", "textile", "software", "brewing", "publishing", "aerospace")


def _name(rng: np.random.Generator, parts: int) -> str:
    return "".join(_SYLLABLES[int(rng.integers(len(_SYLLABLES)))] for _ in range(parts)).capitalize()


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def generate_item(rng: np.random.Generator, *, num_distractors: int = 6) -> dict[str, Any]:
    """A two-hop question about an invented world, with its context documents (offline data)."""
    names: set[str] = set()

    def fresh(parts: int) -> str:
        while True:
            n = _name(rng, parts)
            if n not in names:
                names.add(n)
                return n

    countries = [fresh(2) + "ia" for _ in range(3)]
    cities = [(fresh(2), countries[int(rng.integers(len(countries)))]) for _ in range(4)]
    people = [(fresh(2) + " " + fresh(2), cities[int(rng.integers(len(cities)))][0],
               _PROFESSIONS[int(rng.integers(len(_PROFESSIONS)))], int(rng.integers(1820, 1990))) for _ in range(4)]
    companies = [(fresh(2) + " Works", people[int(rng.integers(len(people)))][0],
                  _INDUSTRIES[int(rng.integers(len(_INDUSTRIES)))], int(rng.integers(1850, 2010))) for _ in range(3)]
    city_country = dict(cities)
    docs = {p: f"{p} was {_article(job)} {job} born in {city} in {year}." for p, city, job, year in people}
    docs.update({c: f"{c} is {_article(ind)} {ind} company founded by {founder} in {year}."
                 for c, founder, ind, year in companies})
    docs.update({c: f"{c} is a city in {country}." for c, country in cities})
    if rng.random() < 0.5:
        company, founder, _, _ = companies[int(rng.integers(len(companies)))]
        birth_city = next(city for p, city, _, _ in people if p == founder)
        question, answer, support = f"In which city was the founder of {company} born?", birth_city, [company, founder]
    else:
        person, city, _, _ = people[int(rng.integers(len(people)))]
        question, answer, support = (f"In which country is the city where {person} was born?", city_country[city],
                                     [person, city])
    others = [t for t in docs if t not in support]
    rng.shuffle(others)
    titles = support + others[:num_distractors]
    rng.shuffle(titles)
    return {"question": question, "answer": answer, "supporting_titles": support,
            "context": [{"title": t, "text": docs[t]} for t in titles]}


def prepare_item(item: Mapping[str, Any], *, source: str, row: int | str) -> dict[str, Any]:
    """Check an item and accept HotpotQA's raw shape (``context`` as ``{title, sentences}`` columns or pairs)."""
    item = dict(item)
    require_fields(item, ("question", "answer"), source=source, row=row)
    context = item.get("context") or []
    if isinstance(context, Mapping) and "title" in context:  # HF hotpot_qa: {"title": [...], "sentences": [[...]]}
        context = [{"title": t, "text": " ".join(s)} for t, s in zip(context["title"], context["sentences"], strict=False)]
    elif context and isinstance(context[0], list | tuple):  # original JSON: [[title, [sentences]], ...]
        context = [{"title": t, "text": " ".join(s) if isinstance(s, list) else str(s)} for t, s in context]
    item["context"] = [{"title": str(c.get("title", "")), "text": str(c.get("text", ""))} for c in context]
    if "supporting_titles" not in item and isinstance(item.get("supporting_facts"), Mapping):
        item["supporting_titles"] = sorted(set(item["supporting_facts"].get("title", [])))
    item["answer"] = str(item["answer"])
    return item


# --------------------------------------------------------------------------- the game
@dataclass
class _AgentState:
    messages: list[dict[str, str]]
    pending: list[str] = field(default_factory=list)
    components: dict[str, float] = field(default_factory=dict)
    budget: ProcessBudget = field(default_factory=lambda: ProcessBudget({}, 0.0))


class TeamQAGame:
    """The rules both interfaces share: turns in, per-agent reward components and deliveries out."""

    def __init__(self, *, items: Sequence[Mapping[str, Any]] | None = None, data_path: str | None = None,
                 retriever: Retriever | None = None, top_k: int = 3, max_steps: int = 12,
                 max_searches_per_turn: int = 3, reward_weights: Mapping[str, Mapping[str, float]] | None = None,
                 max_action_chars: int = 16_384, search_timeout: float = 10.0, outcome_metric: str = "em"):
        if items is not None and data_path is not None:
            raise ValueError("pass items or data_path, not both")
        if data_path is not None:
            items = load_records(data_path)
        self.items = None if items is None else [prepare_item(it, source=str(data_path or "items"), row=i)
                                                 for i, it in enumerate(items)]
        if self.items is not None and not self.items:
            raise DataError("team QA: the dataset is empty")
        if max_steps < 2:
            raise ValueError("max_steps must be >= 2 (a note and an answer)")
        self.shared_retriever = retriever
        self.top_k, self.max_steps, self.max_searches_per_turn = int(top_k), int(max_steps), int(max_searches_per_turn)
        self.max_action_chars = int(max_action_chars)
        overrides = reward_weights or {}
        unknown = set(overrides) - set(AGENTS)
        if unknown:
            raise ValueError(f"reward_weights keys must be agent names {AGENTS}, got {sorted(unknown)}")
        self.weights: dict[str, dict[str, float]] = {}
        self.process_caps: dict[str, float] = {}
        for agent in AGENTS:
            given = dict(overrides.get(agent) or {})
            weights = resolve_weights({**DEFAULT_WEIGHTS[agent], UNFINISHED: 0.0, PROCESS_FORFEIT: 1.0}, given)
            # The core's bounds, from this agent's outcome margin (a right answer scores 1, a wrong one 0).
            cap, unfinished = reward_bounds(weights["outcome"])
            if UNFINISHED not in given:
                weights[UNFINISHED] = unfinished
            self.weights[agent], self.process_caps[agent] = weights, cap
        if outcome_metric not in OUTCOME_METRICS:
            raise ValueError(f"outcome_metric must be one of {OUTCOME_METRICS}, got {outcome_metric!r}")
        self.outcome_metric = outcome_metric
        self._search_tool = tool("search", "Search the document collection.",
                                 {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
                                 tag_argument="query", timeout=search_timeout)(self._search)
        self.item: dict[str, Any] = {}
        self.retriever: Retriever | None = None

    # -- episode set-up
    def draw_item(self, rng: np.random.Generator, options: Mapping[str, Any]) -> dict[str, Any]:
        if options.get("item") is not None:
            return prepare_item(options["item"], source="options['item']", row=0)
        if self.items is not None:
            index = int(options["index"]) if options.get("index") is not None else int(rng.integers(len(self.items)))
            return dict(self.items[index % len(self.items)])
        if options.get("index") is not None:
            return generate_item(np.random.default_rng([7, int(options["index"])]))
        return generate_item(rng)

    def start(self, item: dict[str, Any]) -> None:
        self.item = item
        if self.shared_retriever is not None:
            self.retriever = self.shared_retriever
        else:
            from envs.retrieval.bm25 import BM25Retriever

            passages = [Passage(id=str(i), title=c["title"], text=c["text"]) for i, c in enumerate(item["context"])
                        if c["text"].strip()]
            self.retriever = BM25Retriever(passages, persist=False, backend="numpy") if passages else None
        question = f"Question: {item['question']}"
        self.state = {
            RESEARCHER: _AgentState([{"role": "system", "content": RESEARCHER_PROMPT}, {"role": "user", "content": question}]),
            ANSWERER: _AgentState([{"role": "system", "content": ANSWERER_PROMPT},
                                   {"role": "user", "content": question + "\nWait for your teammate's notes."}]),
        }
        for agent in AGENTS:
            self.state[agent].budget = ProcessBudget(PROCESS_RULES[agent], self.process_caps[agent],
                                                     floor=-self.weights[agent]["outcome"])
        self.steps = 0
        self.seen_calls: set[str] = set()
        self.seen_queries: set[str] = set()
        self.retrieved_titles: set[str] = set()  # normalised
        self.counts = Counter()
        self.answer: str | None = None
        self.final_response: str | None = None
        self.done = False

    def ledger(self, agent: str) -> RewardLedger:
        """A ledger for one turn of ``agent``, within its episode's process bounds."""
        return RewardLedger(self.weights[agent], self.state[agent].budget)

    def first_observation(self, agent: str) -> str:
        return self.state[agent].messages[-1]["content"]

    # -- turns
    def _search(self, query: str) -> ToolResult:
        if self.retriever is None:
            return ToolResult("Error: there are no documents to search.", ok=False, status=UNAVAILABLE)
        try:
            passages = self.retriever.search(query, self.top_k)
        except RetrievalError as exc:  # the backend's fault, not the model's
            return ToolResult(f"Error: {exc}. Try again later.", ok=False, status=UNAVAILABLE)
        return ToolResult(format_passages(passages) if passages else "No results.",
                          metadata={"titles": [p.title for p in passages]})

    def researcher_turn(self, text: str, ledger: RewardLedger) -> bool:
        """Run searches, deliver notes; return True when a note hands the turn over."""
        text = coerce_action(text, self.max_action_chars)
        self.state[RESEARCHER].messages.append({"role": "assistant", "content": text})
        body = strip_reasoning(text)
        turn = parse_turn(text, tag_tools={"search": "query"}, json_tools=False, max_calls=self.max_searches_per_turn)
        results = []
        for _error in turn.errors:
            self.counts["syntax_errors"] += 1
            ledger.add("invalid_action")
            results.append("Error: a <search> tag is not closed; write <search>query</search>.")
        for call in turn.tool_calls:
            query = " ".join(str(call.arguments.get("query", "")).split())
            self.counts["searches"] += 1
            if not query:
                ledger.add("tool_error")
                results.append("Error: empty search query.")
                continue
            if call.key() in self.seen_calls:
                ledger.add("repeated_call")
                results.append(f"You already searched for {query!r}; its results are above.")
                continue
            result = run_tool({"search": self._search_tool}, call)
            if result.infra:  # not charged, and trying again is no repeat
                self.counts["env_errors"] += 1
            elif not result.ok:
                self.seen_calls.add(call.key())
                ledger.add("tool_error")
            else:
                self.seen_calls.add(call.key())
                if norm_query(query) in self.seen_queries:
                    ledger.add("repeated_query")
                else:
                    self.seen_queries.add(norm_query(query))
                    ledger.add("tool_call_valid")
                share = new_gold_share(result.metadata.get("titles", ()), self.item.get("supporting_titles") or (),
                                       self.retrieved_titles)
                if share:
                    ledger.add("retrieval_hit", share)
            results.append(f"<information>\n{result.content}\n</information>")
        notes = [n.strip() for n in _NOTE_RE.findall(body) if n.strip()]
        if not turn.tool_calls and not turn.errors and not notes:
            ledger.add("idle_turn")
            results.append("Error: search with <search>query</search> or send a note with <note>...</note>.")
        if results:
            self.state[RESEARCHER].pending.append("\n".join(results))
        for note in notes:
            self.counts["notes"] += 1
            self.state[ANSWERER].pending.append(f"Note from the researcher: {note}")
        return bool(notes)

    def answerer_turn(self, text: str, ledger: RewardLedger, *, waiting_is_valid: bool) -> str:
        """Return ``"answer"``, ``"ask"`` or ``"none"``."""
        text = coerce_action(text, self.max_action_chars)
        self.state[ANSWERER].messages.append({"role": "assistant", "content": text})
        body = strip_reasoning(text)
        answer, ask = extract_tag(body, "answer"), extract_tag(body, "ask")
        if answer is not None:
            self.answer, self.final_response = answer, text
            return "answer"
        if ask:
            self.counts["asks"] += 1
            self.state[RESEARCHER].pending.append(f"The answerer asks: {ask}")
            return "ask"
        if not waiting_is_valid:
            ledger.add("idle_turn")
            self.state[ANSWERER].pending.append("Error: reply with <answer>...</answer> or <ask>...</ask>.")
        return "none"

    def score(self) -> QAScore:
        """The shared outcome, scored by the QA envs' rules (``final_response`` is None without an answer)."""
        golds = [self.item["answer"], *map(str, self.item.get("aliases") or ())]
        return score_answer(self.final_response, golds, tools_ok=self.counts["syntax_errors"] == 0,
                            outcome_metric=self.outcome_metric)

    def outcome(self, score: QAScore | None = None) -> dict[str, float]:
        """Episode metrics: the QA metrics (``acc`` is cover-EM) and the team's own counts."""
        score = score or self.score()
        support = {norm_title(t) for t in self.item.get("supporting_titles") or ()}
        recall = len(support & self.retrieved_titles) / len(support) if support else 0.0
        return {**score.metrics(), "searches": float(self.counts["searches"]), "notes": float(self.counts["notes"]),
                "asks": float(self.counts["asks"]), "steps": float(self.steps), "support_recall": recall,
                "env_error": float(self.counts["env_errors"])}

    def deliver(self, agent: str) -> str:
        """Pop the text waiting for ``agent`` (it becomes that agent's next user message)."""
        state = self.state[agent]
        if not state.pending:
            return ""
        text = "\n".join(state.pending)
        state.pending.clear()
        state.messages.append({"role": "user", "content": text})
        return text

    def record(self, agent: str, ledger: RewardLedger) -> dict[str, float]:
        components = ledger.as_dict()
        totals = self.state[agent].components
        for name, value in components.items():
            totals[name] = totals.get(name, 0.0) + value
        return components

    def demonstration(self) -> dict[str, list[str]]:
        """Golden turns per agent: search each supporting title, note the facts, answer."""
        support = list(self.item.get("supporting_titles") or [c["title"] for c in self.item["context"][:2]])
        texts = {c["title"]: c["text"] for c in self.item["context"]}
        searches = "".join(f"<search>{t}</search>" for t in support)
        note = " ".join(texts.get(t, t) for t in support)
        return {RESEARCHER: [searches, f"<note>{note}</note>"], ANSWERER: [f"<answer>{self.item['answer']}</answer>"]}


# --------------------------------------------------------------------------- shared PettingZoo plumbing
class _TeamQABase:
    metadata: dict[str, Any] = {"render_modes": ["ansi"], "name": "team_qa_v0", "is_parallelizable": False}

    def _init_common(self, render_mode: str | None, game_kwargs: dict[str, Any]) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}")
        self.render_mode = render_mode
        self.game = TeamQAGame(**game_kwargs)
        self.possible_agents = list(AGENTS)
        self._obs_spaces = {a: spaces.Dict({"text": UnicodeText()}) for a in AGENTS}
        self._act_spaces = {a: UnicodeText(max_length=max(1 << 20, self.game.max_action_chars)) for a in AGENTS}
        self._rng = np.random.default_rng()

    def observation_space(self, agent: str) -> spaces.Space:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self._act_spaces[agent]

    def _reset_game(self, seed: int | None, options: Mapping[str, Any] | None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
            for i, agent in enumerate(AGENTS):
                self._act_spaces[agent].seed(seed + i)
                self._obs_spaces[agent].seed(seed + i)
        self.game.start(self.game.draw_item(self._rng, options or {}))

    def _info(self, agent: str, components: Mapping[str, float], metrics: Mapping[str, float] | None) -> dict[str, Any]:
        info: dict[str, Any] = {"messages": list(self.game.state[agent].messages), "reward_components": dict(components)}
        if metrics is not None:
            info["metrics"] = dict(metrics)
            info["episode_reward_components"] = dict(self.game.state[agent].components)
        return info

    def demonstration(self) -> dict[str, list[str]]:
        """Golden turns per agent for the current episode (uses the ground truth)."""
        return self.game.demonstration()

    @property
    def item(self) -> dict[str, Any]:
        return self.game.item

    def _settle(self, ledgers: Mapping[str, RewardLedger], ended: bool, truncated: bool) -> dict[str, float] | None:
        """At the episode's end, credit both agents with the shared outcome; return the episode metrics."""
        if not (ended or truncated):
            return None
        score = self.game.score()
        metrics = {**self.game.outcome(score), "truncated": float(truncated), "unfinished": float(not ended)}
        for agent in self.agents:
            ledger = ledgers[agent]
            ledger.add("outcome", score.outcome)
            ledger.add("format", score.format)
            if not ended:  # out of steps without an answer: the core's unfinished rule, per agent
                bonus = self.game.state[agent].budget.bonus_total
                if bonus > 0:
                    ledger.add(PROCESS_FORFEIT, -bonus)
                ledger.add(UNFINISHED)
        return metrics

    def render(self) -> str | None:
        lines = []
        for agent in AGENTS:
            for m in self.game.state[agent].messages[1:]:
                lines.append(f"[{agent}:{m['role']}] {m['content']}")
        return "\n".join(lines)

    def close(self) -> None:
        self.game.retriever = None


class TeamQAEnv(_TeamQABase, AECEnv):
    """Turn-based (AEC) team QA; see the module docstring for the rules."""

    def __init__(self, *, render_mode: str | None = None, **game_kwargs: Any):
        super().__init__()
        self._init_common(render_mode, game_kwargs)
        self.agents: list[str] = []

    def reset(self, seed: int | None = None, options: dict | None = None) -> None:
        self._reset_game(seed, options)
        self.agents = list(AGENTS)
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)
        self.terminations = dict.fromkeys(self.agents, False)
        self.truncations = dict.fromkeys(self.agents, False)
        self.infos = {a: self._info(a, {}, None) for a in self.agents}
        self._observations = {a: self.game.first_observation(a) for a in self.agents}
        self.agent_selection = RESEARCHER

    def observe(self, agent: str) -> dict[str, str]:
        return {"text": self._observations.get(agent, "")}

    def step(self, action: Any) -> None:
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        game = self.game
        game.steps += 1
        self._cumulative_rewards[agent] = 0.0
        self.rewards = dict.fromkeys(self.agents, 0.0)
        ledgers = {a: game.ledger(a) for a in self.agents}
        if agent == RESEARCHER:
            next_agent = ANSWERER if game.researcher_turn(action, ledgers[RESEARCHER]) else RESEARCHER
            ended = False
        else:
            verdict = game.answerer_turn(action, ledgers[ANSWERER], waiting_is_valid=False)
            ended = verdict == "answer"
            next_agent = RESEARCHER if not ended else ANSWERER
        truncated = not ended and game.steps >= game.max_steps
        metrics = self._settle(ledgers, ended, truncated)
        for a in self.agents:
            components = game.record(a, ledgers[a])
            self.rewards[a] = ledgers[a].total
            self.infos[a] = self._info(a, components, metrics)
        if ended or truncated:
            for a in self.agents:
                self.terminations[a], self.truncations[a] = ended, truncated
                self._observations[a] = game.deliver(a)
        else:
            self._observations[next_agent] = game.deliver(next_agent)
            self.infos[next_agent]["messages"] = list(game.state[next_agent].messages)
        self.agent_selection = next_agent
        self._accumulate_rewards()


class TeamQAParallelEnv(_TeamQABase, ParallelEnv):
    """Simultaneous-move team QA: both agents act each round; messages arrive the next round."""

    def __init__(self, *, render_mode: str | None = None, max_rounds: int = 6, **game_kwargs: Any):
        game_kwargs.setdefault("max_steps", 2 * max_rounds)
        self._init_common(render_mode, game_kwargs)
        self.max_rounds = int(max_rounds)
        self.agents: list[str] = []

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        self._reset_game(seed, options)
        self.agents = list(AGENTS)
        self.round = 0
        observations = {a: {"text": self.game.first_observation(a)} for a in self.agents}
        return observations, {a: self._info(a, {}, None) for a in self.agents}

    def step(self, actions: Mapping[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        game = self.game
        self.round += 1
        ledgers = {a: game.ledger(a) for a in self.agents}
        if RESEARCHER in self.agents:
            game.steps += 1
            game.researcher_turn(actions.get(RESEARCHER, ""), ledgers[RESEARCHER])
        ended = False
        if ANSWERER in self.agents:
            game.steps += 1
            ended = game.answerer_turn(actions.get(ANSWERER, ""), ledgers[ANSWERER], waiting_is_valid=True) == "answer"
        truncated = not ended and self.round >= self.max_rounds
        metrics = self._settle(ledgers, ended, truncated)
        observations, rewards, terminations, truncations, infos = {}, {}, {}, {}, {}
        for a in self.agents:
            components = game.record(a, ledgers[a])
            observations[a] = {"text": game.deliver(a)}
            rewards[a] = ledgers[a].total
            terminations[a], truncations[a] = ended, truncated
            infos[a] = self._info(a, components, metrics)
        if ended or truncated:
            self.agents = []
        return observations, rewards, terminations, truncations, infos
