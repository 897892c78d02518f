"""``python -m baselines.evaluate``: pass@1 / pass@k and the env's metrics on any suite env.

Each item is played ``--samples`` times through the env (multi-turn, tools included) with the same
rollout code the trainer uses. Success is the env's ``em`` metric when it reports one (QA: exact
match, as in the Agent-R1 tables) and ``acc`` otherwise (math: math-verify's verdict); every other
numeric metric the env reports (``format``, ``em``, ``f1``,
``turns``, ...) is averaged over all samples. pass@k uses the unbiased estimator
``1 - C(n-c, k) / C(n, k)`` (Chen et al., 2021).

Defaults follow the papers' evaluation protocols (``PROTOCOLS``), flags override them:

* math envs: the Open-RS evaluation (open-r1's lighteval + vLLM run): one sample at temperature
  0.6, top_p 0.95, up to 32,768 new tokens in a 32,768-token context;
* multi-hop QA envs: Agent-R1's validation: greedy decoding, 1,024 new tokens per turn, an
  8,192-token episode (the env's defaults give 5 tool turns and top-5 passages), exact match on the
  env's evaluation split (its default, ``validation``).

Other envs use their ``recommended_sampling`` if they declare one, else greedy decoding for one
sample and temperature 0.6 / top_p 0.95 for several. Writes ``items.jsonl`` (one line per item, each
sample an episode record of ``envs.core.records``: ``python -m envs view items.jsonl`` shows them),
``summary.json`` and ``summary.md`` into ``--output-dir``, each atomically.

Example::

    python -m baselines.evaluate --env AgentR1/AIME24-v0 --model runs/open-rs2/checkpoints/step_000050 \\
        --samples 8 --backend vllm
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

from baselines.models import model_help
from envs.core.cli import add_logging_argument, cli_entry, program_name, progress, setup_logging
from envs.core.io import atomic_write_text
from envs.core.records import json_line, printable_item

logger = logging.getLogger(__name__)

_DEFAULT_ITEMS = 100  # for procedural envs without a fixed item list


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` successes."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def k_values(samples: int) -> list[int]:
    """1, 2, 4, ... up to ``samples``, and ``samples`` itself."""
    ks, k = [], 1
    while k < samples:
        ks.append(k)
        k *= 2
    ks.append(samples)
    return ks


# Evaluation protocols by env family: sampling, per-turn and per-episode token limits, with sources.
PROTOCOLS: dict[str, dict[str, Any]] = {
    # Open-RS: open-r1's evaluate.py through lighteval + vLLM: temperature 0.6, top_p 0.95,
    # max_new_tokens 32768, max_model_length 32768, one sample (pass@1)
    "math": {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 32768, "max_episode_tokens": 32768,
             "source": "Open-RS / open-r1 lighteval"},
    # Agent-R1: verl validation (greedy), 1024 new tokens per turn, episodes within 8192 tokens, EM
    "qa": {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 1024, "max_episode_tokens": 8192,
           "source": "Agent-R1 (verl validation)"},
}


def protocol_for(env: Any) -> dict[str, Any]:
    """The evaluation protocol of ``env``'s family (empty for families without a paper protocol)."""
    from envs.math.env import MathEnv
    from envs.qa.env import QAEnv

    family = env if isinstance(env, type) else type(getattr(env, "unwrapped", env))  # an env class, or an env
    if issubclass(family, MathEnv):
        return dict(PROTOCOLS["math"])
    if issubclass(family, QAEnv):
        return dict(PROTOCOLS["qa"])
    return {}


def env_family(env_id: str, env: Any) -> Any:
    """What the protocol and recommended sampling are read from: the env, or for an env on a server
    (``--env-url``) its registered class, so a remote evaluation follows the same protocol."""
    from gymnasium.envs.registration import load_env_creator

    from envs.remote import RemoteEnv

    base = getattr(env, "unwrapped", env)
    if not isinstance(base, RemoteEnv):
        return base
    entry_point = gym.spec(env_id).entry_point
    return load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point


# Scores an episode cut at the token budget does not report (the env never judged it): they count as 0
# for such a sample, so that their means are over every sample, like pass@k.
_SCORE_METRICS = ("acc", "em", "f1", "format")


def summarize(records: Sequence[dict[str, Any]], samples: int) -> dict[str, Any]:
    """Aggregate per-item records into pass@k and mean metrics."""
    summary: dict[str, Any] = {"items": len(records), "samples": samples}
    for k in k_values(samples):
        summary[f"pass@{k}"] = sum(pass_at_k(samples, r["num_correct"], k) for r in records) / max(1, len(records))
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    reported = {name for r in records for sample in r["samples"] for name in sample["metrics"]}
    for r in records:
        for sample in r["samples"]:
            for name in reported.intersection(_SCORE_METRICS).difference(sample["metrics"]):
                counts[name] += 1
            for name, value in sample["metrics"].items():
                sums[name] += value
                counts[name] += 1
            for name in ("reward", "response_tokens"):
                sums[name] += sample[name]
                counts[name] += 1
    summary["mean"] = {name: sums[name] / counts[name] for name in sorted(sums)}
    return summary


def markdown_table(env_id: str, model: str, summary: dict[str, Any]) -> str:
    passes = [k for k in summary if k.startswith("pass@")]
    preferred = [m for m in ("acc", "em", "f1", "format", "turns", "reward", "response_tokens") if m in summary["mean"]]
    head = ["env", "model", "items", "samples", *passes, *preferred]
    row = [env_id, model, str(summary["items"]), str(summary["samples"]),
           *(f"{summary[k]:.4f}" for k in passes), *(f"{summary['mean'][m]:.4f}" for m in preferred)]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head), "| " + " | ".join(row) + " |"]) + "\n"


def _sample(episode: Any, correct: bool, source: dict[str, Any]) -> dict[str, Any]:
    """One sample of ``items.jsonl``: the episode's record (``envs.core.records``; the item is on its line),
    and ``responses``, the model's turns, as samples carried them before the record format."""
    sample = episode.record(correct=correct, source=source).to_dict()
    del sample["item"]
    sample["responses"] = list(episode.responses)
    return sample


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=program_name("baselines.evaluate"), description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", required=True, help="env id or alias, e.g. AgentR1/AIME24-v0, math500-v0")
    p.add_argument("--model", required=True, help=f"{model_help()}; a trainer checkpoint directory works too")
    p.add_argument("--tokenizer", help="defaults to --model")
    p.add_argument("--samples", type=int, default=1, help="samples per item (n of pass@k)")
    p.add_argument("--backend", choices=("hf", "vllm"), default="hf")
    p.add_argument("--agent", choices=("policy", "naive-rag", "tool-call"), default="policy",
                   help="policy: the model through the env as is; naive-rag / tool-call: the Agent-R1 baselines")
    p.add_argument("--success-metric", help="metric whose value 1 counts as solved for pass@k (default: em if the "
                   "env reports it, as the Agent-R1 tables; else acc)")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, help="per assistant turn (default: the protocol's)")
    p.add_argument("--max-episode-tokens", type=int, help="prompt + all turns (default: the protocol's, else 8192)")
    p.add_argument("--limit", type=int, help="evaluate the first N items")
    p.add_argument("--env-kwargs", type=json.loads, default=None, help="JSON object of make kwargs")
    p.add_argument("--offline", action="store_true", help="use the env's offline_kwargs (data shipped in the repo)")
    p.add_argument("--env-url", default=None, metavar="URL[,URL...]",
                   help="env servers (python -m envs serve) to play on; default $AGENTR1_ENV_URL, else local envs")
    p.add_argument("--output-dir", default=None, help="default: runs/eval/<env>")
    p.add_argument("--batch-items", type=int, default=32, help="items rolled out together")
    p.add_argument("--batch-size", type=int, default=64, help="sequences per HF generate call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default="auto", help="auto: bf16 on GPU, fp32 on CPU (HF model and vLLM engine)")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.85, help="vLLM on GPU")
    p.add_argument("--cpu-kvcache-gib", type=float, default=1.0,
                   help="vLLM on CPU: KV-cache size (VLLM_CPU_KVCACHE_SPACE, unless set)")
    p.add_argument("--tensor-parallel-size", type=int, default=1)
    add_logging_argument(p)
    return p


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run the evaluation described by parsed CLI ``args``; returns the summary."""
    import torch
    from transformers import AutoTokenizer

    import envs
    from baselines.grpo.rollout import ChatFormat, HFGenerator, Sampling, run_episodes
    from baselines.grpo.trainer import _torch_dtype, resolve_model_path
    from envs.core.registry import suite_envs

    env_id = envs.resolve_env_id(args.env)
    kwargs: dict[str, Any] = {}
    if args.offline:
        entry = next((e for e in suite_envs() if e.env_id == env_id), None)
        if entry is None or entry.offline_kwargs is None:
            raise SystemExit(f"{env_id} has no offline mode")
        kwargs.update(entry.offline_kwargs)
    kwargs.update(args.env_kwargs or {})
    if args.samples < 1:
        raise SystemExit("--samples must be >= 1")
    model_path = resolve_model_path(args.model)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or model_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    chat = ChatFormat(tokenizer)
    probe = envs.make(env_id, env_url=args.env_url, **kwargs)
    family = env_family(env_id, probe)
    protocol = protocol_for(family)
    recommended = {**dict(getattr(family, "recommended_sampling", {}) or {}), **protocol}
    num_items = len(getattr(probe.unwrapped, "items", []) or []) or _DEFAULT_ITEMS
    if args.limit is not None:
        num_items = min(num_items, args.limit) if getattr(probe.unwrapped, "items", None) else args.limit
    if args.temperature is not None:
        temperature = args.temperature
    else:
        temperature = float(recommended.get("temperature", 0.0 if args.samples == 1 else 0.6))
        if temperature == 0 and args.samples > 1:  # a greedy protocol's pass@1; pass@k needs samples that differ
            temperature = 0.6
            recommended.pop("top_p", None)
    top_p = args.top_p if args.top_p is not None else float(recommended.get("top_p", 1.0 if temperature == 0 else 0.95))
    max_new = args.max_new_tokens or int(recommended.get("max_new_tokens", 1024))
    max_episode = args.max_episode_tokens or int(recommended.get("max_episode_tokens", 8192))
    sampling = Sampling(temperature=temperature, top_p=top_p, top_k=args.top_k, max_new_tokens=max_new)
    torch.manual_seed(args.seed)  # HF sampling draws from torch's RNG in this process
    if args.backend == "vllm":
        from baselines.grpo.vllm_engine import VLLMGenerator, VLLMSettings

        cuda = torch.cuda.is_available() and args.device != "cpu"
        rollout_dtype = str(_torch_dtype(args.dtype, torch.device("cuda" if cuda else "cpu"))).removeprefix("torch.")
        settings = VLLMSettings(dtype=rollout_dtype, gpu_memory_utilization=args.gpu_memory_utilization,
                                tensor_parallel_size=args.tensor_parallel_size, max_model_len=max_episode,
                                cpu_kvcache_gib=args.cpu_kvcache_gib)
        generator: Any = VLLMGenerator(model_path, stop_ids=chat.stop_ids, seed=args.seed, settings=settings,
                                       tokenizer=args.tokenizer or model_path)
    else:
        from transformers import AutoModelForCausalLM

        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=_torch_dtype(args.dtype, device)).to(device)
        model.eval()
        generator = HFGenerator(model, tokenizer, chat.stop_ids, batch_size=args.batch_size)
    agent = None
    if args.agent != "policy":
        from baselines.agents import make_agent

        agent = make_agent(args.agent, chat=chat)
    out_dir = Path(args.output_dir or Path("runs") / "eval" / env_id.replace("/", "_"))
    pool = [probe] + [envs.make(env_id, env_url=args.env_url, **kwargs) for _ in range(min(args.batch_items, num_items) * args.samples - 1)]
    records: list[dict[str, Any]] = []
    source = {"kind": "evaluate", "env": env_id, "model": str(args.model), "agent": args.agent}
    metric: str | None = args.success_metric
    started = time.perf_counter()
    bar = progress(total=num_items, desc=f"evaluating {env_id}", unit="item")
    try:
        for start in range(0, num_items, args.batch_items):
            indices = list(range(start, min(num_items, start + args.batch_items)))
            resets = [{"seed": args.seed + i, "options": {"index": i}} for i in indices for _ in range(args.samples)]
            groups = [g for g in range(len(indices)) for _ in range(args.samples)]
            if agent is not None:
                episodes = agent.run(generator, pool, resets, groups, sampling, max_episode)
            else:
                episodes = run_episodes(generator, chat, pool, resets, groups, sampling, max_episode)
            if metric is None and any(not e.cut for e in episodes):
                # fixed once per run, from episodes the env scored: an episode cut at the token budget
                # carries only the rollout's own metrics (no ``em``), and scores 0 under either choice
                metric = "em" if any("em" in e.metrics for e in episodes if not e.cut) else "acc"
            for g, index in enumerate(indices):
                eps = [e for e in episodes if e.group == g]
                correct = [metric is not None and float(e.metrics.get(metric, 0.0)) >= 1.0 - 1e-9 for e in eps]
                records.append({
                    "index": index,
                    "item": printable_item(eps[0].item),
                    "num_correct": int(sum(correct)),
                    "pass@1": sum(correct) / len(correct),
                    "samples": [_sample(e, c, source) for e, c in zip(eps, correct, strict=True)],
                })
            bar.update(len(indices))
            if bar.disable:  # no bar (not a terminal, or a quiet --log-level): the log says how far it got
                logger.info("evaluated %d/%d items", len(records), num_items)
    finally:
        bar.close()
        for env in pool:
            env.close()
    metric = metric or "acc"
    for record in records:
        record["success_metric"] = metric
    summary = summarize(records, args.samples)
    summary["success_metric"] = metric
    summary.update({"env": env_id, "env_kwargs": kwargs, "model": str(args.model), "backend": args.backend,
                    "agent": args.agent, "sampling": vars(sampling), "max_episode_tokens": max_episode,
                    "protocol": protocol.get("source"), "seconds": time.perf_counter() - started})
    atomic_write_text(out_dir / "items.jsonl", "".join(json_line(r) for r in records))
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    table = markdown_table(env_id, str(args.model), summary)
    atomic_write_text(out_dir / "summary.md", table)
    summary["output_dir"] = str(out_dir)
    summary["table"] = table
    return summary


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    summary = evaluate(args)
    print(summary["table"], end="")
    print(f"wrote {summary['output_dir']}/summary.json, summary.md, items.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
