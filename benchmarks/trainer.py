"""Rollout and step efficiency of the reference trainer on CPU, and the effect of its memory fixes.

Three tables:

1. **Rollout throughput**: generated tokens/s of HF ``generate`` vs vLLM (CPU build) on the same
   Arithmetic-v0 prompts, for the tiny model and a ~100M-parameter random Qwen2 config (same tokenizer).
2. **Where a step's time goes** (HF and vLLM rollouts): generation, env + chat rendering, no-grad
   log-prob forwards (reference model, log-prob gap check), the update (forward with grad, backward,
   optimizer) and the vLLM weight refresh; with the process's peak RSS.
3. **Memory fixes, same step**: peak RSS of one policy-loss forward/backward over a fixed batch with
   a 32k vocabulary, with the old ``token_logprobs`` (three fp32 copies of the logits) and the chunked
   one; and the vLLM refresh feeding ``full_state_dict`` (whole model at once) vs ``iter_full_tensors``
   (one tensor at a time, cast to the rollout dtype).

Every measurement runs in its own child process (peak RSS is per process and never goes down).
vLLM rows need the vLLM venv (``scripts/test_vllm.sh`` builds ``.venv-vllm``); without vLLM they
are skipped::

    .venv-vllm/bin/python benchmarks/trainer.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # as a script: the checkout's packages
from envs.core.cli import add_logging_argument, setup_logging  # noqa: E402
BIG = dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4)
ENV_KWARGS = dict(digits=1, num_operations=1, operations="+", calculator=False)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def model_dir(name: str, vocab: int | None = None) -> str:
    """``tiny``: baselines.tiny's model; ``qwen2-100m``: a random Qwen2 of ~100M parameters, built once."""
    from baselines.tiny import build_tiny_model

    tiny = build_tiny_model()
    if name == "tiny":
        return str(tiny)
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from envs.core.io import default_cache_dir

    target = default_cache_dir() / f"bench-qwen2-100m-v{vocab or 0}"
    if (target / "config.json").is_file():
        return str(target)
    tok = AutoTokenizer.from_pretrained(tiny)
    config = Qwen2Config(vocab_size=vocab or len(tok), max_position_embeddings=2048, tie_word_embeddings=True,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **BIG)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, target)
    return str(target)


def _prompts(tokenizer, count: int) -> list[list[int]]:
    import envs
    from baselines.grpo.rollout import ChatFormat

    chat = ChatFormat(tokenizer)
    env = envs.make("AgentR1/Arithmetic-v0", **ENV_KWARGS)
    out = [chat.prompt_ids(env.reset(seed=i)[1]) for i in range(count)]
    env.close()
    return out


# ------------------------------------------------------------------------------------------- children
def child_rollout(model: str, backend: str, prompts: int, new_tokens: int) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from baselines.grpo.rollout import ChatFormat, HFGenerator, Sampling

    path = model_dir(model)
    tok = AutoTokenizer.from_pretrained(path)
    chat = ChatFormat(tok)
    batch = _prompts(tok, prompts)
    sampling = Sampling(temperature=1.0, max_new_tokens=new_tokens)
    if backend == "vllm":
        from baselines.grpo.vllm_engine import VLLMGenerator, VLLMSettings

        t0 = time.perf_counter()
        gen: Any = VLLMGenerator(path, stop_ids=chat.stop_ids, seed=0, settings=VLLMSettings(max_model_len=1024))
        start_s = time.perf_counter() - t0
    else:
        m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        gen = HFGenerator(m, tok, chat.stop_ids, batch_size=prompts)
        start_s = 0.0
    gen.generate(batch[:2], [4, 4], sampling)  # warm-up
    t0 = time.perf_counter()
    outs = gen.generate(batch, [new_tokens] * len(batch), sampling)
    secs = time.perf_counter() - t0
    tokens = sum(len(o) for o in outs)
    return {"tokens": tokens, "seconds": secs, "tokens_per_s": tokens / secs, "engine_start_s": start_s,
            "peak_rss_mib": peak_rss_mib()}


def child_step(model: str, backend: str, steps: int, prompts: int, group: int, new_tokens: int) -> dict[str, Any]:
    """GRPO steps with timers around generation, no-grad log-prob forwards and the refresh."""
    from baselines.grpo import trainer as trainer_mod
    from baselines.grpo.config import make_config

    cfg = make_config("arithmetic_cpu", model=model_dir(model), backend=backend, steps=steps, prompts_per_step=prompts,
                      group_size=group, max_new_tokens=new_tokens, beta=0.04, micro_batch_size=16, save_every=0,
                      tensorboard=False, progress=False, resume=False, output_dir=f"/tmp/agentr1-bench-{os.getpid()}",
                      vllm_logprob_check_every=1)
    trainer = trainer_mod.GRPOTrainer(cfg, device="cpu")
    clock: dict[str, float] = {"generate": 0.0, "nograd_logprob": 0.0}
    real_generate, real_logprobs, real_gap = trainer.generator.generate, trainer._logprobs, trainer.logprob_gap

    def timed_generate(*a, **k):
        t0 = time.perf_counter()
        try:
            return real_generate(*a, **k)
        finally:
            clock["generate"] += time.perf_counter() - t0

    def timed_logprobs(*a, grad: bool, **k):
        if grad:
            return real_logprobs(*a, grad=grad, **k)
        t0 = time.perf_counter()
        try:
            return real_logprobs(*a, grad=grad, **k)
        finally:
            clock["nograd_logprob"] += time.perf_counter() - t0

    def timed_gap(*a, **k):
        t0 = time.perf_counter()
        try:
            return real_gap(*a, **k)
        finally:
            clock["gap_check"] = clock.get("gap_check", 0.0) + time.perf_counter() - t0

    trainer.generator.generate = timed_generate
    trainer._logprobs = timed_logprobs
    trainer.logprob_gap = timed_gap
    trainer.train_step(0)  # warm-up step (first-call costs)
    for k in list(clock):
        clock[k] = 0.0
    totals: dict[str, float] = {"rollout": 0.0, "train": 0.0, "sync": 0.0, "step": 0.0}
    for step in range(1, steps):
        t0 = time.perf_counter()
        m = trainer.train_step(step)
        totals["step"] += time.perf_counter() - t0
        totals["rollout"] += m["time/rollout"]
        totals["train"] += m["time/train"]
        totals["sync"] += m["time/sync"]
    trainer.close()
    n = steps - 1
    gen = clock["generate"] / n
    gap = clock.get("gap_check", 0.0) / n
    nograd = clock["nograd_logprob"] / n
    step_s = totals["step"] / n
    parts = {"generate": gen, "env+chat": totals["rollout"] / n - gen, "logprob (no grad)": nograd + gap,
             "update (fwd+bwd+opt)": totals["train"] / n - nograd, "weight sync": totals["sync"] / n}
    parts["other"] = step_s - sum(parts.values())
    return {"step_s": step_s, "parts": parts, "peak_rss_mib": peak_rss_mib()}


def _legacy_token_logprobs(logits, targets, temperature=1.0):
    """The pre-fix implementation: full-size fp32 upcast, division and logsumexp, kept for comparison."""
    import torch

    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    logz = torch.logsumexp(logits, dim=-1)
    picked = torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1) - logz
    return picked, logz


def child_logprob_memory(variant: str, batch: int, length: int) -> dict[str, Any]:
    """One forward/backward of the masked policy loss over a fixed batch, 32k vocabulary, bf16 autocast."""
    import torch
    from transformers import AutoModelForCausalLM

    from baselines.grpo.algorithms import policy_loss, token_logprobs

    model = AutoModelForCausalLM.from_pretrained(model_dir("qwen2-100m", vocab=32768), dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 500, (batch, length), generator=gen)
    resp = length // 2
    mask = torch.ones(batch, resp)
    adv = torch.randn(batch, resp, generator=gen)
    fn = _legacy_token_logprobs if variant == "legacy" else token_logprobs
    base = peak_rss_mib()
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(input_ids=ids, logits_to_keep=resp + 1, use_cache=False).logits[:, :-1, :]
        logp = fn(logits, ids[:, -resp:], 0.7)[0]
    loss, _ = policy_loss(logp, logp.detach(), adv, mask)
    loss.backward()
    return {"peak_rss_mib": peak_rss_mib(), "before_step_mib": base, "seconds": time.perf_counter() - t0,
            "logits_mib": batch * resp * 32768 * 2 / 2**20}


def child_sync_memory(variant: str) -> dict[str, Any]:
    """Peak RSS of handing the ~100M model to a consumer in bf16: whole state dict vs streamed tensors."""
    import torch
    from transformers import AutoModelForCausalLM

    from baselines.grpo.distributed import DistContext, full_state_dict, iter_full_tensors

    model = AutoModelForCausalLM.from_pretrained(model_dir("qwen2-100m"), dtype=torch.float32)
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    base = peak_rss_mib()
    checksum = 0.0
    if variant == "legacy":  # the old refresh: the whole state dict, cast in one go by the consumer
        weights = {k: v.to(torch.bfloat16) for k, v in full_state_dict(model, ctx, cpu=False).items()}
        for t in weights.values():
            checksum += float(t.float().sum())
    else:
        for _, t in iter_full_tensors(model, torch.bfloat16):
            checksum += float(t.float().sum())
    return {"peak_rss_mib": peak_rss_mib(), "before_mib": base, "checksum": checksum}


CHILDREN = {"rollout": child_rollout, "step": child_step, "logprob_memory": child_logprob_memory,
            "sync_memory": child_sync_memory}


def run_child(kind: str, **kwargs: Any) -> dict[str, Any] | None:
    cmd = [sys.executable, __file__, "--child", kind, json.dumps(kwargs)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        print(f"  ({kind} {kwargs} failed: {done.stderr.strip().splitlines()[-1:] if done.stderr else done.returncode})")
        return None
    return json.loads(lines[-1][len("RESULT "):])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny model only, fewer tokens")
    p.add_argument("--sections", nargs="+", choices=("rollout", "step", "memory"), default=["rollout", "step", "memory"])
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    add_logging_argument(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    if args.child:
        kind, kwargs = args.child
        print("RESULT " + json.dumps(CHILDREN[kind](**json.loads(kwargs))))
        return 0
    import importlib.util

    backends = ["hf"] + (["vllm"] if importlib.util.find_spec("vllm") else [])
    models = ["tiny"] if args.quick else ["tiny", "qwen2-100m"]
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, backends: {', '.join(backends)}")
    if "rollout" in args.sections:
        rollout_table(models, backends)
    if "step" in args.sections:
        step_table(models, backends)
    if "memory" in args.sections:
        memory_table()
    return 0


def rollout_table(models: list[str], backends: list[str]) -> None:
    print("\n## Rollout throughput (32 prompts, temperature 1, fp32; tokens = generated up to each stop token)\n")
    print("| model | backend | new tokens | tokens/s | engine start (s) | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|")
    for model in models:
        new_tokens = 64 if model == "tiny" else 32
        for backend in backends:
            r = run_child("rollout", model=model, backend=backend, prompts=32, new_tokens=new_tokens)
            if r:
                print(f"| {model} | {backend} | {r['tokens']} | {r['tokens_per_s']:.0f} | {r['engine_start_s']:.1f} "
                      f"| {r['peak_rss_mib']:.0f} |", flush=True)


def step_table(models: list[str], backends: list[str]) -> None:
    print("\n## Share of step time (tiny: 8 prompts x 4 rollouts, 32 new tokens; 100M: 4 x 2, 16; beta 0.04; "
          "mean of the steps after a warm-up step)\n")
    print("| model | backend | step (s) | generate | env+chat | log-prob (no grad) | update | weight sync | other "
          "| peak RSS (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model in models:
        for backend in backends:
            size = dict(steps=3, prompts=8, group=4, new_tokens=32) if model == "tiny" else \
                dict(steps=2, prompts=4, group=2, new_tokens=16)
            r = run_child("step", model=model, backend=backend, **size)
            if r:
                shares = " | ".join(f"{100 * v / r['step_s']:.0f} %" for v in r["parts"].values())
                print(f"| {model} | {backend} | {r['step_s']:.2f} | {shares} | {r['peak_rss_mib']:.0f} |", flush=True)


def memory_table() -> None:
    print("\n## Memory fixes on the same step (~100M Qwen2, peak RSS of the process)\n")
    print("| what | before fix (MiB) | after fix (MiB) | drop (MiB) |")
    print("|---|---|---|---|")
    old = run_child("logprob_memory", variant="legacy", batch=8, length=512)
    new = run_child("logprob_memory", variant="chunked", batch=8, length=512)
    if old and new:
        print(f"| policy-loss fwd+bwd, 8 x 256 response tokens, 32k vocab, bf16 autocast (logits "
              f"{old['logits_mib']:.0f} MiB) | {old['peak_rss_mib']:.0f} | {new['peak_rss_mib']:.0f} | "
              f"{old['peak_rss_mib'] - new['peak_rss_mib']:.0f} |")
    old = run_child("sync_memory", variant="legacy")
    new = run_child("sync_memory", variant="streamed")
    if old and new:
        print(f"| weight refresh to a bf16 engine (state dict at once vs streamed) | {old['peak_rss_mib']:.0f} | "
              f"{new['peak_rss_mib']:.0f} | {old['peak_rss_mib'] - new['peak_rss_mib']:.0f} |")


if __name__ == "__main__":
    raise SystemExit(main())
