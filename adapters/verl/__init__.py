"""verl 0.9.1 adapter: an agent loop over any suite env, a parquet dataset writer and a launcher.

``python -m adapters.verl --env <id> --model <path> --dry-run`` writes the dataset and prints the
``verl.trainer.main_ppo`` command line. Importing this package is light; ``adapters.verl.agent_loop``
(loaded by verl's agent-loop workers) needs ``verl``.
"""

from pathlib import Path

from adapters.verl.dataset import verl_rows, write_parquet

AGENT_LOOP_CONFIG = Path(__file__).with_name("agent_loop.yaml")

__all__ = ["AGENT_LOOP_CONFIG", "verl_rows", "write_parquet"]
