"""The reference trainer on a real vLLM engine: rollouts, weight refresh, rollout/trainer agreement.

Three GRPO steps with vLLM rollouts on the tiny model; after every step the trainer's weights go
into the engine with ``reload_weights``. Checked: the engine's greedy output and log-probs follow
the *new* weights (they differ from what the engine produced before the refresh and equal the HF
model's), and the per-step log-prob gap between engine and trainer stays at float32 rounding level.
"""

from __future__ import annotations

import pytest

from baselines.grpo.config import make_config
from baselines.grpo.rollout import HFGenerator, Sampling
from baselines.grpo.trainer import GRPOTrainer

# fp32 engine vs fp32 trainer: different kernels, same maths. Measured here: mean |diff| ~1e-6,
# max ~1e-5; bf16 rollouts against an fp32 trainer are off by up to 0.28 (what this guards against).
MEAN_TOL, MAX_TOL = 1e-4, 2e-3


@pytest.fixture(scope="module")
def trainer(tiny_model_dir, tmp_path_factory):
    cfg = make_config("arithmetic_cpu", model=str(tiny_model_dir), backend="vllm", steps=3, prompts_per_step=4,
                      group_size=4, save_every=0, tensorboard=False, progress=False, beta=0.04, lr=5e-3,
                      vllm_logprob_check_every=1, output_dir=str(tmp_path_factory.mktemp("grpo-vllm")))
    t = GRPOTrainer(cfg, device="cpu")
    yield t
    t.close()


def _engine_view(trainer, prompts):
    greedy = Sampling(temperature=0.0, max_new_tokens=10)
    return trainer.generator.generate(prompts, [10] * len(prompts), greedy)


def test_three_steps_with_weight_sync_follow_the_new_weights(trainer):
    assert trainer.generator.settings.dtype == "float32"  # the trainer's CPU compute dtype
    resets, _ = trainer.step_resets(0)
    envs = trainer.envs
    prompts = [trainer.chat.prompt_ids(envs[i].reset(**resets[i])[1]) for i in range(0, len(resets), 4)]
    before = _engine_view(trainer, prompts)
    hf = HFGenerator(trainer.model, trainer.tokenizer, trainer.chat.stop_ids)
    assert before == hf.generate(prompts, [10] * len(prompts), Sampling(temperature=0.0, max_new_tokens=10))
    history = [trainer.train_step(step) for step in range(3)]
    for m in history:
        assert m["episodes"] == 16 and m["time/sync"] > 0
        assert m["rollout/logprob_gap_mean_abs"] < MEAN_TOL, m
        assert m["rollout/logprob_gap_max_abs"] < MAX_TOL, m
    assert history[-1]["kl"] > 0  # the policy moved away from the reference
    after = _engine_view(trainer, prompts)
    assert after == hf.generate(prompts, [10] * len(prompts), Sampling(temperature=0.0, max_new_tokens=10))
    assert after != before  # lr 5e-3 for 3 steps changes the greedy replies; the engine saw it
    # the engine's log-probs of a fresh sequence equal the updated HF model's
    episodes = [e for e in _rollout(trainer)][:4]
    gap = trainer.logprob_gap(episodes)
    assert gap["mean_abs"] < MEAN_TOL and gap["max_abs"] < MAX_TOL, gap


def _rollout(trainer):
    from baselines.grpo.rollout import run_episodes

    resets, groups = trainer.step_resets(7)
    return run_episodes(trainer.generator, trainer.chat, trainer.envs, resets, groups, trainer.sampling,
                        trainer.cfg.max_episode_tokens)
