"""Shared fixtures: the tiny Qwen2 model (built once, cached under $AGENTR1_GYM_CACHE or ~/.cache)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from baselines.tiny import build_tiny_model

    return build_tiny_model()


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)
