"""SmolLM2-135M-Instruct, a real pretrained model, through the HF paths: GRPO steps and evaluation.

What a random tiny model cannot show: the real chat template (its default system turn, ``<|im_end|>``
as the stop token), loss masks on a real tokenizer's tokens, and a policy that moves under GRPO.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from baselines.grpo.config import make_config  # noqa: E402
from baselines.grpo.rollout import run_episodes  # noqa: E402
from baselines.grpo.trainer import GRPOTrainer  # noqa: E402

ONE_DIGIT = {"digits": 1, "num_operations": 1, "operations": "+", "calculator": False, "style": "expression",
             "split": "train", "test_fraction": 0.5}


@pytest.mark.slow
def test_two_grpo_steps_on_smollm2(smollm2_dir, tmp_path):
    import torch

    cfg = make_config("smollm2_arithmetic", model=str(smollm2_dir), backend="hf", steps=2, prompts_per_step=2,
                      group_size=2, max_new_tokens=24, dtype="float32", lr=1e-4, env_kwargs=ONE_DIGIT,
                      output_dir=str(tmp_path), save_every=0, tensorboard=False, progress=False)
    trainer = GRPOTrainer(cfg, device="cpu")
    try:
        tok = trainer.tokenizer
        end_of_turn = tok.convert_tokens_to_ids("<|im_end|>")
        assert trainer.chat.stop_ids == [end_of_turn]
        resets, groups = trainer.step_resets(0)
        episodes = run_episodes(trainer.generator, trainer.chat, trainer.envs, resets, groups, trainer.sampling,
                                cfg.max_episode_tokens)
        for ep in episodes:
            prompt = tok.decode(ep.prompt_ids)
            assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
            assert "Compute " in prompt and "<|im_end|>" in prompt
            assert ep.action_mask == [1] * len(ep.tokens)  # one turn: every token after the prompt is the model's
            assert ep.tokens[-1] == end_of_turn or len(ep.tokens) == cfg.max_new_tokens
            assert end_of_turn not in ep.tokens[:-1]
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "layers.0." in n}
        history = [trainer.train_step(step) for step in range(2)]
    finally:
        trainer.close()
    for m in history:
        assert m["episodes"] == 4 and all(v == v for v in (m["loss"], m["grad_norm"], m["entropy"]))
    moved = [n for n, p in trainer.model.named_parameters() if n in before and not torch.equal(p, before[n])]
    # a group whose two rewards tie has zero advantage: the weights move only if some group differed
    assert moved or all(m["reward_std"] == 0 for m in history)


@pytest.mark.slow
def test_evaluate_smollm2_by_name(smollm2_dir, tmp_path):
    from baselines.evaluate import main

    assert main(["--env", "arithmetic-v0", "--model", "smollm2-135m", "--limit", "8", "--temperature", "0",
                 "--max-new-tokens", "48", "--env-kwargs", json.dumps({**ONE_DIGIT, "split": "test"}),
                 "--output-dir", str(tmp_path), "--device", "cpu"]) == 0
    records = [json.loads(line) for line in (tmp_path / "items.jsonl").read_text().splitlines()]
    assert len(records) == 8
    assert all(r["samples"][0]["responses"][0].strip() for r in records)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["model"] == "smollm2-135m" and 0.0 <= summary["pass@1"] <= 1.0
