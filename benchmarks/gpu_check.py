"""A few GRPO steps on one GPU: HF rollouts in bf16, FSDP2 on one rank, a locally built ~100M model.

Run by ``scripts/gpu_check.sh`` under ``torchrun --nproc-per-node 1`` (so the FSDP2 path, with its
process group, is what trains); needs torch and transformers only, no vLLM, no network. Prints one
line per step (step time, rollout tokens/s, peak GPU memory) and a final JSON line. ``--cpu`` runs
the same code on CPU (gloo, fp32 compute, the tiny model) so the script itself is exercised where
no GPU is lent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from envs.core.cli import add_logging_argument, setup_logging  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--cpu", action="store_true")
    add_logging_argument(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    import torch

    from baselines.grpo.config import make_config
    from baselines.grpo.trainer import GRPOTrainer

    cuda = not args.cpu
    cfg = make_config("arithmetic_cpu", model=args.model, output_dir=args.output_dir, steps=args.steps,
                      prompts_per_step=16 if cuda else 4, group_size=8 if cuda else 4,
                      max_new_tokens=128 if cuda else 16, dtype="bfloat16" if cuda else "float32",
                      strategy="fsdp", backend="hf", beta=0.04, lr=1e-5, micro_batch_size=32, save_every=0,
                      tensorboard=False, progress=False, resume=False, rollout_batch_size=128)
    trainer = GRPOTrainer(cfg, device="cuda:0" if cuda else "cpu")
    print(f"strategy={trainer.strategy} world_size={trainer.ctx.world_size} process_group={trainer.ctx.has_group} "
          f"compute_dtype={trainer.compute_dtype} device={trainer.ctx.device}", flush=True)
    if trainer.strategy != "fsdp":
        raise SystemExit("expected the FSDP2 path")
    params = sum(p.numel() for p in trainer.model.parameters())
    rows = []
    for step in range(cfg.steps):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        m = trainer.train_step(step)
        secs = time.perf_counter() - t0
        tokens = m["response_length"] * m["episodes"]
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        rows.append({"step": step + 1, "step_s": secs, "rollout_s": m["time/rollout"], "train_s": m["time/train"],
                     "rollout_tokens_per_s": tokens / max(m["time/rollout"], 1e-9), "peak_gpu_gib": peak,
                     "reward": m["reward"], "kl": m["kl"], "loss": m["loss"]})
        print(f"step {step + 1}: {secs:.2f} s (rollout {m['time/rollout']:.2f} s, update {m['time/train']:.2f} s), "
              f"{rows[-1]['rollout_tokens_per_s']:.0f} rollout tokens/s, peak GPU memory {peak:.2f} GiB, "
              f"reward {m['reward']:.3f}, kl {m['kl']:.4f}", flush=True)
        if not all(map(lambda v: v == v, (m["loss"], m["kl"], m["grad_norm"]))):
            raise SystemExit(f"non-finite loss/kl/grad at step {step + 1}: {m}")
    path = trainer.save(cfg.steps)
    trainer.close()
    later = rows[1:] or rows
    print("RESULT " + json.dumps({"params": params, "checkpoint": str(path),
                                  "mean_step_s": sum(r["step_s"] for r in later) / len(later),
                                  "rollout_tokens_per_s": sum(r["rollout_tokens_per_s"] for r in later) / len(later),
                                  "peak_gpu_gib": max(r["peak_gpu_gib"] for r in rows)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
