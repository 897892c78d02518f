"""Cost of building many env instances: wall time and resident memory, construction vs first reset.

Trainer adapters build one env per concurrent sample (OpenRLHF) or per worker, and pose every item
through ``reset(options={"item": ...})``. This script builds ``--instances`` envs with ``gym.make``
and then resets each once (with an injected item, or drawing item ``i``: "drawn items"), and
prints, per configuration: seconds and RSS growth for the construction of all instances, then for
their first resets. Module imports happen before any timing.

Configurations: QA on the shipped sample (its offline kwargs) and math on the shipped sample; with
``--synthetic-questions N`` also QA over a generated HotpotQA-shaped file of N questions (10
paragraphs each; HotpotQA's dev set has 7,405), to approximate a real dev set offline.

    python benchmarks/data_loading.py [--instances 64] [--synthetic-questions 7405 --synthetic-instances 8]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as a script: the checkout's packages
import envs  # noqa: E402,F401  (registers the ids)
from envs.core.cli import add_logging_argument, setup_logging  # noqa: E402

QA_ITEM = {"question": "In which town was the founder of Velmora Textiles born?", "answer": "Karsholm",
           "context": [{"title": "Velmora Textiles", "text": "Velmora Textiles was founded by Idris Hallowell."},
                       {"title": "Idris Hallowell", "text": "Idris Hallowell was born in Karsholm."}]}
MATH_ITEM = {"problem": "What is 2 + 3?", "answer": "5"}


def rss_mb() -> float:
    """Resident set size of this process, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_synthetic_hotpotqa(path: Path, questions: int, seed: int = 0) -> None:
    """A HotpotQA-shaped JSONL file (10 paragraphs of 4 sentences per question) of invented words."""
    rng = np.random.default_rng(seed)
    vocab = ["".join(rng.choice(list("abcdefghiklmnoprstuvy"), size=int(n))) for n in rng.integers(3, 10, 5000)]

    def sentence() -> str:
        return " ".join(vocab[i] for i in rng.integers(0, len(vocab), 18)).capitalize() + "."

    with path.open("w", encoding="utf-8") as fh:
        for q in range(questions):
            titles = [f"{vocab[int(rng.integers(len(vocab)))].title()} {q}-{p}" for p in range(10)]
            record = {"id": f"syn-{q}", "question": sentence()[:-1] + "?", "answer": vocab[int(rng.integers(len(vocab)))],
                      "type": "bridge", "level": "hard",
                      "supporting_facts": {"title": titles[:2], "sent_id": [0, 1]},
                      "context": {"title": titles, "sentences": [[sentence() for _ in range(4)] for _ in titles]}}
            fh.write(json.dumps(record) + "\n")


def measure(env_id: str, kwargs: dict[str, Any], item: dict[str, Any] | None, instances: int) -> dict[str, float]:
    """Build ``instances`` envs, then reset each: with ``item`` injected, or (None) drawing item ``i``."""
    gc.collect()
    rss0, t0 = rss_mb(), time.perf_counter()
    made = [gym.make(env_id, **kwargs) for _ in range(instances)]
    t1, rss1 = time.perf_counter(), rss_mb()
    for i, env in enumerate(made):
        env.reset(seed=i, options={"item": dict(item)} if item is not None else {"index": i % 16})
    t2, rss2 = time.perf_counter(), rss_mb()
    for env in made:
        env.close()
    return {"make_s": t1 - t0, "make_mb": rss1 - rss0, "reset_s": t2 - t1, "reset_mb": rss2 - rss1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=64)
    parser.add_argument("--synthetic-questions", type=int, default=0)
    parser.add_argument("--synthetic-instances", type=int, default=8)
    add_logging_argument(parser)
    args = parser.parse_args()
    setup_logging(args.log_level)
    for module in ("envs.qa.env", "envs.math.env", "envs.retrieval.bm25", "bm25s", "Stemmer"):
        importlib.import_module(module)  # import costs are paid once, before any timing
    with tempfile.TemporaryDirectory() as tmp:
        configs: list[tuple[str, str, dict[str, Any], dict[str, Any], int]] = [
            ("qa sample, corpus=sample", "AgentR1/HotpotQA-v0",
             {"data_path": "sample", "corpus": "sample", "cache_dir": tmp}, QA_ITEM, args.instances),
            ("qa sample, corpus=distractor", "AgentR1/HotpotQA-v0",
             {"data_path": "sample", "corpus": "distractor"}, QA_ITEM, args.instances),
            ("math sample", "AgentR1/Math-v0", {"dataset": "sample"}, MATH_ITEM, args.instances),
            ("qa sample, corpus=sample, drawn items", "AgentR1/HotpotQA-v0",
             {"data_path": "sample", "corpus": "sample", "cache_dir": tmp}, None, args.instances),
        ]
        if args.synthetic_questions:
            path = Path(tmp) / "synthetic_hotpotqa.jsonl"
            write_synthetic_hotpotqa(path, args.synthetic_questions)
            size = path.stat().st_size / 2**20
            synthetic = {"data_path": str(path), "corpus": "distractor"}
            label = f"qa synthetic {args.synthetic_questions} q ({size:.0f} MB), distractor"
            configs.append((f"{label}, injected items", "AgentR1/HotpotQA-v0", synthetic, QA_ITEM,
                            args.synthetic_instances))
            configs.append((f"{label}, drawn items", "AgentR1/HotpotQA-v0", synthetic, None, args.synthetic_instances))
        print("| configuration | instances | make all (s) | make RSS (MB) | first resets (s) | reset RSS (MB) |")
        print("|---|---|---|---|---|---|")
        for name, env_id, kwargs, item, n in configs:
            r = measure(env_id, kwargs, item, n)
            print(f"| {name} | {n} | {r['make_s']:.3f} | {r['make_mb']:.1f} | {r['reset_s']:.3f} | {r['reset_mb']:.1f} |")


if __name__ == "__main__":
    main()
