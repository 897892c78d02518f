"""The real-vLLM tier: collected only where vLLM is importable (``scripts/test_vllm.sh`` builds that venv).

vLLM's pins (torch, transformers) clash with the main test venv, so ``scripts/test.sh`` runs these
files from their own venv, one pytest process per file (each process owns one engine). Set
``AGENTR1_REQUIRE_VLLM=1`` to make a missing vLLM an error instead of a skip.
"""

from __future__ import annotations

import importlib.util
import os

if importlib.util.find_spec("vllm") is None:
    if os.environ.get("AGENTR1_REQUIRE_VLLM") == "1":
        raise RuntimeError("AGENTR1_REQUIRE_VLLM=1 but vllm is not importable")
    collect_ignore_glob = ["test_*.py"]
else:
    # small, CPU-friendly engines unless the caller chose otherwise
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


