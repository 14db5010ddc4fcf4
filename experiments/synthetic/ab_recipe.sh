#!/usr/bin/env bash
# Two variants of the text-to-video recipe side by side, one per GPU of a two-GPU machine (each its own VAE,
# latents and DiT: the spread between the arms includes run-to-run noise), then eval-dit again at more
# guidance scales on each arm's checkpoint. Written for the device's nvidia-h200-x2 kind.
#
#   ARM_A="" ARM_B="--config.train.optim.lr=1e-3" bash experiments/synthetic/ab_recipe.sh RUNS OUT
#
# ARM_A / ARM_B are DIT_ARGS for recipe.sh; GUIDANCES (default "7"; "" for none) the extra eval-dit scales. Each arm's log
# goes to OUT/log_<arm>.txt and its eval JSONs to OUT/eval_dit_<arm>_g<scale>.json. recipe.sh's other
# variables pass through (the defaults here skip eval-vae and eval-modes: VAE_EVAL_NUM=0 MODES_NUM=0).
set -uo pipefail
runs=${1:-runs}
out=${2:-out}
mkdir -p "$out"
export VAE_EVAL_NUM=${VAE_EVAL_NUM:-0} MODES_NUM=${MODES_NUM:-0}
jaxsora=${JAXSORA:-jaxsora}
arm() {
  local name=$1 gpu=$2 args=$3
  local dir="$runs/$name"
  (
    export CUDA_VISIBLE_DEVICES=$gpu DIT_ARGS="$args"
    bash "$(dirname "$0")/recipe.sh" "$dir"
    cp "$dir/dit/eval_dit.json" "$out/eval_dit_${name}_g4.json"
    for g in ${GUIDANCES-7}; do
      JAX_COMPILATION_CACHE_DIR="$dir/jax_cache" $jaxsora eval-dit --workdir "$dir/dit" --num "${EVAL_NUM:-64}" \
        --sizes "${EVAL_SIZES:-128x128}" --guidance "$g" | grep -v "^per-case"
      cp "$dir/dit/eval_dit.json" "$out/eval_dit_${name}_g${g}.json"
    done
  ) > "$out/log_$name.txt" 2>&1
  echo "[ab] arm $name (gpu $gpu, DIT_ARGS='$args') exited $?"
}
arm a 0 "${ARM_A:-}" &
arm b 1 "${ARM_B:-}" &
wait
