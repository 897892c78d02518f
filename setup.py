"""What pyproject.toml cannot say: the checkout's envs/, adapters/ and baselines/ install as
agentr1_gym.envs, agentr1_gym.adapters and agentr1_gym.baselines (scripts/packaging/agentr1_build.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "scripts" / "packaging"))

from agentr1_build import setup_arguments  # noqa: E402
from setuptools import setup  # noqa: E402

setup(**setup_arguments())
