#!/usr/bin/env bash
# The whole synthetic-world text-to-video recipe on one GPU, inside one 10-minute device call:
#   1. train the VAE (configs/vae_synthetic.py, <= VAE_SECONDS of training, compiles included), and score it
#      on VAE_EVAL_NUM held-out clips (issue 3's figure, as vae_recipe.sh; 0 to skip), beside step 3
#   2. encode CLIPS synthetic clips (configs/small.py's data: native aspect, ~128x128, 17 frames or images)
#   3. train the DiT (configs/small.py), started with step 2: it compiles while the encode runs, trains once
#      START_PARTS parts of 2000 clips are encoded (default 1; 0: once the latents are complete), takes in the
#      parts encoded later as it goes, and stops at the deadline (DIT_SECONDS=fill, the default) or DIT_SECONDS
#   4. evaluate: 64 held-out prompts -> videos -> describe() -> colour / shape / motion accuracy
#   5. evaluate the modes beside step 4 (MODES_NUM cases each, default 32, as issue 5 asks; 0 to skip):
#      image-to-video first-frame PSNR, forward extension continuity, loop seams, text-to-image colour/shape
#      accuracy (jaxsora eval-modes)
#
#   bash experiments/synthetic/recipe.sh [RUNS_DIR]
#
# The defaults are sized to end inside one 10-minute device call on an H100. On 2026-11-23 (fifth session,
# results/recipe_log_2026-11-23{c,d}.txt), run one after another the stages took: VAE 145 s (130 of training),
# eval-vae 98 s (an encoder and a decoder compilation for each of 12 clip shapes), encode 69 s, DiT 201 s (180
# of training), eval-dit 31 s, and eval-modes was cut off at 575 s. With eval-vae beside the DiT's training,
# as below, the whole recipe ended at 564 s (encode 100 s, eval-dit 42 s, eval-modes at 32 cases 75 s). In the
# sixth session (one H200 of two, results/recipe_log_2026-11-23f.txt; the DiT's compile down from ~41 s to
# ~31 s to its first step, NOTES DiT item 5) it ended at 519 s: VAE 142 s, encode 70 s, DiT 209 s, eval-dit
# 35 s, eval-modes 63 s. In the seventh session, on one H100 (results/recipe_log_2026-11-23h.txt, the time
# table on, loops decoded to their steady state), it ended at 528 s: VAE 138 s, encode 76 s, DiT 211 s,
# eval-dit 34 s, eval-modes 69 s. In the eighth session (one H200 of a pair, results/ab_log_2026-11-23k_a_
# committed.txt: 10,000 clips, DiT 200 s, eval-modes beside eval-dit) it ended at 524 s: VAE 140 s, encode
# 78 s, DiT 230 s (first step at 39 s), eval-dit 38 s and eval-modes 76 s after the DiT for both.
#
# From the sixteenth session (NOTES DiT item 17) the encode and the DiT start together, and the DiT's time
# counts from there; the runs above gave the DiT DIT_SECONDS (200) after the encode had ended. From the
# twentieth (item 21) the DiT trains on the first finished part instead of waiting for the whole encode.
#
# VAE_ARGS and DIT_ARGS add config overrides to the VAE's and the DiT's training; DEADLINE_S and EVAL_RESERVE_S
# set the DiT's time (below).
# JAXSORA may name the command (default `jaxsora`; `python -m jaxsora.cli` where the package is not installed).
set -euo pipefail
runs=${1:-runs}
mkdir -p "$runs"
jaxsora=${JAXSORA:-jaxsora}
# One persistent compilation cache for every stage: eval-vae and encode code the same clip shapes in the same
# batch sizes (eval-vae is given configs/small.py's batch settings below), eval-dit and eval-modes sample the
# same grids, so each of those compiles once per recipe.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$runs/jax_cache}
# The stages' progress bars, written to the logs, redraw every 10 s (jaxsora/progress.py's default for a log is
# 30 s): the training losses on the bars are the logs' only curve (TensorBoard's files stay on the machine).
export TQDM_MININTERVAL=${TQDM_MININTERVAL:-10}
t0=$SECONDS
stamp() { echo "[recipe] $1 at $((SECONDS - t0)) s"; }
# join_stage NAME PID LOG BAR WHAT: waits for a stage run in the background, prints its log without its
# progress-bar lines (those matching the regex BAR), says if it failed (the recipe goes on) and stamps WHAT.
join_stage() {
  local name=$1 pid=$2 log=$3 bar=$4 what=$5 status=0
  wait "$pid" || status=$?
  tr '\r' '\n' < "$log" | grep -v "^\s*$" | grep -v -E "$bar" || true
  [ "$status" -eq 0 ] || echo "[recipe] $name failed (exit $status): $log"
  stamp "$what"
}
# The VAE trains with noise on its latents (VAE_LATENT_NOISE, default 0.6; 0 as configs/vae_synthetic.py): a
# decoder that tolerates the DiT's imperfect latents (NOTES DiT items 10, 16; the default since the twentieth session).
$jaxsora train-vae --config configs/vae_synthetic.py --workdir "$runs/vae" \
  --config.vae_train.time_limit_s="${VAE_SECONDS:-130}" \
  --config.vae_train.latent_noise="${VAE_LATENT_NOISE:-0.6}" ${VAE_ARGS:-}
stamp "VAE trained"
# The encode and the DiT's training start together: the trainer builds its model and compiles its step while the
# encode writes the latents (it waits for their meta.json, which the encode writes first with the latent
# channels), and trains as soon as START_PARTS parts are finished, normalised by their clips' statistics (the
# step's inputs), taking in the later parts and at last the whole dataset's statistics (jaxsora/train/
# latent_feed.py; START_PARTS=0 waits for the whole dataset). The
# DiT's time limit counts from that common start, so it includes the encode: at most DEADLINE_S (from the
# recipe's start) minus what has passed minus EVAL_RESERVE_S (the DiT's start-up and last save, ~20-40 s, and
# the evaluations, ~40-80 s), and at least 60 s. DIT_SECONDS=fill (the default) gives it all of that; a number
# caps it. The encode gets 20% of the GPU memory, the DiT 55%, eval-vae (beside the DiT's training) 15%.
dit_seconds=${DIT_SECONDS:-fill}
dit_left=$((${DEADLINE_S:-570} - (SECONDS - t0) - ${EVAL_RESERVE_S:-110}))
if [ "$dit_seconds" = fill ]; then
  dit_seconds=$((dit_left > 60 ? dit_left : 60))
  echo "[recipe] the encode and the DiT get the ${dit_seconds} s left (DEADLINE_S=${DEADLINE_S:-570})"
elif [[ ! $dit_seconds =~ ^[0-9]+$ ]]; then
  echo "[recipe] DIT_SECONDS must be a whole number of seconds or 'fill', got '$dit_seconds'" >&2
  exit 2
elif [ "$dit_left" -lt "$dit_seconds" ]; then
  dit_seconds=$((dit_left > 60 ? dit_left : 60))
  echo "[recipe] the encode and the DiT get ${dit_seconds} s, not ${DIT_SECONDS} (DEADLINE_S=${DEADLINE_S:-570})"
fi
XLA_PYTHON_CLIENT_MEM_FRACTION=0.2 $jaxsora encode --vae "$runs/vae" --config configs/small.py \
  --out "$runs/latents" --max-clips "${CLIPS:-10000}" --part-size "${PART_SIZE:-2000}" > "$runs/encode.log" 2>&1 &
encode=$!
XLA_PYTHON_CLIENT_MEM_FRACTION=0.55 $jaxsora train --config configs/small.py --workdir "$runs/dit" \
  --config.train.latents="$runs/latents" --config.train.time_limit_s="$dit_seconds" \
  --config.train.wait_for_latents_s=1800 --config.train.start_with_parts="${START_PARTS:-1}" ${DIT_ARGS:-} &
dit=$!
status=0
wait "$encode" || status=$?
# the encode's log without its progress bar, then the bar's last line (clips, time, rate)
tr '\r' '\n' < "$runs/encode.log" | grep -v "^\s*$" | grep -v "^encode: " || true
tr '\r' '\n' < "$runs/encode.log" | grep "^encode: " | tail -1 || true
if [ "$status" -ne 0 ]; then
  echo "[recipe] encode failed (exit $status): $runs/encode.log; stopping the DiT" >&2
  kill "$dit" 2> /dev/null || true
  wait "$dit" 2> /dev/null || true
  exit 1
fi
stamp "latents encoded"
# eval-vae runs beside the DiT's training: its encoder compilations are the encode stage's (same clip shapes
# and batch sizes, from the cache), its GPU work is a few seconds, and its decoder compilations and clip
# reading use host cores the training leaves idle.
if [ "${VAE_EVAL_NUM:-256}" -gt 0 ]; then
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.15 $jaxsora eval-vae --workdir "$runs/vae" --num "${VAE_EVAL_NUM:-256}" \
    --config.data.max_pixels=16384 --config.data.max_batch_pixels=$((32 * 17 * 128 * 128)) \
    --config.data.max_batch_size=64 --config.data.num_workers=0 > "$runs/eval_vae.log" 2>&1 &
  eval_vae=$!
fi
status=0
wait "$dit" || status=$?
if [ "$status" -ne 0 ]; then
  echo "[recipe] the DiT's training failed (exit $status)" >&2
  exit 1
fi
stamp "DiT trained"
if [ -n "${eval_vae:-}" ]; then
  join_stage eval-vae "$eval_vae" "$runs/eval_vae.log" "eval-vae: " "VAE evaluated (beside the DiT's training)"
fi
# eval-modes runs beside eval-dit: both are mostly host work (start-up, compiles, VAE decodes of small
# batches, describe() on the CPU) around short bursts of GPU sampling, so together they take about as long as
# eval-modes alone. Each gets 40% of the GPU memory.
if [ "${MODES_NUM:-32}" -gt 0 ]; then
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.4 $jaxsora eval-modes --workdir "$runs/dit" --num "${MODES_NUM:-32}" \
    --sizes "${EVAL_SIZES:-128x128}" > "$runs/eval_modes.log" 2>&1 &
  eval_modes=$!
fi
XLA_PYTHON_CLIENT_MEM_FRACTION=0.4 $jaxsora eval-dit --workdir "$runs/dit" --num "${EVAL_NUM:-64}" \
  --sizes "${EVAL_SIZES:-128x128}"
stamp "evaluated"
if [ -n "${eval_modes:-}" ]; then
  join_stage eval-modes "$eval_modes" "$runs/eval_modes.log" "eval-modes [a-z0-9]+: " \
    "modes evaluated (beside eval-dit)"
fi
