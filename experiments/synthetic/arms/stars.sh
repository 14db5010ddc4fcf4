# Arms for ab_recipe.sh (ARMS_FILE=experiments/synthetic/arms/stars.sh): where the DiT's stars fail (NOTES DiT
# items 10 and 12: small stars read right 11 of 108 times over twelve arms, on the true clips 9 of 9; about half
# of all shape misses read as squares), in order of priority. One GPU runs p1 alone, an x2 machine p1 beside
# the recipe as committed, x4 the first four (a 2x2 of patch size and VAE shortcut), x8 all (ARMS=... chooses
# others).
#
# Each arm changes the recipe as committed (configs/small.py, shift 3, 10,000 clips, DiT 200 s) as named. Written
# against the fourteenth session's recipe (a 384-wide DiT with AdamW, a VAE without latent noise); since the
# twentieth the committed recipe is arms/combined.sh's combined_muon, and these arms change that one:
#   p1           1x1x1 patches: a token per latent pixel, 4x the tokens a clip (a small star spans ~3x3 tokens
#                instead of ~1.5x1.5); packs of 2560 tokens (95% real tokens for these clips, against 63% at
#                2048: experiments/data/packing_efficiency.py), 12 a batch (about the step's cost at 2x2)
#   control      the recipe as committed
#   linear       the VAE's pixel shortcut spread bilinearly instead of repeated over each 8x8 block
#                (vae.pixel_shortcut_upsample=linear): latents slightly off decode as a blur, not as blocks
#                (CPU ablation, NOTES DiT item 13)
#   p1_linear    both
#   p1_shift6    p1 at timestep shift 6: the shift that grows with tokens (sqrt(4) x 3) for 4x the tokens
#   p1_ln06      p1 with the VAE of the best shape arm so far (vae_train.latent_noise=0.6, run p b, 78%)
#   p1_drop05    p1 dropping half of each clip's tokens at random in training (NaViT): twice the clips a step
#   control2     the recipe as committed, again: the spread between two runs of one recipe
ARMS=${ARMS:-p1 control linear p1_linear p1_shift6 p1_ln06 p1_drop05 control2}
p1="--config.patch=(1,1,1) --config.packing.seq_len=2560 --config.packing.batch_size=12"
linear="--config.vae.pixel_shortcut_upsample=linear"
ARM_P1="$p1"
VAE_LINEAR="$linear"
ARM_P1_LINEAR="$p1"
VAE_P1_LINEAR="$linear"
ARM_P1_SHIFT6="$p1 --config.diffusion.shift_base=6.0 --config.diffusion.shift_max=6.0"
ARM_P1_LN06="$p1"
VAE_P1_LN06="--config.vae_train.latent_noise=0.6"
ARM_P1_DROP05="$p1 --config.packing.drop_rate=0.5"
# Sampling 4x the tokens takes longer: the 1x1x1 arms keep 30 s more for their evaluation (recipe.sh's
# EVAL_RESERVE_S), which costs their DiT time only when the encode ends after ~230 s. No extra evaluations:
# they would run past the call's 10 minutes.
for a in P1 P1_LINEAR P1_SHIFT6 P1_LN06 P1_DROP05; do
  declare "ENV_$a=EVAL_RESERVE_S=140"
done
EXTRA_EVALS=${EXTRA_EVALS-}
