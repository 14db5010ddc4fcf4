# Arms for ab_recipe.sh (ARMS_FILE=experiments/synthetic/arms/combined.sh): the changes that each scored at
# the top of the committed recipe's spread, together (NOTES DiT item 14). No single change has moved shape
# outside that spread (72-79% for the recipe as committed, 70-78% over eleven one-change arms), and 85% needs
# about 8 points more, so one arm stacks them and the others take it apart. The first run of this set (NOTES
# DiT item 16; one slow H200, two calls on one machine): control 71%, combined 76% shape; combined_muon 77%
# (item 20, one call on another H200). Since the
# seventeenth session (NOTES DiT item 18) `combined_muon` comes first: `combined` with Muon for the DiT's
# matrices (train.optim.kind=muon) at twice the committed rate (2e-3), which on a CPU stand-in reached a 12-16%
# lower held-out loss than AdamW at the same steps; `combined` beside it on the same machine says what Muon
# adds, `control` what the rest adds. In order of priority: one GPU runs `combined_muon` (further calls on the
# same machine: ARMS=combined_muon_wait, ARMS=combined, then ARMS=control), x2 adds combined_muon_wait, x4
# combined and control, x8 all but control2.
#
# Since the sixteenth session (NOTES DiT item 17) every arm's DiT trains beside the encode until the recipe's
# deadline (recipe.sh's default DIT_SECONDS=fill); the dit240 and w512_240 arms of item 16 (a DiT time of 240 s
# after the encode) are gone with that. Each arm changes the recipe as committed (configs/small.py, shift 3,
# 10,000 clips, VAE 130 s) as named:
#   combined_muon  combined, with Muon at train.optim.lr=2e-3 (one rate: the parameters AdamW still updates
#              get 2e-3 too; Muon's updates are scaled to AdamW's RMS)
#   combined_muon_wait  combined_muon with a DiT that waits for the whole encode (START_PARTS=0), as before the
#              twentieth session (NOTES DiT item 21): what training on the first finished part adds
#   combined   run p b's VAE (vae_train.latent_noise=0.6, 78%) and run m b's 512-wide DiT (76%; 8 heads,
#              MLP 2048)
#   control    the recipe as committed
#   muon       the recipe as committed with Muon at 2e-3
#   ln06       run p b's VAE alone, again
#   w512       the 512-wide DiT alone
#   w512_muon  the 512-wide DiT with Muon (combined_muon without its VAE change)
#   control2   the recipe as committed, again
# Every arm is also sampled with Heun's sampler (30 steps, twice the DiT calls; +1 to +3 points of shape in
# run l), an extra eval-dit of the same checkpoint: eval_dit_<arm>_x1.json. On one GPU, where the call's 10
# minutes are tight, pass EXTRA_EVALS="".
ARMS=${ARMS:-combined_muon combined_muon_wait combined control muon ln06 w512 w512_muon control2}
w512="--config.dit.width=512 --config.dit.num_heads=8 --config.dit.mlp_dim=2048"
ln06="--config.vae_train.latent_noise=0.6"
muon="--config.train.optim.kind=muon --config.train.optim.lr=2e-3"
ARM_COMBINED_MUON="$w512 $muon"
VAE_COMBINED_MUON="$ln06"
ARM_COMBINED_MUON_WAIT="$w512 $muon"
VAE_COMBINED_MUON_WAIT="$ln06"
ENV_COMBINED_MUON_WAIT="START_PARTS=0"
ARM_COMBINED="$w512"
VAE_COMBINED="$ln06"
ARM_MUON="$muon"
ARM_W512_MUON="$w512 $muon"
VAE_LN06="$ln06"
ARM_W512="$w512"
EXTRA_EVALS=${EXTRA_EVALS---sampler heun}
