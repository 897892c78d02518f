"""REINFORCE++-baseline advantages do not depend on the world size: 1 rank vs 2 gloo ranks.

The trainer splits a step's prompts over ranks (every rollout of a prompt on one rank), centres each
group on its rank, then whitens over the global batch weighted by tokens, with all-reduces. The same
batch computed by one process and by two (each holding half the groups) must give the same advantage
for every turn of every episode.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from baselines.grpo.config import GRPOConfig  # noqa: E402
from baselines.grpo.distributed import DistContext  # noqa: E402
from baselines.grpo.rollout import Episode  # noqa: E402
from baselines.grpo.trainer import episode_advantages_for  # noqa: E402

GROUPS, SIZE = 4, 3


def _episodes(groups: range) -> list[Episode]:
    """Deterministic multi-turn episodes of different lengths; local group ids start at 0."""
    out = []
    for local, g in enumerate(groups):
        for i in range(SIZE):
            turns = 1 + (g + i) % 3
            ep = Episode(group=local, prompt_ids=[1, 2])
            for t in range(turns):
                ep.append([5] * (2 + (3 * g + 5 * i + t) % 7), model=True, turn=t)
                ep.append([6, 6], model=False, turn=t)
            ep.turn_rewards = [0.05 * ((g + t) % 2) for t in range(turns - 1)] + [float((g * 7 + i * 3) % 4) / 3.0]
            if (g, i) == (2, 1):  # an infrastructure fault: left out of its group and of the whitening
                ep.metrics = {"env_error": 1.0}
            out.append(ep)
    return out


def _config(turn_level: bool) -> GRPOConfig:
    return GRPOConfig(advantage="reinforce_baseline", group_size=SIZE, turn_level_returns=turn_level)


def _worker(rank: int, world: int, port: int, path: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    ctx = DistContext(rank=rank, world_size=world, local_rank=rank, device=torch.device("cpu"))
    share = GROUPS // world
    episodes = _episodes(range(rank * share, (rank + 1) * share))
    result = {str(level): episode_advantages_for(episodes, share, _config(level), ctx) for level in (False, True)}
    with open(f"{path}.{rank}", "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_ranks(path: str) -> None:
    """This file as a script, once per rank (a plain ``import tests...`` in a child would find
    OpenRLHF's top-level ``tests`` package)."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, __file__, str(rank), "2", port, path], env=env, cwd=root,
                              stderr=subprocess.PIPE, text=True, start_new_session=True) for rank in range(2)]
    try:
        errors = [p.communicate(timeout=120)[1] for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            os.killpg(p.pid, signal.SIGKILL)
        pytest.fail("the gloo ranks did not finish in 120 s")
    assert all(p.returncode == 0 for p in procs), "\n".join(e[-2000:] for e in errors)


def test_one_rank_and_two_ranks_give_identical_advantages(tmp_path):
    single = {str(level): episode_advantages_for(_episodes(range(GROUPS)), GROUPS, _config(level)) for level in (False, True)}
    path = str(tmp_path / "adv")
    _run_two_ranks(path)
    ranks = [json.loads(open(f"{path}.{r}").read()) for r in range(2)]
    for level in ("False", "True"):
        two = ranks[0][level] + ranks[1][level]
        assert [a is None for a in two] == [a is None for a in single[level]] and two.count(None) == 1
        diffs = [abs(x - y) for a, b in zip(single[level], two, strict=True) if a is not None
                 for x, y in zip(a, b, strict=True)]
        assert max(diffs) < 1e-12, max(diffs)
        # and it is whitened: token-weighted mean 0, variance 1 over the kept episodes' tokens
        eps = _episodes(range(GROUPS))
        pairs = [(x, n) for ep, a in zip(eps, single[level], strict=True) if a is not None
                 for x, n in zip(a, ep.turn_token_counts(), strict=True)]
        total = sum(n for _, n in pairs)
        mean = sum(x * n for x, n in pairs) / total
        assert mean == pytest.approx(0.0, abs=1e-12)
        assert sum(n * (x - mean) ** 2 for x, n in pairs) / total == pytest.approx(1.0)
    sys.stdout.write(f"max abs diff 1 vs 2 ranks: {max(diffs):.3e}\n")


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
