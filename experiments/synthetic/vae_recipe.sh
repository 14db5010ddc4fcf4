#!/usr/bin/env bash
# The synthetic-world VAE recipe on one GPU: train (at most 3 minutes, compiles included), then evaluate on
# 256 held-out clips of mixed aspect ratios (128x128 pixels per frame) and time encode/decode at 256x256 and 1280x720.
#
#   bash experiments/synthetic/vae_recipe.sh [RUNS_DIR]
#
# JAXSORA may name the command (default `jaxsora`; `python -m jaxsora.cli` where the package is not installed).
set -euo pipefail
runs=${1:-runs}
jaxsora=${JAXSORA:-jaxsora}
$jaxsora train-vae --config configs/vae_synthetic.py --workdir "$runs/vae" --config.vae_train.time_limit_s=180
$jaxsora eval-vae --workdir "$runs/vae" --num 256 --throughput 256x256,1280x720 --config.data.max_pixels=16384
