"""GRPO (and RLOO / REINFORCE++-baseline) over multi-turn suite envs: ``python -m baselines.grpo``.

Importing this package is light; torch and transformers load when a trainer is built.
"""

from baselines.grpo.config import GRPOConfig, load_preset, make_config

__all__ = ["GRPOConfig", "GRPOTrainer", "load_preset", "make_config"]


def __getattr__(name: str):
    if name == "GRPOTrainer":
        from baselines.grpo.trainer import GRPOTrainer

        return GRPOTrainer
    raise AttributeError(name)
