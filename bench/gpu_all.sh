#!/usr/bin/env bash
# Every GPU check and benchmark of issue 11, in one go, for a session that is lent a GPU
# machine (see bench/RESULTS.md, "GPU"). Results land in bench/results/ and $OUT when set.
#   bash bench/gpu_all.sh            # about 10 minutes on one H200
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "GPUs", torch.cuda.device_count())
PY
# A real run on the GPU, resident and streamed, then its evaluation.
for placement in device stream; do
  timeout 180 python -m vae_core train --dataset fashion-mnist --body conv --device cuda --epochs 1 \
    --data-placement "$placement" --run-dir "/tmp/gpu-$placement" || true
  timeout 120 python -m vae_core eval "/tmp/gpu-$placement" --device cuda --k 100 --limit 1000 || true
done
# Throughput and time to quality on fashion-mnist, one GPU.
timeout 240 python bench/train_speed.py --device cuda --repeats 3 --seconds 10 --ttq-epochs 5 --no-adam || true
# The scale curve with the training on the GPU (the cache build stays on the CPU).
if [ -d bench/out/faces-200k ] || timeout 400 python bench/make_faces.py --n 200000 --workers 16; then
  timeout 600 python bench/scale.py --device cuda --no-browser --sizes 20000 200000 --pair-repeats 2 --name scale_cuda || true
fi
# One GPU vs DDP over every GPU at the same global batch.
n=$(python -c "import torch; print(torch.cuda.device_count())")
if [ "$n" -gt 1 ]; then
  timeout 300 python bench/ddp.py --device cuda --nproc "$n" --body conv --steps 300 --repeats 3 || true
fi
[ -n "${OUT:-}" ] && cp -r bench/results "$OUT"/ || true
