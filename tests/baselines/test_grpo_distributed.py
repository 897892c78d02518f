"""torchrun on CPU (gloo): two ranks share the prompts, train with DDP, and agree on the metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

pytest.importorskip("torch")


@pytest.mark.slow
def test_torchrun_two_ranks_ddp(tiny_model_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "baselines.grpo", "--config", "arithmetic_cpu", "--model", str(tiny_model_dir),
           "--output-dir", str(tmp_path), "--steps", "1", "--prompts-per-step", "4", "--group-size", "2",
           "--strategy", "ddp", "--progress", "false", "--tensorboard", "false", "--log-level", "WARNING"]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    # a session of its own, so a hang kills the workers too, not only torchrun
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=root,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("torchrun did not finish in 180 s")
    assert proc.returncode == 0, err[-3000:]
    final = json.loads(out.strip().splitlines()[-1])  # printed by rank 0 only
    assert final["step"] == 1
    ckpt = tmp_path / "checkpoints" / "step_000001"
    assert (ckpt / "rng_rank0.pt").is_file() and (ckpt / "rng_rank1.pt").is_file()
    assert json.loads((ckpt / "trainer_state.json").read_text())["world_size"] == 2


def test_hf_rollouts_never_run_on_an_fsdp_sharded_policy():
    """Under FSDP2 each forward is a collective: HF generate on ranks that stop at different lengths
    (or after different numbers of turns) would deadlock, so ``auto`` picks DDP and ``fsdp`` is refused."""
    import torch

    from baselines.grpo.distributed import DistContext, resolve_strategy

    gpus = DistContext(rank=0, world_size=4, local_rank=0, device=torch.device("cuda", 0))
    assert resolve_strategy("auto", gpus, "vllm") == "fsdp"
    assert resolve_strategy("auto", gpus, "hf") == "ddp"
    with pytest.raises(ValueError, match="ddp"):
        resolve_strategy("fsdp", gpus, "hf")
    single = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    assert resolve_strategy("auto", single, "hf") == "none" and resolve_strategy("fsdp", single, "hf") == "fsdp"
