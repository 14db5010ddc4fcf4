# Arms for ab_recipe.sh (ARMS_FILE=experiments/synthetic/arms/combined.sh): the recipe as committed since the
# twentieth session, and the same recipe without each of its four latest changes (NOTES DiT items 16-21).
# History: the changes that each scored at the top of the then-committed recipe's spread (the VAE's latent
# noise, the 512-wide DiT) were stacked as `combined` (run w, 76% shape against control 71%, one slow H200),
# Muon added as `combined_muon` (run x, 77%, another H200), and the DiT started on the encode's first finished
# part; on one H100 (twentieth session, runs y and z) combined_muon reached 85% shape both with and without that
# last change, and became the committed recipe (configs/small.py, recipe.sh).
#
# In order of priority: one GPU runs `combined_muon` (further calls on the same machine take the next arms), x2
# adds combined_muon_wait, x4 combined and control, x8 all. Each arm is the recipe as committed, changed as named:
#   combined_muon       the recipe as committed: a 512-wide DiT (8 heads, MLP 2048) with Muon for its matrices
#                       at train.optim.lr=2e-3, a VAE trained with latent noise 0.6, the DiT training from the
#                       encode's first finished part
#   combined_muon_wait  its DiT waits for the whole encode (START_PARTS=0): what the first-part start adds
#   combined            AdamW at 1e-3 instead of Muon (the rest as committed): what Muon adds
#   control             the recipe of the nineteenth session: 384 wide (6 heads, MLP 1536), AdamW at 1e-3, no
#                       latent noise, the DiT waiting for the whole encode
#   no_ln               the VAE without latent noise (VAE_LATENT_NOISE=0)
#   w384                the 384-wide DiT (with Muon)
#   again               the recipe as committed, again: the spread between two runs of one recipe
# Every arm is also sampled with Heun's sampler (30 steps, twice the DiT calls; +1 to +3 points of shape in
# run l), an extra eval-dit of the same checkpoint: eval_dit_<arm>_x1.json. On one GPU, where the call's 10
# minutes are tight, pass EXTRA_EVALS="".
ARMS=${ARMS:-combined_muon combined_muon_wait combined control no_ln w384 again}
w384="--config.dit.width=384 --config.dit.num_heads=6 --config.dit.mlp_dim=1536"
adamw="--config.train.optim.kind=adamw --config.train.optim.lr=1e-3"
ENV_COMBINED_MUON_WAIT="START_PARTS=0"
ARM_COMBINED="$adamw"
ARM_CONTROL="$w384 $adamw"
ENV_CONTROL="VAE_LATENT_NOISE=0 START_PARTS=0"
ENV_NO_LN="VAE_LATENT_NOISE=0"
ARM_W384="$w384"
EXTRA_EVALS=${EXTRA_EVALS---sampler heun}
