#!/usr/bin/env bash
# Variants ("arms") of the text-to-video recipe side by side, one per GPU of a multi-GPU machine (each its own
# VAE, latents and DiT: the spread between the arms includes run-to-run noise), then eval-dit again with other
# sampling settings on each arm's checkpoint. Written for the device's nvidia-h200-x2 / -x4 / -x8 kinds: one
# 10-minute call tests as many arms as the machine has GPUs.
#
#   ARM_A="" ARM_B="--config.train.optim.lr=1e-3" EXTRA_EVALS="--guidance 7;--sampler heun" \
#     bash experiments/synthetic/ab_recipe.sh RUNS OUT
#   ENV_A="" ENV_B="CLIPS=12000" EXTRA_EVALS="" bash experiments/synthetic/ab_recipe.sh RUNS OUT
#   ARMS="a b c d" ARM_C='--config.patch=(1,1,1)' VAE_D="--config.vae_train.latent_noise=0.6" \
#     bash experiments/synthetic/ab_recipe.sh RUNS OUT
#
# ARMS names the arms (default "a b"; lower-case letters, digits and _), the i-th on GPU i (CUDA_VISIBLE_DEVICES;
# GPU_<ARM> overrides). For an arm named x, ARM_X is its DIT_ARGS for recipe.sh, VAE_X its VAE_ARGS, ENV_X
# recipe.sh variables for that arm only ("NAME=value ..." pairs, e.g. CLIPS or DIT_SECONDS); all default to
# empty: the recipe as committed. EXTRA_EVALS (default "--guidance 7"; "" for none) are eval-dit argument sets
# separated by ";", each run after the recipe; EXTRA_X replaces it for one arm. recipe.sh's other variables
# pass through (the defaults here skip eval-vae and eval-modes: VAE_EVAL_NUM=0 MODES_NUM=0).
#
# What comes back: the device returns at most 8 files from OUT, so OUT holds only
#   OUT/summary.txt     one line of figures per eval JSON (ab_summary.py)
#   OUT/arms.tar.gz     each arm's log_<arm>.txt, the recipe's eval_dit_<arm>.json, the extra evaluations'
#                       eval_dit_<arm>_x<k>.json (k from 1; the settings are in each JSON's summary) and
#                       eval-modes' eval_modes_<arm>.json
#   OUT/sheets_<n>.tar  eval-dit's contact sheets, sheet_<arm>[_x<k>].png, in tars of at most 15 MiB
# (files kept in RUNS/.collected), rewritten as each arm ends, every PACK_EVERY_S seconds (default 60) while
# arms run, and on SIGTERM/SIGINT: a call stopped at its time limit still returns its logs so far.
# `tar xzf arms.tar.gz` and `python experiments/synthetic/ab_summary.py eval_dit_*.json` read them here.
#
# ARMS_FILE names a bash file of such assignments (ARMS and the per-arm variables), sourced first: a committed
# set of arms, e.g. experiments/synthetic/arms/stars.sh. Where nvidia-smi lists fewer GPUs than there are arms,
# the first ones run (list arms in order of priority) and the rest are named as skipped.
set -uo pipefail
runs=${1:-runs}
out=${2:-out}
collect=$runs/.collected  # arm names cannot start with '.'
mkdir -p "$out" "$collect"
here=$(dirname "$0")
if [ -n "${ARMS_FILE:-}" ]; then
  # shellcheck disable=SC1090  # the arm set is chosen at run time
  source "$ARMS_FILE" || { echo "[ab] cannot read ARMS_FILE=$ARMS_FILE" >&2; exit 2; }
fi
export VAE_EVAL_NUM=${VAE_EVAL_NUM:-0} MODES_NUM=${MODES_NUM:-0}
jaxsora=${JAXSORA:-jaxsora}
read -ra arms <<< "${ARMS:-a b}"
gpus=$(nvidia-smi -L 2> /dev/null | grep -c "^GPU" || true)
if [ "${gpus:-0}" -gt 0 ] && [ "${#arms[@]}" -gt "$gpus" ]; then
  echo "[ab] $gpus GPUs for ${#arms[@]} arms: running ${arms[*]:0:$gpus}; skipped ${arms[*]:$gpus}"
  arms=("${arms[@]:0:$gpus}")
fi
for name in "${arms[@]}"; do
  if [[ ! $name =~ ^[a-z0-9_]+$ ]]; then
    echo "[ab] arm names are lower-case letters, digits and _ (ARMS='${ARMS:-}'), got '$name'" >&2
    exit 2
  fi
done
# pack: OUT's files from what RUNS/.collected holds now (see above). Each file is written beside and moved in,
# so a pack cut short leaves the previous one. Packs from several arms take turns: a lock directory holding
# its owner's pid, taken over when that process is gone (a pack killed while holding it), given up after 30 s.
pack() {
  local lock=$runs/.pack.lock tmp=$runs/.pack.$BASHPID n=1 size=0 f s owner
  local -a batch=() evals=()
  for _ in $(seq 150); do
    if mkdir "$lock" 2> /dev/null; then
      echo "$BASHPID" > "$lock/pid"
      break
    fi
    owner=$(cat "$lock/pid" 2> /dev/null)
    if [ -n "$owner" ] && ! kill -0 "$owner" 2> /dev/null; then
      rm -rf "$lock"
      continue
    fi
    sleep 0.2
  done
  rm -rf "$tmp" && mkdir -p "$tmp"
  shopt -s nullglob
  evals=("$collect"/eval_dit_*.json)
  if [ ${#evals[@]} -gt 0 ]; then
    python3 "$here/ab_summary.py" "${evals[@]}" > "$tmp/summary.txt" 2>&1
    mv -f "$tmp/summary.txt" "$out/summary.txt"
  fi
  # Logs still being written: GNU tar then warns "file changed as we read it" and exits 1; the pack is good.
  tar -czf "$tmp/arms.tar.gz" -C "$collect" --exclude='sheet_*' --warning=no-file-changed .
  [ $? -gt 1 ] || mv -f "$tmp/arms.tar.gz" "$out/arms.tar.gz"
  for f in "$collect"/sheet_*.png; do
    s=$(stat -c %s "$f")
    if [ ${#batch[@]} -gt 0 ] && [ $((size + s)) -gt $((15 << 20)) ]; then
      tar -cf "$tmp/sheets_$n.tar" -C "$collect" "${batch[@]}"
      n=$((n + 1)) size=0 batch=()
    fi
    batch+=("${f##*/}") size=$((size + s))
  done
  [ ${#batch[@]} -eq 0 ] || tar -cf "$tmp/sheets_$n.tar" -C "$collect" "${batch[@]}"
  shopt -u nullglob
  if compgen -G "$tmp/sheets_*.tar" > /dev/null; then
    rm -f "$out"/sheets_*.tar
    mv -f "$tmp"/sheets_*.tar "$out/"
  fi
  rm -rf "$tmp" "$lock"
}
keep() { # keep FILE NAME: copies FILE, where it exists, to RUNS/.collected/NAME
  if [ -f "$1" ]; then cp "$1" "$collect/$2"; fi
}
arm() {
  local name=$1 gpu=$2 args=$3 envs=$4 extras=$5 vae_args=$6
  local dir="$runs/$name" status
  (
    export CUDA_VISIBLE_DEVICES=$gpu DIT_ARGS="$args" VAE_ARGS="$vae_args"
    # shellcheck disable=SC2086  # NAME=value pairs, one word each
    [ -z "${envs// }" ] || export $envs
    bash "$here/recipe.sh" "$dir"
    cp "$dir/dit/eval_dit.json" "$collect/eval_dit_${name}.json"
    keep "$dir/dit/eval_dit/sheet.png" "sheet_${name}.png"
    keep "$dir/dit/eval_modes.json" "eval_modes_${name}.json"
    k=0
    IFS=';' read -ra extra <<< "$extras"
    for settings in "${extra[@]}"; do
      [ -n "${settings// }" ] || continue
      k=$((k + 1))
      # The VAE's round trip of the prompts' true clips is the recipe's eval's (the same for every setting).
      # shellcheck disable=SC2086  # each settings string is a list of eval-dit arguments
      JAX_COMPILATION_CACHE_DIR="$dir/jax_cache" $jaxsora eval-dit --workdir "$dir/dit" --num "${EVAL_NUM:-64}" \
        --sizes "${EVAL_SIZES:-128x128}" --no-vae-ceiling $settings | grep -v "^per-case"
      cp "$dir/dit/eval_dit.json" "$collect/eval_dit_${name}_x${k}.json"
      keep "$dir/dit/eval_dit/sheet.png" "sheet_${name}_x${k}.png"
    done
  ) > "$collect/log_$name.txt" 2>&1
  status=$?
  echo "[ab] arm $name (gpu $gpu, DIT_ARGS='$args', VAE_ARGS='$vae_args', env '$envs') exited $status"
  pack
}
stop() {
  echo "[ab] stopped by a signal: packing what the arms have written so far"
  [ -z "${packer:-}" ] || kill "$packer" 2> /dev/null
  pack
  cat "$out/summary.txt" 2> /dev/null
  exit 143
}
trap stop TERM INT
extras=${EXTRA_EVALS---guidance 7}
arm_pids=()
(
  # The packer: a pack every PACK_EVERY_S while the arms run; on TERM it stops with its sleep (which would
  # otherwise hold the script's output open) between or right after a pack.
  trap 'kill "$nap" 2> /dev/null; exit 0' TERM
  trap - INT
  while true; do
    sleep "${PACK_EVERY_S:-60}" &
    nap=$!
    wait "$nap"
    pack
  done
) > "$runs/pack.log" 2>&1 &
packer=$!
i=0
for name in "${arms[@]}"; do
  up=${name^^}
  gpu_var=GPU_$up arm_var=ARM_$up env_var=ENV_$up extra_var=EXTRA_$up vae_var=VAE_$up
  arm "$name" "${!gpu_var:-$i}" "${!arm_var:-}" "${!env_var:-}" "${!extra_var-$extras}" "${!vae_var:-}" &
  arm_pids+=($!)
  i=$((i + 1))
done
for pid in "${arm_pids[@]}"; do wait "$pid"; done
kill "$packer" 2> /dev/null
pack
cat "$out/summary.txt" 2> /dev/null || echo "[ab] no arm wrote an evaluation"
