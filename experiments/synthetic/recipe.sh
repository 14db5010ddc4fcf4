#!/usr/bin/env bash
# The whole synthetic-world text-to-video recipe on one GPU, inside one 10-minute device call:
#   1. train the VAE (configs/vae_synthetic.py, <= VAE_SECONDS of training, compiles included), and score it
#      on VAE_EVAL_NUM held-out clips (issue 3's figure, as vae_recipe.sh; 0 to skip)
#   2. encode CLIPS synthetic clips (configs/small.py's data: native aspect, ~128x128, 17 frames or images)
#   3. train the DiT (configs/small.py, <= DIT_SECONDS, compiles included)
#   4. evaluate: 64 held-out prompts -> videos -> describe() -> colour / shape / motion accuracy
#   5. evaluate the modes (MODES_NUM cases each, default 32, as issue 5 asks; 0 to skip): image-to-video first-frame PSNR, forward
#      extension continuity, loop seams, text-to-image colour/shape accuracy (jaxsora eval-modes)
#
#   bash experiments/synthetic/recipe.sh [RUNS_DIR]
#
# The defaults are sized to end inside one 10-minute device call on an H100 (the last run, 2026-11-23, took
# 575 s with VAE_SECONDS=140 CLIPS=5000 DIT_SECONDS=190 MODES_NUM=16 and no eval-vae: the VAE stage takes
# ~10 s more than its limit, encoding 5000 clips ~95 s, eval-dit ~40 s, eval-modes ~75 s at 16 cases).
#
# JAXSORA may name the command (default `jaxsora`; `python -m jaxsora.cli` where the package is not installed).
set -euo pipefail
runs=${1:-runs}
jaxsora=${JAXSORA:-jaxsora}
# One persistent compilation cache for every stage: eval-vae and encode code the same clip shapes in the same
# batch sizes (eval-vae is given configs/small.py's batch settings below), eval-dit and eval-modes sample the
# same grids, so each of those compiles once per recipe.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$runs/jax_cache}
t0=$SECONDS
stamp() { echo "[recipe] $1 at $((SECONDS - t0)) s"; }
$jaxsora train-vae --config configs/vae_synthetic.py --workdir "$runs/vae" \
  --config.vae_train.time_limit_s="${VAE_SECONDS:-130}"
stamp "VAE trained"
if [ "${VAE_EVAL_NUM:-256}" -gt 0 ]; then
  $jaxsora eval-vae --workdir "$runs/vae" --num "${VAE_EVAL_NUM:-256}" --config.data.max_pixels=16384 \
    --config.data.max_batch_pixels=$((32 * 17 * 128 * 128)) --config.data.max_batch_size=64
  stamp "VAE evaluated"
fi
$jaxsora encode --vae "$runs/vae" --config configs/small.py --out "$runs/latents" --max-clips "${CLIPS:-5000}" \
  --part-size 2000
stamp "latents encoded"
$jaxsora train --config configs/small.py --workdir "$runs/dit" --config.train.latents="$runs/latents" \
  --config.train.time_limit_s="${DIT_SECONDS:-180}" ${DIT_ARGS:-}
stamp "DiT trained"
$jaxsora eval-dit --workdir "$runs/dit" --num "${EVAL_NUM:-64}" --sizes "${EVAL_SIZES:-128x128}"
stamp "evaluated"
if [ "${MODES_NUM:-32}" -gt 0 ]; then
  $jaxsora eval-modes --workdir "$runs/dit" --num "${MODES_NUM:-32}" --sizes "${EVAL_SIZES:-128x128}"
  stamp "modes evaluated"
fi
