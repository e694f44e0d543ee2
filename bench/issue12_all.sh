#!/usr/bin/env bash
# Issue 12's CPU figures in one go, each beside its baseline taken in the same run (bench/RESULTS.md):
# training throughput against the plain reference and the matmul floor (1 and 2 threads), IWAE
# k=5000 against its matmul floor (1 and 2 threads), and the 30- vs 150-epoch MNIST runs against
# the reference at equal wall clock (3 repeats). About 25 minutes on a quiet 2-core machine.
#   bash bench/issue12_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
uptime
python bench/train_speed.py --threads 1,2 --repeats 3 --seconds 8 --ttq-epochs 0 --no-adam --name train_speed_issue12
python bench/eval_speed.py --repeats 3 --name eval_speed_floor_fashion-mnist_k5000
python bench/eval_speed.py --threads 1 --images 100 --repeats 3 --memory-ks 0 --name eval_speed_floor_fashion-mnist_k5000_1thread
python bench/cli_vs_reference.py --cli "" --cli "--epochs 150" --repeats 3 --name cli_vs_reference_mnist_issue12
uptime
