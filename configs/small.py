"""The synthetic-world text-to-video model for one GPU (the recipe: experiments/synthetic/recipe.sh).

Latents of clips at their native aspect ratio, about 128x128 pixels a frame, 17 frames (5 latent frames) or
single images, encoded by the VAE of configs/vae_synthetic.py; 8x8 patch grids of 1x2x2 patches, so a clip is
<= 5 x 8 x 8 = 320 tokens, packed 2048 to a sequence. A 8-layer, 384-wide DiT (about 25M parameters) with a
2-layer text encoder over hashed word tokens (`text_encoder.kind=words`) trained jointly.

    jaxsora encode --vae runs/vae --config configs/small.py --out runs/latents --max-clips 10000
    jaxsora train --config configs/small.py --workdir runs/dit --config.train.latents=runs/latents
    jaxsora eval-dit --workdir runs/dit --num 64
"""

from jaxsora.config import preset


def get_config():
    config = preset("tiny")
    d = config.data
    d.max_pixels = 128 * 128
    d.spatial_multiple = 16  # VAE factor 8 x patch 2
    d.max_frames = 17
    d.frame_choices = (1, 17)
    d.fps = 0.0  # native rate: every clip of >= 17 frames gives 17
    d.max_batch_pixels = 32 * 17 * 128 * 128
    d.max_batch_size = 64
    d.max_buffered = 512
    d.num_threads = 4
    d.num_workers = 12
    d.synthetic.min_frames = 17
    d.synthetic.image_fraction = 0.2

    # Hashed word tokens (text_encoder.kind=words): mean 31, max 64 a caption over 2,000 synthetic captions
    # (tests/test_geometry_tokenizer.py), against mean 117 and max 281 bytes; 8 rows of 64 a pack.
    config.text.max_len = 64

    pk = config.packing
    pk.seq_len = 2048
    pk.max_clips_per_pack = 8
    pk.num_bins = 8
    pk.batch_size = 16
    pk.num_workers = 8

    te = config.text_encoder
    te.kind = (
        "words"  # the encoder needs not learn to spell, and the text side is 4x shorter (NOTES DiT item 3)
    )
    te.width = 256
    te.depth = 2
    te.num_heads = 4
    te.head_dim = 64
    te.mlp_dim = 1024

    dit = config.dit
    # 512 wide (8 heads of 64, MLP 2048; 384, 6 heads and 1536 until the twentieth session): with Muon and the
    # VAE's latent noise (recipe.sh), shape 85% in two runs on one H100 (experiments/synthetic/NOTES.md DiT
    # items 16, 20, 21)
    dit.width = 512
    dit.depth = 8
    dit.num_heads = 8
    dit.head_dim = 64
    dit.mlp_dim = 2048
    dit.freq_dim = 256
    # A Python loop over the 8 blocks: no per-layer stacking of residuals (the scan's copies), 44 vs 55 ms a
    # step of 16 x 2048 tokens on an H100 (experiments/bench/dit_step.py); the compile is longer, but with
    # xla.gpu_triton_gemm off still shorter than the scanned step's with it on.
    dit.scan = False

    df = config.diffusion
    df.sample_steps = 30
    df.guidance = 4.0
    # The adaLN modulation per clip and time, not per token: 42.0 vs 43.8 ms a step, 6.1 vs 6.7 GiB, the same
    # loss (H100, experiments/bench/dit_step.py; NOTES DiT item 7).
    df.time_table = True
    # Train (and sample) every clip at a timestep shift of 3 rather than ~1.1 (the token-count rule at <= 320
    # tokens): more of the training at high noise, where a clip's layout is decided (how many objects, where,
    # which shape). Side by side on two H200s: shape 77 vs 60%, motion 67 vs 52%, text-to-image shape 87 vs
    # 75%; sampling the shift-1.1 model at shift 3 alone did little (64 / 54%) (experiments/synthetic/NOTES.md
    # DiT item 9).
    df.shift_base = 3.0
    df.shift_max = 3.0

    tr = config.train
    # Time-boxed (compiles included; recipe.sh passes its DIT_SECONDS, 200): the cosine decay follows the
    # fraction used of the time from the first step to time_limit_s; steps is only an upper bound. For a
    # step-exact run: schedule=steps, time_limit_s=0.
    tr.steps = 100_000
    tr.time_limit_s = 230.0
    tr.schedule = "time"
    tr.log_every = 100
    tr.ckpt_every = 1000
    tr.keep = 2
    tr.sample_size = "128x128"
    tr.ema_decay = 0.995  # a short run: a long EMA would still hold early weights
    # Muon for the DiT's matrices (AdamW for the rest, at the same rate), at twice AdamW's 1e-3 (5e-4 -> 1e-3:
    # loss 0.115 -> 0.067, motion 34 -> 63%, NOTES DiT item 5): on a CPU stand-in a 12-16% lower held-out loss
    # at the same steps (item 18); on an H100 11% slower a step at this size (item 21)
    tr.optim.kind = "muon"
    tr.optim.lr = 2e-3
    tr.optim.warmup_steps = 200
    return config
