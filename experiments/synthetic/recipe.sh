#!/usr/bin/env bash
# The whole synthetic-world text-to-video recipe on one GPU, inside one 10-minute device call:
#   1. train the VAE (configs/vae_synthetic.py, <= VAE_SECONDS of training, compiles included), and score it
#      on VAE_EVAL_NUM held-out clips (issue 3's figure, as vae_recipe.sh; 0 to skip)
#   2. encode CLIPS synthetic clips (configs/small.py's data: native aspect, ~128x128, 17 frames or images)
#   3. train the DiT (configs/small.py, <= DIT_SECONDS, compiles included)
#   4. evaluate: 64 held-out prompts -> videos -> describe() -> colour / shape / motion accuracy
#   5. evaluate the modes (MODES_NUM cases each, 0 to skip): image-to-video first-frame PSNR, forward
#      extension continuity, loop seams, text-to-image colour/shape accuracy (jaxsora eval-modes)
#
#   bash experiments/synthetic/recipe.sh [RUNS_DIR]
#
# JAXSORA may name the command (default `jaxsora`; `python -m jaxsora.cli` where the package is not installed).
set -euo pipefail
runs=${1:-runs}
jaxsora=${JAXSORA:-jaxsora}
t0=$SECONDS
stamp() { echo "[recipe] $1 at $((SECONDS - t0)) s"; }
$jaxsora train-vae --config configs/vae_synthetic.py --workdir "$runs/vae" \
  --config.vae_train.time_limit_s="${VAE_SECONDS:-170}"
stamp "VAE trained"
if [ "${VAE_EVAL_NUM:-256}" -gt 0 ]; then
  $jaxsora eval-vae --workdir "$runs/vae" --num "${VAE_EVAL_NUM:-256}" --config.data.max_pixels=16384
  stamp "VAE evaluated"
fi
$jaxsora encode --vae "$runs/vae" --config configs/small.py --out "$runs/latents" --max-clips "${CLIPS:-12000}" \
  --part-size 2000
stamp "latents encoded"
$jaxsora train --config configs/small.py --workdir "$runs/dit" --config.train.latents="$runs/latents" \
  --config.train.time_limit_s="${DIT_SECONDS:-230}" ${DIT_ARGS:-}
stamp "DiT trained"
$jaxsora eval-dit --workdir "$runs/dit" --num "${EVAL_NUM:-64}" --sizes "${EVAL_SIZES:-128x128}"
stamp "evaluated"
if [ "${MODES_NUM:-32}" -gt 0 ]; then
  $jaxsora eval-modes --workdir "$runs/dit" --num "${MODES_NUM:-32}" --sizes "${EVAL_SIZES:-128x128}"
  stamp "modes evaluated"
fi
