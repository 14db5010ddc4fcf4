# Arms for ab_recipe.sh (ARMS_FILE=experiments/synthetic/arms/combined.sh): the changes that each scored at
# the top of the committed recipe's spread, together (NOTES DiT item 14). No single change has moved shape
# outside that spread (72-79% for the recipe as committed, 70-78% over eleven one-change arms), and 85% needs
# about 8 points more, so one arm stacks them and the others take it apart. The first run of this set (NOTES
# DiT item 16; one slow H200, two calls on one machine): control 71%, combined 76% shape. `combined` now comes
# first: it is the candidate for the recipe's defaults, and `control` beside it on the same machine says what
# it adds. In order of priority: one GPU runs `combined` (a second call on the same machine: ARMS=control,
# then ARMS=dit240), x2 adds control, x4 dit240 and ln06, x8 all.
#
# Each arm changes the recipe as committed (configs/small.py, shift 3, 10,000 clips, VAE 130 s, DiT 200 s) as
# named:
#   combined   the DiT all the time the recipe's deadline leaves (DIT_SECONDS=fill: 570 s - the encode's end
#              - 110 s, ~250 s when the encode ends at ~212 s; ab_recipe.sh skips eval-vae and eval-modes),
#              run p b's VAE (vae_train.latent_noise=0.6, 78%) and run m b's 512-wide DiT (76%; 8 heads,
#              MLP 2048)
#   dit240     the DiT 240 s: 20% more steps (~6400 against ~5300 on an H200)
#   control    the recipe as committed
#   ln06       run p b's VAE alone, again
#   w512_240   the 512-wide DiT for 240 s (at 200 s it made ~3950 steps against ~5000)
#   control2   the recipe as committed, again
# Every arm is also sampled with Heun's sampler (30 steps, twice the DiT calls; +1 to +3 points of shape in
# run l), an extra eval-dit of the same checkpoint: eval_dit_<arm>_x1.json.
ARMS=${ARMS:-combined control dit240 ln06 w512_240 control2}
w512="--config.dit.width=512 --config.dit.num_heads=8 --config.dit.mlp_dim=2048"
ln06="--config.vae_train.latent_noise=0.6"
ARM_COMBINED="$w512"
VAE_COMBINED="$ln06"
ENV_COMBINED="DIT_SECONDS=fill"
ENV_DIT240="DIT_SECONDS=240"
VAE_LN06="$ln06"
ARM_W512_240="$w512"
ENV_W512_240="DIT_SECONDS=240"
EXTRA_EVALS=${EXTRA_EVALS---sampler heun}
