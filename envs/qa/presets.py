"""Retrieval presets of the QA envs: each paper's search setup as one name (``retrieval_preset=``).

``gym.make("AgentR1/HotpotQA-v0", retrieval_preset="search-r1")`` is the env with Search-R1's
setup; any argument given explicitly wins over the preset's (``retriever_options`` as a whole).
Trainer CLIs take it like any make-kwarg (``--env-kwargs '{"retrieval_preset": "search-r1"}'``, or
``env_kwargs`` in a ``baselines/presets/*.yaml``). Sources are noted per value: [Agent-R1], [Search-R1]
(its code: ``retrieval_server.py`` launch arguments, ``generation.py``, ``nq_search.py``, the
``train_grpo.sh`` recipes), [suite] this project's choice.

* ``agent-r1``: the QA envs' defaults, named: BM25 over the dataset's paragraphs, top-5 passages,
  up to 5 tool turns (Hermes ``<tool_call>`` or ``<search>``), observations in ``<information>``.
* ``search-r1``: dense retrieval with ``intfloat/e5-base-v2`` (``query: ``/``passage: `` prefixes,
  mean pooling, normalised, 256 tokens), an exact faiss ``Flat`` index, top-3 passages, up to 4
  searches, a prompt in Search-R1's tags (``<think>``, ``<search>``, ``<information>``,
  ``<answer>``), EM outcome. Search-R1's own index and corpus load as they are:
  ``index="e5_Flat.index", corpus="wiki-18.jsonl"``; without them the dataset's paragraphs are
  embedded with e5 (weights load on the user's machine).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

SEARCH_R1_PROMPT_TEMPLATE = (
    "Answer the question below. Reason inside <think> and </think> first, and again every time you get new "
    "information. If you lack some knowledge, search for it with <search> query </search>; the top results come "
    "back between <information> and </information>. You may search as many times as you need. When you need no "
    "more knowledge, give the answer inside <answer> and </answer> with no explanation, for example "
    "<answer> Paris </answer>. Question: {question}\n"
)

RETRIEVAL_PRESETS: dict[str, dict[str, Any]] = {
    "agent-r1": {
        "retriever": "bm25",  # [suite] BM25 over the dataset's own paragraphs (corpus="dataset")
        "corpus": "dataset",  # [Agent-R1] the corpus is the dataset's paragraphs
        "top_k": 5,  # [Agent-R1] top-5 passages
        "max_tool_turns": 5,  # [Agent-R1] up to 5 tool turns, then the answer
    },
    "search-r1": {
        "retriever": "dense",  # [Search-R1] dense retrieval (its retrieval_server.py)
        "retriever_options": {
            "embedder": "e5-base-v2",  # [Search-R1] intfloat/e5-base-v2
            "embedder_options": {"max_length": 256},  # [Search-R1] retrieval_query_max_length=256
            "index_type": "Flat",  # [Search-R1] e5_Flat.index: exact inner-product search
        },
        "top_k": 3,  # [Search-R1] retriever.topk=3
        "max_tool_turns": 4,  # [Search-R1] max_turns=4 search turns, then the answer
        "prompt_template": SEARCH_R1_PROMPT_TEMPLATE,  # [Search-R1] its tags and instructions, in our words
        "observation_style": "search-r1",  # [Search-R1] <information>Doc 1(Title: ...) ...</information>
        "passage_chars": None,  # [Search-R1] whole passages (wiki-18 passages are 100 words)
        "outcome_metric": "em",  # [Search-R1] exact match
    },
}


def preset_kwargs(name: str) -> dict[str, Any]:
    """The make-kwargs of a preset (a copy); ``ValueError`` names the presets for an unknown name."""
    if name not in RETRIEVAL_PRESETS:
        raise ValueError(f"unknown retrieval_preset {name!r}; choose one of {', '.join(RETRIEVAL_PRESETS)}")
    preset = RETRIEVAL_PRESETS[name]
    return {k: dict(v) if isinstance(v, Mapping) else v for k, v in preset.items()}


def accepts_retrieval_preset(init: Callable[..., None]) -> Callable[..., None]:
    """Give an env ``__init__`` a ``retrieval_preset`` argument whose values yield to explicit arguments.

    The wrapper sees exactly which arguments the caller gave, so a preset never overrides one (not
    even one given with the default's value); its signature lists ``retrieval_preset`` for the
    registry's argument checks.
    """
    signature = inspect.signature(init)
    params = list(signature.parameters.values())
    extra = inspect.Parameter("retrieval_preset", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="str | None")
    at = next((i for i, p in enumerate(params) if p.kind is p.VAR_KEYWORD), len(params))

    def __init__(self: Any, *args: Any, retrieval_preset: str | None = None, **kwargs: Any) -> None:
        if retrieval_preset is not None:
            kwargs = {**preset_kwargs(retrieval_preset), **kwargs}
        init(self, *args, **kwargs)

    __init__.__signature__ = signature.replace(parameters=[*params[:at], extra, *params[at:]])  # type: ignore[attr-defined]
    __init__.__doc__, __init__.__qualname__, __init__.__module__ = init.__doc__, init.__qualname__, init.__module__
    return __init__

