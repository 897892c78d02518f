"""OpenRLHF 0.11.2 adapter: prompt datasets, the multi-turn agent file, presets and the launcher.

``python -m adapters.openrlhf --env <id> --model <path>`` writes everything a run needs and starts
``openrlhf.cli.train_ppo_ray``. Importing this package is light; ``adapters.openrlhf.agent`` (loaded
inside OpenRLHF's vLLM actors) needs ``openrlhf`` and ``torch``.
"""

from adapters.openrlhf.presets import PRESETS, Preset, default_preset

__all__ = ["PRESETS", "Preset", "default_preset"]
