"""``AgentR1/HotpotQA-v0``, ``AgentR1/2WikiMultihopQA-v0``, ``AgentR1/Musique-v0``: multi-hop QA with search.

Each episode is one question. The model reasons, calls ``search`` (Hermes
``<tool_call>{"name": "search", "arguments": {"query": ...}}</tool_call>`` or ``<search>q</search>``),
reads the top passages in the next observation (``<information>Doc 1(Title: ...) ...</information>``,
as Search-R1), and ends with ``<answer>...</answer>``. By default it may search on 5 turns and must
answer on the 6th (Agent-R1's recipe: ``max_tool_turns=5``, ``top_k=5``).

Rewards (named components; weights via ``reward_weights=``) follow ``envs.qa.rewards``, the rules
team QA shares: process ``tool_call_valid`` (once per episode), ``retrieval_hit`` (share of gold
titles first retrieved), ``repeated_query``, ``invalid_action``, ``tool_error``, ``repeated_call``,
bounded by the core (``envs.core.rewards``); outcome (Agent-R1) ``score if format == 1 else
format - 1``; an episode that ends without an answer also forfeits its process bonuses and pays
``unfinished``.

A retrieval backend that is down (HTTP server unreachable) is reported to the model as an
observation and costs no penalty: it is not the model's fault (it counts in ``env_error``). Final
metrics: ``acc`` (cover-EM), ``em``, ``f1``, ``format``, ``turns`` (tool turns),
``retrieval_recall`` (when gold titles are known).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from envs.core.data import DataError, DataSource
from envs.core.env import Item, ItemListEnv
from envs.core.parsing import ToolCall
from envs.core.registry import reject_unknown_kwargs
from envs.core.rewards import ProcessRule, RewardLedger
from envs.core.shared import SharedValues
from envs.core.tools import BAD_ARGUMENTS, UNAVAILABLE, UNKNOWN_TOOL, Tool, ToolError, ToolResult
from envs.qa.datasets import (
    HF_SOURCES,
    SAMPLE_CORPUS_PATH,
    SAMPLE_PATH,
    check_hub_source,
    load_items,
    local_path,
    normalize_item,
)
from envs.qa.presets import accepts_retrieval_preset
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
from envs.retrieval.corpus import passages_from_context, passages_from_items

logger = logging.getLogger(__name__)

MAX_QUERY_CHARS = 1000

DEFAULT_PROMPT_TEMPLATE = (
    "Answer the question below. You can search a knowledge base up to {max_searches} times. To search, write "
    '<tool_call>{"name": "search", "arguments": {"query": "your query"}}</tool_call> or <search>your query</search>; '
    "the top {top_k} results come back between <information> and </information>. Think step by step inside "
    "<think> and </think> before each search and before answering. When you know the answer, give only the "
    "answer, as short as possible, inside <answer> and </answer>, for example <answer>Paris</answer>.\n"
    "Question: {question}"
)

_CORPUS_SENTINELS = ("dataset", "distractor", "sample")
_DISTRACTOR_CACHE_SIZE = 512


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
# corpus='dataset' backends, keyed by the dataset (so instances after the first neither collect nor hash passages)
_DATASET_CORPORA: SharedValues[Retriever] = SharedValues()


def qa_data_source(dataset: str, *, data_path: str | Path | None = None, split: str | None = None,
                   hf_name: str | None = None, hf_config: str | None = None,
                   max_items: int | None = None) -> DataSource:
    """The ``DataSource`` of a QA env: ``load_items`` with these arguments, read on first need."""
    if max_items is not None and max_items < 1:
        raise ValueError(f"max_items must be >= 1, got {max_items}")
    if data_path is None:
        check_hub_source(dataset, hf_name)
        default_name, default_config, _ = HF_SOURCES.get(dataset, (None, None, None))
        name = f"{hf_name or default_name} ({hf_config or default_config})"
        files: tuple[str, ...] = ()
    else:
        name, files = str(data_path), (str(local_path(data_path)),)
    load = functools.partial(load_items, dataset, data_path=data_path, split=split, hf_name=hf_name,
                             hf_config=hf_config, max_items=max_items)
    key = ("qa", dataset, None if data_path is None else str(local_path(data_path)), split, hf_name, hf_config,
           max_items)
    return DataSource(name=name, key=key, load=load, files=files)


class QAEnv(ItemListEnv):
    """Multi-hop QA with a search tool (see the module docstring).

    Data: ``data_path`` (a local file or directory in any supported format, or ``"sample"``), else
    the Hub split of the id's dataset (``split``, ``hf_name``, ``hf_config``), or ``items``. Nothing
    is read at construction; the questions load on the first reset that draws one (an index or a
    random draw), once per process for every instance with the same data arguments.
    Retrieval: ``corpus="distractor"`` (each question's own paragraphs), ``retriever="http"``, an
    ``index=`` or a ``corpus=`` file need no dataset, so they serve ``options={"item": ...}`` with
    none loaded; ``corpus="dataset"`` (the default) indexes the dataset's paragraphs and so loads it
    on the first reset. Shared backends are set up on the first reset, before the episode starts,
    once per process per configuration.
    """

    dataset: ClassVar[str] = "hotpotqa"
    default_reward_weights: ClassVar[dict[str, float]] = dict(QA_REWARD_WEIGHTS)
    process_rules: ClassVar[dict[str, ProcessRule]] = dict(QA_PROCESS_RULES)

    @accepts_retrieval_preset  # retrieval_preset="search-r1" / "agent-r1": envs.qa.presets
    def __init__(self, *, data_path: str | Path | None = None, items: Sequence[Mapping[str, Any]] | None = None,
                 split: str | None = None, hf_name: str | None = None, hf_config: str | None = None,
                 max_items: int | None = None, retriever: str | Retriever = "bm25", retriever_url: str | None = None,
                 corpus: str | Path = "dataset", index: str | Path | None = None, cache_dir: str | Path | None = None,
                 retriever_options: Mapping[str, Any] | None = None, top_k: int = 5, max_tool_turns: int = 5,
                 max_turns: int | None = None, max_observation_chars: int = 6000, passage_chars: int | None = 600,
                 prompt_template: str | None = None, outcome_metric: str = "em", require_think: bool = False,
                 observation_style: str = "search-r1", search_timeout: float | None = None,
                 http_timeout: float = 10.0, http_retries: int = 2, **kwargs: Any):
        reject_unknown_kwargs(self, QAEnv, kwargs, internal=("data",))
        if not 1 <= top_k <= 100:
            raise ValueError(f"top_k must be in 1..100, got {top_k}")
        if max_tool_turns < 0:
            raise ValueError(f"max_tool_turns must be >= 0, got {max_tool_turns}")
        if outcome_metric not in OUTCOME_METRICS:
            raise ValueError(f"outcome_metric must be one of {OUTCOME_METRICS}, got {outcome_metric!r}")
        if observation_style not in ("search-r1", "hermes"):
            raise ValueError(f"observation_style must be 'search-r1' or 'hermes', got {observation_style!r}")
        self.top_k = int(top_k)
        self.passage_chars = passage_chars
        self.prompt_template = prompt_template or DEFAULT_PROMPT_TEMPLATE
        self.outcome_metric = outcome_metric
        self.require_think = bool(require_think)
        self.observation_style = observation_style
        data = None
        if items is None:
            data = self.data_source(data_path=data_path, split=split, hf_name=hf_name, hf_config=hf_config,
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
        super().__init__(items, data=data, tools=[search], max_turns=max_turns,
                         max_observation_chars=max_observation_chars, **kwargs)
        self.corpus_mode = "distractor" if str(corpus) == "distractor" else "shared"
        self._retriever: Retriever | None = None  # the shared backend, once set up
        self._retriever_setup: Callable[[], Retriever] | None = None  # how to set it up on the first reset
        self._active: Retriever | None = None
        options = dict(retriever_options or {})
        if not isinstance(retriever, str):
            if not callable(getattr(retriever, "search_many", None)):
                raise TypeError("retriever must be a backend name (bm25, pyserini, http, dense, hybrid) or an object "
                                "with search/search_many")
            self._retriever = retriever
        elif self.corpus_mode == "distractor":
            if retriever != "bm25":
                raise ValueError("corpus='distractor' (each question's own paragraphs) runs on retriever='bm25'")
        elif retriever == "http":  # a client object: no I/O until the first search
            from envs.retrieval.factory import shared_retriever

            self._retriever = shared_retriever("http", url=retriever_url,
                                               **{"timeout": http_timeout, "retries": http_retries, **options})
        else:
            from envs.retrieval.factory import BACKENDS

            if retriever not in BACKENDS:
                raise ValueError(f"unknown retriever backend {retriever!r}; choose one of {', '.join(BACKENDS)}")
            # Every search needs the corpus or index, whatever the items: a wrong path (or a misspelt
            # sentinel) fails here, with a stat; reading it waits for the first reset.
            if index is not None and not Path(index).expanduser().exists():
                raise DataError(f"index {str(index)!r} does not exist")
            if index is None and str(corpus) not in _CORPUS_SENTINELS and not Path(corpus).expanduser().exists():
                raise DataError(f"corpus must be one of {_CORPUS_SENTINELS} or a JSONL file; {str(corpus)!r} does not exist")
            self._retriever_setup = functools.partial(self._shared, retriever, corpus, index, cache_dir, options)
        self._active = self._retriever
        bound = getattr(self._retriever, "max_call_seconds", None)
        if not timeout_given and isinstance(bound, int | float):
            # The client gives up (an "unavailable" observation, no penalty) before the tool's hard
            # timeout would charge the model a tool_error for a server it cannot fix.
            search.timeout = max(search.timeout, float(bound) + 5.0)

    # ------------------------------------------------------------------ retrieval setup
    def _shared(self, backend: str, corpus: str | Path, index: str | Path | None, cache_dir: str | Path | None,
                options: dict[str, Any]) -> Retriever:
        """The process-wide backend for this configuration (run on the first reset, not at construction)."""
        from envs.retrieval.factory import shared_retriever

        if index is not None:  # with a corpus file too for a prebuilt faiss file (Search-R1's index + corpus)
            corpus_path = None if str(corpus) in _CORPUS_SENTINELS else Path(corpus).expanduser()
            return shared_retriever(backend, index=index, corpus_path=corpus_path, cache_dir=cache_dir, **options)
        if str(corpus) == "dataset":
            # The dataset's paragraphs: the only setting that needs the dataset itself. Keyed by the
            # dataset, so later instances skip collecting and hashing the passages again.
            if self._data_source is None:  # items given: shared_retriever still shares by corpus fingerprint
                return self._dataset_retriever(backend, cache_dir, options)
            key = (self._data_source.cache_key(), backend, str(cache_dir), repr(sorted(options.items())))
            return _DATASET_CORPORA.get(key, lambda: self._dataset_retriever(backend, cache_dir, options))
        path = SAMPLE_CORPUS_PATH if str(corpus) == "sample" else Path(corpus).expanduser()
        if not path.exists():
            raise DataError(f"corpus must be one of {_CORPUS_SENTINELS} or a JSONL file; {str(corpus)!r} does not exist")
        return shared_retriever(backend, corpus_path=path, cache_dir=cache_dir, **options)

    def data_source(self, *, data_path: str | Path | None, split: str | None, hf_name: str | None,
                    hf_config: str | None, max_items: int | None) -> DataSource:
        """Where the questions come from when no ``items`` are given (generated datasets override it)."""
        return qa_data_source(self.dataset, data_path=data_path, split=split, hf_name=hf_name, hf_config=hf_config,
                              max_items=max_items)

    def corpus_passages(self) -> list[Passage]:
        """What ``corpus="dataset"`` indexes: the questions' context paragraphs, de-duplicated (Agent-R1's recipe)."""
        return passages_from_items(self.items)

    def _dataset_retriever(self, backend: str, cache_dir: str | Path | None, options: dict[str, Any]) -> Retriever:
        from envs.retrieval.factory import shared_retriever

        passages = self.corpus_passages()
        if not passages:
            raise DataError(f"{self.dataset}: these questions have no context paragraphs, so corpus='dataset' has "
                            "nothing to index; pass corpus='path/to/corpus.jsonl', index=..., or "
                            "retriever='http' with retriever_url=...")
        return shared_retriever(backend, passages=passages, cache_dir=cache_dir, **options)

    def _ensure_retriever(self) -> None:
        if self._retriever is None and self._retriever_setup is not None:
            self._retriever = self._retriever_setup()
            self._retriever_setup = None

    # ------------------------------------------------------------------ data
    def prepare_item(self, item: Item, *, source: str, row: int | str | None) -> Item:
        return normalize_item(item, source=source, row=row)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        self._ensure_retriever()  # before the episode, so no search's timeout pays for loading an index
        prompt, info = super().reset(seed=seed, options=options)
        if self.corpus_mode == "distractor" and self._retriever is None:
            self._active = _DISTRACTORS.get(self.item)
        else:
            self._active = self._retriever
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
            key = norm_query(str(result.metadata.get("query", "")))
            queries = extra.setdefault("queries", set())
            if key in queries:
                ledger.add("repeated_query")
            else:
                queries.add(key)
                ledger.add("tool_call_valid")  # the core's rules pay it once per episode
            share = new_gold_share(result.metadata.get("titles", ()), self.item.get("supporting_titles") or (),
                                   extra.setdefault("retrieved", set()))
            if share:
                ledger.add("retrieval_hit", share)
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
    def _tools_ok(self) -> bool:
        """Every tool call so far was well formed (Agent-R1's second format check)."""
        state = self._state
        assert state is not None
        return state.invalid_actions == 0 and state.extra.get("syntax_errors", 0) == 0

    def _retrieval_metrics(self, item: Item) -> dict[str, float]:
        state = self._state
        assert state is not None
        out = {"searches": float(state.extra.get("searches", 0)),
               "retrieval_unavailable": float(state.extra.get("unavailable", 0))}
        gold = {norm_title(t) for t in item.get("supporting_titles") or ()}
        if gold:
            out["retrieval_recall"] = len(gold & state.extra.get("retrieved", set())) / len(gold)
        return out

    def score_final(self, item: Item, response: str, ledger: RewardLedger) -> dict[str, float]:
        return self._book(score_answer(response, item["answers"], tools_ok=self._tools_ok(),
                                       outcome_metric=self.outcome_metric, require_think=self.require_think),
                          item, ledger)

    def score_unfinished(self, item: Item, ledger: RewardLedger) -> dict[str, float]:
        return self._book(score_answer(None, item["answers"], tools_ok=self._tools_ok(),
                                       outcome_metric=self.outcome_metric), item, ledger)

    def _book(self, score: QAScore, item: Item, ledger: RewardLedger) -> dict[str, float]:
        ledger.add("outcome", score.outcome)
        ledger.add("format", score.format)
        return {**score.metrics(), **self._retrieval_metrics(item)}

    def outcome_margin(self) -> float:
        """A correct answer scores 1 and a wrong one 0 (``format`` is the same for both)."""
        return self.reward_weights["outcome"]

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
                seen = {norm_title(p.title) for p in self._active.search_many([first], self.top_k)[0]}
        candidates = [t for t in titles if norm_title(t) not in seen] + titles[1:] + titles + [item["answers"][0]]
        for query in candidates:
            query = query.replace("<", " ").replace(">", " ").strip()
            if query and norm_query(query) != norm_query(first):
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
