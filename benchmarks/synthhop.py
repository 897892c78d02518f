"""SynthHop's figures: build times, corpus size, what search finds, and what a model that never searches scores.

    python benchmarks/synthhop.py                      # the default world (10,000 passages)
    python benchmarks/synthhop.py --passages 100000 --tokenizer /path/to/hf-tokenizer-dir

Prints one markdown table per part:

* build: world (entities, passages), the first 10,000 train and 1,000 test items, the BM25 index
  (built in memory; then built, saved with its integrity manifest and loaded again from the cache);
* corpus: passages, mean and max characters (and SmolLM2 tokens with ``--tokenizer``), names'
  tokens, the characters of one search's observation (top-5);
* retrieval (BM25, test items): recall@1/5 of each gold passage when the query is its title (the
  golden path) and when the query is the whole question (a model that searches the question);
* no search: test accuracy (cover-EM) of answering the most frequent train answer of the
  question's shape, and of answering with the question itself (right only if the gold is in it).
"""

from __future__ import annotations

import argparse
import collections
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from envs.qa import synth
from envs.qa.rewards import score_answer
from envs.retrieval.base import format_passages
from envs.retrieval.bm25 import BM25Retriever


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    return fn(), time.perf_counter() - start


def _table(rows: list[tuple[str, str]], head: tuple[str, str]) -> str:
    lines = [f"| {head[0]} | {head[1]} |", "|---|---:|"]
    return "\n".join(lines + [f"| {a} | {b} |" for a, b in rows])


def _shape(question: str) -> str:
    return re.sub(r"\b[A-Z][\w']*", "X", question)


def _acc(items: list[dict[str, Any]], guess: Callable[[dict[str, Any]], str]) -> float:
    return statistics.mean(score_answer(f"<answer>{guess(it)}</answer>", it["answers"], tools_ok=True).scores["acc"]
                           for it in items)


def _recall(retriever: BM25Retriever, items: list[dict[str, Any]], query: Callable[[dict, str], str], k: int) -> float:
    pairs = [(it, title) for it in items for title in it["supporting_titles"]]
    found = retriever.search_many([query(it, title) for it, title in pairs], k)
    return statistics.mean(title in {p.title for p in hits} for (_, title), hits in zip(pairs, found, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--distractors", type=float, default=0.5)
    parser.add_argument("--paraphrase", type=float, default=0.0)
    parser.add_argument("--test-items", type=int, default=1_000)
    parser.add_argument("--tokenizer", help="a Hugging Face tokenizer directory (e.g. the converted SmolLM2-135M)")
    args = parser.parse_args()

    world_config = synth.WorldConfig(seed=args.seed, passages=args.passages, distractors=args.distractors,
                                     paraphrase=args.paraphrase)
    world, world_s = _timed(lambda: synth._build(world_config))
    train, train_s = _timed(lambda: synth.SynthQuestions(world, synth.QuestionConfig(split="train")).items(10_000))
    tests = synth.SynthQuestions(world, synth.QuestionConfig(split="test"))
    test, test_s = _timed(lambda: tests.items(args.test_items))
    retriever, index_s = _timed(lambda: BM25Retriever(world.passages, persist=False))
    with tempfile.TemporaryDirectory() as cache:
        _, saved_s = _timed(lambda: BM25Retriever(world.passages, cache_dir=cache))
        _, loaded_s = _timed(lambda: BM25Retriever(world.passages, cache_dir=cache))
    print(f"## SynthHop world seed {args.seed}: {len(world.passages):,} passages\n")
    print(_table([("world (entities and passages)", f"{world_s:.2f}"),
                  ("10,000 train items", f"{train_s:.2f}"), (f"{args.test_items:,} test items", f"{test_s:.2f}"),
                  ("BM25 index, in memory", f"{index_s:.2f}"), ("BM25 index, built and saved", f"{saved_s:.2f}"),
                  ("BM25 index, loaded from the cache", f"{loaded_s:.2f}")], ("build", "seconds")))

    chars = [len(p.text) for p in world.passages]
    observation = [len(format_passages(hits, max_chars_per_passage=600))
                   for hits in retriever.search_many([it["supporting_titles"][0] for it in test[:200]], 5)]
    rows = [("passages", f"{len(world.passages):,}"), ("distinct test questions", f"{len(tests):,}"),
            ("passage characters, mean / max", f"{statistics.mean(chars):.0f} / {max(chars)}"),
            ("one search's observation (top 5), characters, mean", f"{statistics.mean(observation):.0f}")]
    if args.tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)

        def count(text: str) -> int:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])

        sample = world.passages[:: max(1, len(world.passages) // 1000)]
        rows += [("passage tokens, mean / max", f"{statistics.mean(map(count, (p.text for p in sample))):.1f} / "
                                                f"{max(map(count, (p.text for p in sample)))}"),
                 ("name tokens (with a leading space), mean",
                  f"{statistics.mean(count(' ' + p.title) for p in sample):.1f}"),
                 ("question tokens, mean", f"{statistics.mean(count(it['question']) for it in test[:300]):.1f}")]
    print("\n" + _table(rows, ("corpus", "value")))

    rows = []
    for hops in synth.HOPS:
        group = [it for it in test if it["hops"] == hops]
        for k in (1, 5):
            rows.append((f"{hops}-hop, query = gold title, recall@{k}",
                         f"{_recall(retriever, group, lambda it, t: t, k):.3f}"))
        rows.append((f"{hops}-hop, query = question, recall@5",
                     f"{_recall(retriever, group, lambda it, t: it['question'], 5):.3f}"))
    print("\n" + _table(rows, ("retrieval on test items (BM25)", "recall")))

    by_shape: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for it in train:
        by_shape[_shape(it["question"])][it["answers"][0]] += 1
    overall = collections.Counter(it["answers"][0] for it in train).most_common(1)[0][0]
    frequent = _acc(test, lambda it: (by_shape.get(_shape(it["question"])) or collections.Counter([overall]))
                    .most_common(1)[0][0])
    print("\n" + _table([("most frequent train answer of the question's shape", f"{frequent:.3f}"),
                         ("the question itself as the answer", f"{_acc(test, lambda it: it['question']):.3f}")],
                        ("never searching, test items", "acc (cover-EM)")))


if __name__ == "__main__":
    main()
