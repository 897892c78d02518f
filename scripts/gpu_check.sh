#!/usr/bin/env bash
# GPU check for a lent machine (one GPU, torch + transformers, no vLLM, no network), < 5 minutes:
#   1. builds a ~100M-parameter random Qwen2 (the tiny model's tokenizer) locally,
#   2. runs 4 GRPO steps with HF rollouts in bf16 through the FSDP2 path on one rank (torchrun),
#   3. runs the evaluation CLI on the checkpoint,
# printing step time, rollout tokens/s and peak GPU memory. Run from the repository root:
#   bash scripts/gpu_check.sh          # on the GPU machine
#   bash scripts/gpu_check.sh --cpu    # the same steps on CPU (tiny model, fp32, gloo): exercises the script
set -euo pipefail
cd "$(dirname "$0")/.."
CPU=0
[ "${1:-}" = "--cpu" ] && CPU=1
OUT="${OUT:-$(mktemp -d)}/gpu_check"
mkdir -p "$OUT"
export AGENTR1_GYM_CACHE="$OUT/cache" PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY="${PYTHON:-python}"
start=$(date +%s)

"$PY" - <<'PY'
import torch, transformers
print(f"torch {torch.__version__}, transformers {transformers.__version__}, cuda {torch.cuda.is_available()}")
if torch.cuda.is_available():
    print(f"gpu: {torch.cuda.get_device_name(0)}, bf16 {torch.cuda.is_bf16_supported()}")
PY
[ "$CPU" = 1 ] || "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no GPU: use --cpu')"

if [ "$CPU" = 1 ]; then
  MODEL=$("$PY" -c "from baselines.tiny import build_tiny_model; print(build_tiny_model())")
  EVAL_ARGS=(--device cpu --dtype float32 --limit 16 --max-new-tokens 16)
  TRAIN_ARGS=(--cpu --steps 2)
else
  MODEL=$("$PY" -c "from benchmarks.trainer import model_dir; print(model_dir('qwen2-100m'))")
  EVAL_ARGS=(--device cuda --dtype bfloat16 --limit 128 --max-new-tokens 128 --batch-items 128 --batch-size 128)
  TRAIN_ARGS=(--steps 4)
fi
echo "model: $MODEL (built in $(( $(date +%s) - start )) s)"

"$PY" -m torch.distributed.run --standalone --nproc-per-node 1 benchmarks/gpu_check.py --model "$MODEL" \
  --output-dir "$OUT/grpo" "${TRAIN_ARGS[@]}" | tee "$OUT/train.log"
CKPT=$(sed -n 's/^RESULT //p' "$OUT/train.log" | "$PY" -c "import json, sys; print(json.load(sys.stdin)['checkpoint'])")

t0=$(date +%s)
"$PY" -m baselines.evaluate --env arithmetic-v0 --model "$CKPT" --backend hf "${EVAL_ARGS[@]}" \
  --env-kwargs '{"digits": 1, "num_operations": 1, "operations": "+", "calculator": false}' --output-dir "$OUT/eval"
test -s "$OUT/eval/summary.json"
echo "evaluation: $(( $(date +%s) - t0 )) s; total $(( $(date +%s) - start )) s; outputs in $OUT"
