"""TRL 1.16 adapter: ``GRPOTrainer(environment_factory=...)`` classes, prompt rows, presets and a CLI.

``python -m adapters.trl --env <id> --model <path>`` writes the dataset and trains with a preset.
Importing this package is light (no ``trl``/``torch``); building a class needs ``transformers`` for
the tokenizer only.
"""

from adapters.trl.dataset import trl_rows
from adapters.trl.environment import LABEL_KEY, SuiteEnvironment, make_trl_environment, tool_method

__all__ = ["LABEL_KEY", "SuiteEnvironment", "make_trl_environment", "tool_method", "trl_rows"]
