"""``python -m baselines.evaluate --backend vllm`` on CPU: it writes its summary, and greedy vLLM
(fp32) plays exactly the episodes greedy HF ``generate`` plays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _evaluate(model_dir, out: Path, backend: str) -> dict:
    cmd = [sys.executable, "-m", "baselines.evaluate", "--env", "arithmetic-v0", "--model", str(model_dir),
           "--backend", backend, "--limit", "12", "--max-new-tokens", "24", "--device", "cpu",
           "--output-dir", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| env | model |" in done.stdout
    return json.loads((out / "summary.json").read_text())


def test_vllm_backend_writes_summary_and_matches_hf(tiny_model_dir, tmp_path):
    vllm_summary = _evaluate(tiny_model_dir, tmp_path / "vllm", "vllm")
    assert vllm_summary["backend"] == "vllm" and vllm_summary["items"] == 12
    assert vllm_summary["sampling"]["temperature"] == 0.0
    assert (tmp_path / "vllm" / "summary.md").is_file()
    hf_summary = _evaluate(tiny_model_dir, tmp_path / "hf", "hf")

    def responses(path):
        return [[s["responses"] for s in json.loads(line)["samples"]] for line in path.read_text().splitlines()]

    assert responses(tmp_path / "vllm" / "items.jsonl") == responses(tmp_path / "hf" / "items.jsonl")
    assert vllm_summary["pass@1"] == hf_summary["pass@1"]
    assert vllm_summary["mean"]["response_tokens"] == hf_summary["mean"]["response_tokens"]
