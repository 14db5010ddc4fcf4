# Arms for ab_recipe.sh (ARMS_FILE=experiments/synthetic/arms/combined.sh): the changes that each scored at
# the top of the committed recipe's spread, together (NOTES DiT item 14). No single change has moved shape
# outside that spread (72-79% for the recipe as committed, 70-78% over eleven one-change arms), and 85% needs
# about 8 points more, so one arm stacks them and the others take it apart. The first run of this set (NOTES
# DiT item 16; one slow H200, two calls on one machine): control 71%, combined 76% shape. `combined` comes
# first: it is the candidate for the recipe's defaults, and `control` beside it on the same machine says what
# it adds. In order of priority: one GPU runs `combined` (a second call on the same machine: ARMS=control),
# x2 adds control, x4 ln06 and w512, x8 all.
#
# Since the sixteenth session (NOTES DiT item 17) every arm's DiT trains beside the encode until the recipe's
# deadline (recipe.sh's default DIT_SECONDS=fill); the dit240 and w512_240 arms of item 16 (a DiT time of 240 s
# after the encode) are gone with that. Each arm changes the recipe as committed (configs/small.py, shift 3,
# 10,000 clips, VAE 130 s) as named:
#   combined   run p b's VAE (vae_train.latent_noise=0.6, 78%) and run m b's 512-wide DiT (76%; 8 heads,
#              MLP 2048)
#   control    the recipe as committed
#   ln06       run p b's VAE alone, again
#   w512       the 512-wide DiT alone
#   control2   the recipe as committed, again
# Every arm is also sampled with Heun's sampler (30 steps, twice the DiT calls; +1 to +3 points of shape in
# run l), an extra eval-dit of the same checkpoint: eval_dit_<arm>_x1.json. On one GPU, where the call's 10
# minutes are tight, pass EXTRA_EVALS="".
ARMS=${ARMS:-combined control ln06 w512 control2}
w512="--config.dit.width=512 --config.dit.num_heads=8 --config.dit.mlp_dim=2048"
ln06="--config.vae_train.latent_noise=0.6"
ARM_COMBINED="$w512"
VAE_COMBINED="$ln06"
VAE_LN06="$ln06"
ARM_W512="$w512"
EXTRA_EVALS=${EXTRA_EVALS---sampler heun}
