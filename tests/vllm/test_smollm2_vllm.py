"""SmolLM2-135M-Instruct on vLLM-CPU: the converted directory loads, greedy vLLM plays exactly HF's
episodes, and GRPO with vLLM rollouts refreshes a real model's weights in the engine."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from baselines.grpo.config import make_config
from baselines.grpo.rollout import HFGenerator, Sampling
from baselines.grpo.trainer import GRPOTrainer

ROOT = Path(__file__).resolve().parents[2]
ONE_DIGIT = {"digits": 1, "num_operations": 1, "operations": "+", "calculator": False, "style": "expression",
             "test_fraction": 0.5}
MEAN_TOL, MAX_TOL = 1e-4, 5e-3  # fp32 engine vs fp32 trainer, 30 layers: rounding only


def _evaluate(out: Path, backend: str) -> list:
    cmd = [sys.executable, "-m", "baselines.evaluate", "--env", "arithmetic-v0", "--model", "smollm2-135m",
           "--backend", backend, "--limit", "8", "--temperature", "0", "--max-new-tokens", "32", "--device", "cpu",
           "--env-kwargs", json.dumps({**ONE_DIGIT, "split": "test"}), "--output-dir", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line)["samples"][0]["responses"] for line in (out / "items.jsonl").read_text().splitlines()]


def test_vllm_evaluation_of_smollm2_matches_hf(smollm2_dir, tmp_path):
    vllm = _evaluate(tmp_path / "vllm", "vllm")
    assert len(vllm) == 8 and all(r[0].strip() for r in vllm)
    assert vllm == _evaluate(tmp_path / "hf", "hf")


@pytest.fixture(scope="module")
def trainer(smollm2_dir, tmp_path_factory):
    # numba (bm25s's fast backend, SynthHop's retrieval) imported before the engine starts: vLLM's kernel
    # scan used to die on llvmlite's lazy proxy (baselines.grpo.vllm_engine._UNSCANNABLE_MODULES)
    if importlib.util.find_spec("numba") is not None:
        import numba  # noqa: F401
    cfg = make_config("smollm2_arithmetic", model=str(smollm2_dir), backend="vllm", steps=2, prompts_per_step=2,
                      group_size=4, max_new_tokens=24, dtype="float32", vllm_dtype="float32", lr=1e-4,
                      vllm_logprob_check_every=1, env_kwargs={**ONE_DIGIT, "split": "train"}, save_every=0,
                      tensorboard=False, progress=False, output_dir=str(tmp_path_factory.mktemp("smollm2-vllm")))
    t = GRPOTrainer(cfg, device="cpu")
    yield t
    t.close()


def test_grpo_steps_and_weight_refresh_on_a_real_model(trainer):
    import torch

    from baselines.grpo.distributed import iter_full_tensors

    resets, _ = trainer.step_resets(0)
    prompts = [trainer.chat.prompt_ids(trainer.envs[i].reset(**resets[i])[1]) for i in range(0, len(resets), 4)]
    greedy = Sampling(temperature=0.0, max_new_tokens=16)
    hf = HFGenerator(trainer.model, trainer.tokenizer, trainer.chat.stop_ids)

    def engine():
        return trainer.generator.generate(prompts, [16] * len(prompts), greedy)

    before = engine()
    assert before == hf.generate(prompts, [16] * len(prompts), greedy)
    history = [trainer.train_step(step) for step in range(2)]
    for m in history:
        assert m["episodes"] == 8 and m["time/sync"] > 0
        assert m["rollout/logprob_gap_mean_abs"] < MEAN_TOL and m["rollout/logprob_gap_max_abs"] < MAX_TOL, m
    # GRPO moves the weights only where a group's rewards differ; move them for certain, then refresh the
    # engine as the trainer does after every step: it must sample from the new weights (HF's greedy replies)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for p in trainer.model.parameters():
            p.add_(torch.randn_like(p) * p.abs().mean() * 0.2)
    trainer.generator.sync_weights(iter_full_tensors(trainer.model, trainer.generator.torch_dtype))
    after = engine()
    assert after == hf.generate(prompts, [16] * len(prompts), greedy)
    assert after != before
