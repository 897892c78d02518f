"""Tensor parallel 2 on CPU: the refresh reaches both worker processes (through a safetensors file).

Checked: greedy output equals HF's before any refresh, and after perturbing the weights and refreshing
it equals HF's on the perturbed weights (and differs from before).
"""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="tensor parallel 2 needs 2 cores")


def test_refresh_reaches_every_tensor_parallel_worker(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import envs
    from baselines.grpo.rollout import ChatFormat, HFGenerator, Sampling
    from baselines.grpo.vllm_engine import VLLMGenerator, VLLMSettings

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    chat = ChatFormat(tok)
    env = envs.make("AgentR1/Arithmetic-v0")
    prompts = [chat.prompt_ids(env.reset(seed=i)[1]) for i in range(4)]
    env.close()
    engine = VLLMGenerator(str(tiny_model_dir), stop_ids=chat.stop_ids, seed=0,
                           settings=VLLMSettings(tensor_parallel_size=2, max_model_len=1024))
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"].count("|") == 1
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    hf = HFGenerator(model, tok, chat.stop_ids)
    greedy = Sampling(temperature=0.0, max_new_tokens=12)
    before = engine.generate(prompts, [12] * 4, greedy)
    assert before == hf.generate(prompts, [12] * 4, greedy)
    with torch.no_grad():
        noise = torch.Generator().manual_seed(1)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=noise) * 0.05)
    engine.sync_weights(model.state_dict().items())
    after = engine.generate(prompts, [12] * 4, greedy)
    assert after == hf.generate(prompts, [12] * 4, greedy)
    assert after != before
