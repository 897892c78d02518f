"""Atomic training checkpoints: ``<output_dir>/checkpoints/step_000050/``.

A checkpoint holds the policy as a Hugging Face directory (loadable by ``baselines.evaluate`` or any
``from_pretrained``), the tokenizer, ``optimizer.pt``, ``scheduler.pt``, one ``rng_rank<r>.pt`` per
rank and ``trainer_state.json``. It is written into a temporary directory next to its final place
and renamed with ``os.replace``, so a crash never leaves a half-written checkpoint that resume would
pick up. Multi-node runs need ``output_dir`` on a shared filesystem.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from baselines.grpo.distributed import DistContext, barrier, broadcast_object, full_state_dict, optimizer_state, unwrap

logger = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^step_(\d+)$")


def checkpoint_root(output_dir: str | os.PathLike[str]) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``output_dir``, oldest first."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and (p / "trainer_state.json").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(output_dir: str | os.PathLike[str]) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def rng_state() -> dict[str, Any]:
    """This process's torch RNG states (CPU and, if present, CUDA)."""
    import torch

    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(output_dir: str | os.PathLike[str], step: int, *, model: Any, optimizer: Any, scheduler: Any,
                    tokenizer: Any, trainer_state: dict[str, Any], ctx: DistContext, keep: int = 2) -> Path:
    """Write ``step``'s checkpoint atomically (every rank must call this) and prune old ones."""
    import torch

    root = checkpoint_root(output_dir)
    final = root / f"step_{step:06d}"
    weights = full_state_dict(model, ctx, cpu=True)  # collective under FSDP
    optim = optimizer_state(model, optimizer, ctx)  # collective under FSDP
    tmp_name = None
    if ctx.is_main:
        root.mkdir(parents=True, exist_ok=True)
        tmp_name = tempfile.mkdtemp(prefix=f".step_{step:06d}-", dir=root)
    tmp = Path(broadcast_object(tmp_name, ctx))
    torch.save(rng_state(), tmp / f"rng_rank{ctx.rank}.pt")
    if ctx.is_main:
        unwrap(model).save_pretrained(tmp, state_dict=weights, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        torch.save(optim, tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        state = {**trainer_state, "step": step, "world_size": ctx.world_size}
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
    barrier(ctx)
    if ctx.is_main:
        if final.exists():  # re-saving the same step (e.g. after a resume): replace it whole
            shutil.rmtree(final)
        os.replace(tmp, final)
        for _, old in list_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        logger.info("saved checkpoint %s", final)
    barrier(ctx)
    return final


def load_training_state(path: str | os.PathLike[str], ctx: DistContext) -> dict[str, Any]:
    """Read what ``save_checkpoint`` wrote besides the weights: optimizer, scheduler, RNG, state."""
    import torch

    p = Path(path)
    state = json.loads((p / "trainer_state.json").read_text())
    rng_file = p / f"rng_rank{ctx.rank}.pt"
    if state.get("world_size") != ctx.world_size or not rng_file.is_file():
        logger.warning("checkpoint %s was written by %s ranks, resuming on %d: RNG streams restart",
                       p, state.get("world_size"), ctx.world_size)
        rng = None
    else:
        rng = torch.load(rng_file, weights_only=False)
    return {
        "state": state,
        "optimizer": torch.load(p / "optimizer.pt", map_location="cpu", weights_only=False),
        "scheduler": torch.load(p / "scheduler.pt", weights_only=False),
        "rng": rng,
    }
