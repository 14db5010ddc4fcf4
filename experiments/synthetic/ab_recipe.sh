#!/usr/bin/env bash
# Two variants of the text-to-video recipe side by side, one per GPU of a two-GPU machine (each its own VAE,
# latents and DiT: the spread between the arms includes run-to-run noise), then eval-dit again with other
# sampling settings on each arm's checkpoint. Written for the device's nvidia-h200-x2 kind.
#
#   ARM_A="" ARM_B="--config.train.optim.lr=1e-3" EXTRA_EVALS="--guidance 7;--sampler heun" \
#     bash experiments/synthetic/ab_recipe.sh RUNS OUT
#   ENV_A="" ENV_B="CLIPS=12000" EXTRA_EVALS="" bash experiments/synthetic/ab_recipe.sh RUNS OUT
#
# ARM_A / ARM_B are DIT_ARGS for recipe.sh, VAE_A / VAE_B its VAE_ARGS; ENV_A / ENV_B are recipe.sh variables for one arm only
# ("NAME=value ..." pairs, e.g. CLIPS or DIT_SECONDS). EXTRA_EVALS (default "--guidance 7"; "" for none) are
# eval-dit argument sets separated by ";", each run after the recipe; EXTRA_A / EXTRA_B replace it for one arm. Each arm's log goes to OUT/log_<arm>.txt, the
# recipe's eval JSON to OUT/eval_dit_<arm>.json, the extra ones to OUT/eval_dit_<arm>_x<k>.json (k from 1; the
# settings are in each JSON's summary) and eval-modes' to OUT/eval_modes_<arm>.json. recipe.sh's other
# variables pass through (the defaults here skip eval-vae and eval-modes: VAE_EVAL_NUM=0 MODES_NUM=0).
set -uo pipefail
runs=${1:-runs}
out=${2:-out}
mkdir -p "$out"
export VAE_EVAL_NUM=${VAE_EVAL_NUM:-0} MODES_NUM=${MODES_NUM:-0}
jaxsora=${JAXSORA:-jaxsora}
arm() {
  local name=$1 gpu=$2 args=$3 envs=$4 extras=$5 vae_args=$6
  local dir="$runs/$name"
  (
    export CUDA_VISIBLE_DEVICES=$gpu DIT_ARGS="$args" VAE_ARGS="$vae_args"
    # shellcheck disable=SC2086  # NAME=value pairs, one word each
    [ -z "${envs// }" ] || export $envs
    bash "$(dirname "$0")/recipe.sh" "$dir"
    cp "$dir/dit/eval_dit.json" "$out/eval_dit_${name}.json"
    [ -f "$dir/dit/eval_modes.json" ] && cp "$dir/dit/eval_modes.json" "$out/eval_modes_${name}.json"
    k=0
    IFS=';' read -ra extra <<< "$extras"
    for settings in "${extra[@]}"; do
      [ -n "${settings// }" ] || continue
      k=$((k + 1))
      # shellcheck disable=SC2086  # each settings string is a list of eval-dit arguments
      JAX_COMPILATION_CACHE_DIR="$dir/jax_cache" $jaxsora eval-dit --workdir "$dir/dit" --num "${EVAL_NUM:-64}" \
        --sizes "${EVAL_SIZES:-128x128}" $settings | grep -v "^per-case"
      cp "$dir/dit/eval_dit.json" "$out/eval_dit_${name}_x${k}.json"
    done
  ) > "$out/log_$name.txt" 2>&1
  echo "[ab] arm $name (gpu $gpu, DIT_ARGS='$args', VAE_ARGS='$vae_args', env '$envs') exited $?"
}
extras=${EXTRA_EVALS---guidance 7}
arm a 0 "${ARM_A:-}" "${ENV_A:-}" "${EXTRA_A-$extras}" "${VAE_A:-}" &
arm b 1 "${ARM_B:-}" "${ENV_B:-}" "${EXTRA_B-$extras}" "${VAE_B:-}" &
wait
