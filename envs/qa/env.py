"""``AgentR1/HotpotQA-v0``, ``AgentR1/2WikiMultihopQA-v0``, ``AgentR1/Musique-v0``: multi-hop QA with search.

Each episode is one question. The model reasons, calls ``search`` (Hermes
``<tool_call>{"name": "search", "arguments": {"query": ...}}</tool_call>`` or ``<search>q</search>``),
reads the top passages in the next observation (``<information>Doc 1(Title: ...) ...</information>``,
as Search-R1), and ends with ``<answer>...</answer>``. By default it may search on 5 turns and must
answer on the 6th (Agent-R1's recipe: ``max_tool_turns=5``, ``top_k=5``).

Rewards (named components; weights via ``reward_weights=``):

* process: ``tool_call_valid`` (a search that ran and was not a repeat; at most once per turn, so
  many searches in one turn earn no more than one), ``invalid_action``
  (unparsable call), ``tool_error`` (unknown tool, bad arguments, empty query, timeout),
  ``repeated_call`` (the identical call again), ``repeated_query`` (the same query up to case,
  punctuation and spacing), ``retrieval_hit`` (the share of the gold supporting titles that this
  search retrieved for the first time, where the dataset names them);
* outcome (Agent-R1): ``outcome = score if format == 1 else format - 1`` where ``score`` is EM, F1
  or cover-EM (``outcome_metric``) and ``format`` is the mean of two checks: the answer is well
  presented (one non-empty ``<answer>`` block after any reasoning; with ``require_think`` also a
  ``<think>`` block) and every tool call in the episode was well formed. ``format`` is also its own
  component (weight 0 by default, since the outcome already gates on it).

A retrieval backend that is down (HTTP server unreachable) is reported to the model as an
observation and costs no penalty: it is not the model's fault. Final metrics: ``acc`` (cover-EM),
``em``, ``f1``, ``format``, ``turns`` (tool turns), ``retrieval_recall`` (when gold titles are known).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from envs.core.data import DataError
from envs.core.env import Item, ItemListEnv
from envs.core.parsing import ToolCall, count_think_blocks, extract_tag, strip_reasoning
from envs.core.rewards import ProcessRule, RewardLedger
from envs.core.tools import BAD_ARGUMENTS, UNKNOWN_TOOL, Tool, ToolError, ToolResult
from envs.qa.datasets import SAMPLE_CORPUS_PATH, SAMPLE_PATH, load_items, normalize_item
from envs.qa.scoring import answer_scores
from envs.retrieval.base import Passage, RetrievalError, Retriever, format_passages
from envs.retrieval.corpus import passages_from_context, passages_from_items

logger = logging.getLogger(__name__)

UNAVAILABLE = "unavailable"  # ToolResult status: the backend could not answer (not the model's fault)
MAX_QUERY_CHARS = 1000

DEFAULT_PROMPT_TEMPLATE = (
    "Answer the question below. You can search a knowledge base up to {max_searches} times. To search, write "
    '<tool_call>{"name": "search", "arguments": {"query": "your query"}}</tool_call> or <search>your query</search>; '
    "the top {top_k} results come back between <information> and </information>. Think step by step inside "
    "<think> and </think> before each search and before answering. When you know the answer, give only the "
    "answer, as short as possible, inside <answer> and </answer>, for example <answer>Paris</answer>.\n"
    "Question: {question}"
)

_OUTCOME_METRICS = ("em", "f1", "acc")
_CORPUS_SENTINELS = ("dataset", "distractor", "sample")
_DISTRACTOR_CACHE_SIZE = 512


def _norm_title(title: str) -> str:
    return " ".join(title.casefold().split())


def _norm_query(query: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", query.casefold()).split())


def render_template(template: str, **values: Any) -> str:
    """Fill ``{name}`` placeholders by plain replacement (templates contain JSON braces)."""
    for key, value in values.items():
        template = template.replace("{" + key + "}", str(value))
    return template


class _DistractorRetrievers:
    """Small in-memory BM25 indexes over each question's own context paragraphs (LRU-cached)."""

    def __init__(self, size: int = _DISTRACTOR_CACHE_SIZE):
        self._cache: collections.OrderedDict[str, Retriever] = collections.OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, item: Mapping[str, Any]) -> Retriever:
        from envs.retrieval.bm25 import BM25Retriever
        from envs.retrieval.corpus import corpus_fingerprint

        passages = passages_from_context(item.get("context") or (), id_prefix=f"{item['id']}-")
        if not passages:
            raise DataError(f"question {item['id']!r} has no context paragraphs; corpus='distractor' needs them")
        key = corpus_fingerprint(passages)
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                return found
        retriever = BM25Retriever(passages, persist=False, backend="numpy")
        with self._lock:
            self._cache[key] = retriever
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return retriever


_DISTRACTORS = _DistractorRetrievers()


class QAEnv(ItemListEnv):
    """Multi-hop QA with a search tool (see the module docstring)."""

    dataset: ClassVar[str] = "hotpotqa"
    default_reward_weights: ClassVar[dict[str, float]] = {
        "outcome": 1.0,
        "format": 0.0,
        "retrieval_hit": 0.1,
        "repeated_query": -0.05,
    }
    # retrieval_hit is the share of gold titles found: at most all of them, once.
    process_rules: ClassVar[dict[str, ProcessRule]] = {"retrieval_hit": ProcessRule(per_episode=1.0),
                                                       "repeated_query": ProcessRule()}

    def __init__(self, *, data_path: str | Path | None = None, items: Sequence[Mapping[str, Any]] | None = None,
                 split: str | None = None, hf_name: str | None = None, hf_config: str | None = None,
                 max_items: int | None = None, retriever: str | Retriever = "bm25", retriever_url: str | None = None,
                 corpus: str | Path = "dataset", index: str | Path | None = None, cache_dir: str | Path | None = None,
                 retriever_options: Mapping[str, Any] | None = None, top_k: int = 5, max_tool_turns: int = 5,
                 max_turns: int | None = None, max_observation_chars: int = 6000, passage_chars: int | None = 600,
                 prompt_template: str | None = None, outcome_metric: str = "em", require_think: bool = False,
                 observation_style: str = "search-r1", search_timeout: float | None = None,
                 http_timeout: float = 10.0, http_retries: int = 2, **kwargs: Any):
        if not 1 <= top_k <= 100:
            raise ValueError(f"top_k must be in 1..100, got {top_k}")
        if max_tool_turns < 0:
            raise ValueError(f"max_tool_turns must be >= 0, got {max_tool_turns}")
        if outcome_metric not in _OUTCOME_METRICS:
            raise ValueError(f"outcome_metric must be one of {_OUTCOME_METRICS}, got {outcome_metric!r}")
        if observation_style not in ("search-r1", "hermes"):
            raise ValueError(f"observation_style must be 'search-r1' or 'hermes', got {observation_style!r}")
        self.top_k = int(top_k)
        self.passage_chars = passage_chars
        self.prompt_template = prompt_template or DEFAULT_PROMPT_TEMPLATE
        self.outcome_metric = outcome_metric
        self.require_think = bool(require_think)
        self.observation_style = observation_style
        if items is None:
            items = load_items(self.dataset, data_path=data_path, split=split, hf_name=hf_name, hf_config=hf_config,
                               max_items=max_items)
        elif max_items is not None:
            items = list(items)[:max_items]
        if max_turns is None:
            max_turns = max_tool_turns + 1  # N search turns, then the answer turn
        timeout_given = search_timeout is not None
        if search_timeout is None:
            search_timeout = 30.0  # raised below to cover an HTTP client's own retries and backoff
        search = Tool(
            name="search",
            description="Search the knowledge base; returns the top passages (title and text) for the query.",
            parameters={"type": "object", "properties": {"query": {"type": "string", "description": "the search query"}},
                        "required": ["query"], "additionalProperties": False},
            fn=self._search, tag_argument="query", timeout=float(search_timeout),
            max_output_chars=max_observation_chars,
        )
        super().__init__(items, tools=[search], max_turns=max_turns, max_observation_chars=max_observation_chars,
                         **kwargs)
        self.corpus_mode = "distractor" if str(corpus) == "distractor" else "shared"
        self._retriever: Retriever | None = None
        self._active: Retriever | None = None
        options = dict(retriever_options or {})
        if not isinstance(retriever, str):
            if not callable(getattr(retriever, "search_many", None)):
                raise TypeError("retriever must be 'bm25', 'pyserini', 'http' or an object with search/search_many")
            self._retriever = retriever
        elif self.corpus_mode == "distractor":
            if retriever != "bm25":
                raise ValueError("corpus='distractor' (each question's own paragraphs) runs on retriever='bm25'")
        else:
            self._retriever = self._shared(retriever, retriever_url, corpus, index, cache_dir, options,
                                           http_timeout, http_retries)
        self._active = self._retriever
        bound = getattr(self._retriever, "max_call_seconds", None)
        if not timeout_given and isinstance(bound, int | float):
            # The client gives up (an "unavailable" observation, no penalty) before the tool's hard
            # timeout would charge the model a tool_error for a server it cannot fix.
            search.timeout = max(search.timeout, float(bound) + 5.0)

    # ------------------------------------------------------------------ retrieval setup
    def _shared(self, backend: str, url: str | None, corpus: str | Path, index: str | Path | None,
                cache_dir: str | Path | None, options: dict[str, Any], http_timeout: float,
                http_retries: int) -> Retriever:
        from envs.retrieval.factory import shared_retriever

        if backend == "http":
            return shared_retriever("http", url=url, **{"timeout": http_timeout, "retries": http_retries, **options})
        if index is not None:
            return shared_retriever(backend, index=index, **options)
        if str(corpus) == "dataset":
            passages: list[Passage] = passages_from_items(self.items)
            if not passages:
                raise DataError(f"{self.dataset}: these questions have no context paragraphs, so corpus='dataset' has "
                                "nothing to index; pass corpus='path/to/corpus.jsonl', index=..., or "
                                "retriever='http' with retriever_url=...")
            return shared_retriever(backend, passages=passages, cache_dir=cache_dir, **options)
        path = SAMPLE_CORPUS_PATH if str(corpus) == "sample" else Path(corpus).expanduser()
        if not path.exists():
            raise DataError(f"corpus must be one of {_CORPUS_SENTINELS} or a JSONL file; {str(corpus)!r} does not exist")
        return shared_retriever(backend, corpus_path=path, cache_dir=cache_dir, **options)

    # ------------------------------------------------------------------ data
    def prepare_item(self, item: Item, *, source: str, row: int | str) -> Item:
        return normalize_item(item, source=source, row=row)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        prompt, info = super().reset(seed=seed, options=options)
        if self.corpus_mode == "distractor" and self._retriever is None:
            self._active = _DISTRACTORS.get(self.item)
        assert self._state is not None
        self._state.extra.update({"queries": set(), "retrieved": set(), "syntax_errors": 0, "searches": 0,
                                  "unavailable": 0, "last_call_notice": False})
        return prompt, info

    def build_prompt(self, item: Item) -> str:
        return render_template(self.prompt_template, question=item["question"], top_k=self.top_k,
                               max_searches=max(0, self.max_turns - 1))

    # ------------------------------------------------------------------ the search tool
    def _search(self, query: str) -> ToolResult:
        query = query.strip()[:MAX_QUERY_CHARS]
        if not query:
            raise ToolError("the search query is empty")
        retriever = self._active
        if retriever is None:
            return ToolResult("Error: no retrieval backend is configured.", ok=False, status=UNAVAILABLE)
        try:
            hits = retriever.search_many([query], self.top_k)[0]
        except RetrievalError as exc:
            logger.warning("retrieval failed: %s", exc)
            return ToolResult(f"Error: {exc}. Try again later or answer from what you know.", ok=False,
                              status=UNAVAILABLE)
        content = format_passages(hits, max_chars_per_passage=self.passage_chars) if hits else "No results found."
        return ToolResult(content, metadata={"query": query, "titles": [p.title for p in hits],
                                             "ids": [p.id for p in hits]})

    def on_tool_result(self, call: ToolCall, result: ToolResult, ledger: RewardLedger) -> None:
        extra = self._state.extra if self._state is not None else {}
        if result.ok:
            extra["searches"] = extra.get("searches", 0) + 1
            key = _norm_query(str(result.metadata.get("query", "")))
            queries = extra.setdefault("queries", set())
            if key in queries:
                ledger.add("repeated_query")
            else:
                queries.add(key)
                ledger.add("tool_call_valid")  # the core's rules pay it once per episode
            gold = {_norm_title(t) for t in self.item.get("supporting_titles") or ()}
            retrieved = extra.setdefault("retrieved", set())
            found = {_norm_title(t) for t in result.metadata.get("titles", ())}
            new_hits = (found & gold) - retrieved
            retrieved |= found
            if gold and new_hits:
                ledger.add("retrieval_hit", len(new_hits) / len(gold))
        else:
            if result.status in (UNKNOWN_TOOL, BAD_ARGUMENTS):
                extra["syntax_errors"] = extra.get("syntax_errors", 0) + 1
            ledger.add("tool_error")

    def on_infrastructure_fault(self, call: ToolCall, result: ToolResult) -> None:
        if self._state is not None and result.status == UNAVAILABLE:
            self._state.extra["unavailable"] = self._state.extra.get("unavailable", 0) + 1

    def format_tool_result(self, call: ToolCall, result: ToolResult) -> str:
        content = result.content
        state = self._state
        if state is not None and state.turn >= self.max_turns - 1 and not state.extra.get("last_call_notice"):
            state.extra["last_call_notice"] = True
            content += "\n(That was your last search. Now give your final answer inside <answer> and </answer>.)"
        if self.observation_style == "hermes":
            return f"<tool_response>\n{content}\n</tool_response>"
        return f"<information>{content}</information>"

    # ------------------------------------------------------------------ scoring
    def _format_checks(self, response: str | None) -> tuple[float, float, str | None]:
        state = self._state
        assert state is not None
        tools_ok = float(state.invalid_actions == 0 and state.extra.get("syntax_errors", 0) == 0)
        if response is None:
            return 0.0, tools_ok, None
        body = strip_reasoning(response)
        answer = extract_tag(body, "answer")
        answer_ok = (answer is not None and bool(answer) and body.count("<answer>") == 1
                     and body.count("</answer>") == 1 and "<tool_call>" not in body)
        if self.require_think and count_think_blocks(response) < 1:
            answer_ok = False
        return float(answer_ok), tools_ok, answer

    def _retrieval_metrics(self, item: Item) -> dict[str, float]:
        state = self._state
        assert state is not None
        out = {"searches": float(state.extra.get("searches", 0)),
               "retrieval_unavailable": float(state.extra.get("unavailable", 0))}
        gold = {_norm_title(t) for t in item.get("supporting_titles") or ()}
        if gold:
            out["retrieval_recall"] = len(gold & state.extra.get("retrieved", set())) / len(gold)
        return out

    def score_final(self, item: Item, response: str, ledger: RewardLedger) -> dict[str, float]:
        answer_ok, tools_ok, answer = self._format_checks(response)
        fmt = 0.5 * answer_ok + 0.5 * tools_ok
        scores = answer_scores(answer, item["answers"])
        outcome = scores[self.outcome_metric] if fmt == 1.0 else fmt - 1.0
        ledger.add("outcome", outcome)
        ledger.add("format", fmt)
        return {**scores, "format": fmt, "answered": float(answer is not None), **self._retrieval_metrics(item)}

    def score_unfinished(self, item: Item, ledger: RewardLedger) -> dict[str, float]:
        _, tools_ok, _ = self._format_checks(None)
        fmt = 0.5 * tools_ok
        ledger.add("outcome", fmt - 1.0)
        ledger.add("format", fmt)
        return {"em": 0.0, "f1": 0.0, "acc": 0.0, "format": fmt, "answered": 0.0, **self._retrieval_metrics(item)}

    # ------------------------------------------------------------------ golden actions
    def demonstration(self) -> list[str]:
        """Search the question, then a bridge entity from the supporting facts, then answer the gold."""
        item = self.item
        gold = item["answers"][0]
        final = f"<think>The passages give the answer.</think>\n<answer>{gold}</answer>"
        searches = max(0, self.max_turns - 1)
        if searches == 0:
            return [final]
        first = item["question"]
        actions = [f'<think>I should look this up.</think>\n<tool_call>{{"name": "search", "arguments": '
                   f'{{"query": {_json_str(first)}}}}}</tool_call>']
        if searches >= 2:
            second = self._bridge_query(item, first)
            if second is not None:
                actions.append(f"<think>Now the bridge entity.</think>\n<search>{second}</search>")
        return [*actions, final]

    def _bridge_query(self, item: Item, first: str) -> str | None:
        titles = list(item.get("supporting_titles") or ())
        seen: set[str] = set()
        if self._active is not None:
            with contextlib.suppress(RetrievalError):
                seen = {_norm_title(p.title) for p in self._active.search_many([first], self.top_k)[0]}
        candidates = [t for t in titles if _norm_title(t) not in seen] + titles[1:] + titles + [item["answers"][0]]
        for query in candidates:
            query = query.replace("<", " ").replace(">", " ").strip()
            if query and _norm_query(query) != _norm_query(first):
                return query
        return None


def _json_str(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)


class HotpotQAEnv(QAEnv):
    """HotpotQA (``hotpotqa/hotpot_qa``, distractor config, validation split by default)."""

    dataset = "hotpotqa"


class TwoWikiMultihopQAEnv(QAEnv):
    """2WikiMultihopQA (``corag/multihopqa`` config ``2wikimultihopqa``, with answer aliases)."""

    dataset = "2wikimultihopqa"


class MusiqueEnv(QAEnv):
    """MuSiQue (``corag/multihopqa`` config ``musique``, with answer aliases)."""

    dataset = "musique"


__all__ = ["DEFAULT_PROMPT_TEMPLATE", "SAMPLE_PATH", "HotpotQAEnv", "MusiqueEnv", "QAEnv", "TwoWikiMultihopQAEnv"]
