"""``AgentR1/SynthHop-v0``: multi-hop QA with search over a generated fictional world (``envs.qa.synth``).

The QA env (``envs.qa.env.QAEnv``) with generated questions and corpus: the same prompt, search
tool, observation format, scorer and reward table as ``AgentR1/HotpotQA-v0``, the same retrieval
backends (``retriever=``), nothing to download. ``corpus="dataset"`` (the default) searches the
whole world (10,000 passages at the default size); ``corpus="distractor"`` each question's gold
passages plus ``context_distractors`` look-alikes (HotpotQA's distractor setting).

Knobs: ``split`` (``"train"`` / ``"test"``: disjoint questions about disjoint entities),
``hops`` (1, 2, 3 or a sequence of them: a curriculum picks 1 then 2), ``kinds`` (single, bridge,
compositional, comparison), ``world_seed``, ``passages`` (corpus size), ``distractors`` (how
often names share words), ``paraphrase`` (share of alternative phrasings), ``test_fraction``,
``num_items`` (items per split; item ``i`` is a pure function of the knobs and ``i``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from envs.core.data import DataSource
from envs.core.env import Item
from envs.core.registry import reject_unknown_kwargs
from envs.qa.env import QAEnv
from envs.qa.synth import HOPS, QUESTION_KINDS, build_world, configs, generate_items
from envs.retrieval.base import Passage

DEFAULT_ITEMS = {"train": 10_000, "test": 1_000}
# Item fields the QA item form does not have, kept so episodes can be grouped and demonstrated.
_SYNTH_FIELDS = ("hops", "split", "evidence")


class SynthHopEnv(QAEnv):
    """Multi-hop QA over a generated world (module docstring); every other argument is ``QAEnv``'s."""

    dataset = "synthhop"

    def __init__(self, *, split: str = "train", hops: int | Sequence[int] = HOPS,
                 kinds: str | Sequence[str] = QUESTION_KINDS, world_seed: int = 0, passages: int = 10_000,
                 distractors: float = 0.5, paraphrase: float = 0.0, test_fraction: float = 0.2,
                 num_items: int | None = None, context_distractors: int = 8, **kwargs: Any):
        reject_unknown_kwargs(self, SynthHopEnv, kwargs)
        self.world_config, self.question_config = configs(
            world_seed=world_seed, passages=passages, distractors=distractors, paraphrase=paraphrase,
            test_fraction=test_fraction, split=split, hops=hops, kinds=kinds, context_distractors=context_distractors)
        if num_items is not None and num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        self.num_items = num_items or DEFAULT_ITEMS[split]
        super().__init__(split=split, **kwargs)

    def data_source(self, *, data_path: str | Path | None, split: str | None, hf_name: str | None,
                    hf_config: str | None, max_items: int | None) -> DataSource:
        """Generated questions, or (with ``data_path``/``hf_name``) the QA env's loaders for saved ones."""
        if data_path is not None or hf_name is not None:
            return super().data_source(data_path=data_path, split=split, hf_name=hf_name, hf_config=hf_config,
                                       max_items=max_items)
        world, questions = self.world_config, self.question_config
        count = min(self.num_items, max_items) if max_items is not None else self.num_items
        name = (f"SynthHop(world_seed={world.seed}, passages={world.passages}, split={questions.split}, "
                f"hops={','.join(map(str, questions.hops))})")
        return DataSource(name=name, key=("synthhop", world, questions, count),
                          load=lambda: generate_items(world, questions, count))

    def corpus_passages(self) -> list[Passage]:
        """The whole world: one passage per entity, both splits' (searching it is the task)."""
        return list(build_world(self.world_config).passages)

    def prepare_item(self, item: Item, *, source: str, row: int | str | None) -> Item:
        prepared = super().prepare_item(item, source=source, row=row)
        prepared.update({key: item[key] for key in _SYNTH_FIELDS if key in item})
        return prepared

    def demonstration(self) -> list[str]:
        """Search each gold passage's title in order, say what it gave, then answer.

        The golden path a solver walks (``supporting_titles`` are in reading order and
        ``evidence`` holds the fact read from each); searches beyond ``max_turns - 1`` are skipped.
        """
        item = self.item
        titles, evidence = list(item.get("supporting_titles") or ()), list(item.get("evidence") or ())
        if len(evidence) != len(titles) or not titles:
            return super().demonstration()
        gold = item["answers"][0]
        searches = min(len(titles), max(0, self.max_turns - 1))
        actions, known = [], ""
        for title, fact in zip(titles[:searches], evidence, strict=False):
            query = title.replace("<", " ").replace(">", " ")
            actions.append(f"<think>{known}I need to look up {title}.</think>\n<search>{query}</search>")
            known = fact + " "
        found = " ".join(evidence[:searches]) if searches else ""
        actions.append(f"<think>{found + ' ' if found else ''}So the answer is {gold}.</think>\n"
                       f"<answer>{gold}</answer>")
        return actions


__all__ = ["DEFAULT_ITEMS", "SynthHopEnv"]
