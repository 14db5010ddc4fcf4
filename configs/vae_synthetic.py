"""The VAE recipe for the synthetic world on one GPU (about 3 minutes of training on an H100).

8x8 spatial, 4x temporal compression into 16 channels. Training clips are 64x64 square crops of 17 frames:
one batch shape, compiled while the data workers start. The world's images (a quarter of its clips) are
skipped in training: the causal VAE codes an image exactly as a video's first frame, which is weighted up
instead. Evaluation (``jaxsora eval-vae``) runs on held-out clips and images at their native aspect ratios,
at 128x128 pixels per frame. The convolutional VAE takes any size.

    jaxsora train-vae --config configs/vae_synthetic.py --workdir runs/vae --config.vae_train.time_limit_s=180
    jaxsora eval-vae --workdir runs/vae --num 256 --throughput 256x256,1280x720 --config.data.max_pixels=16384
"""

from jaxsora.config import preset


def get_config():
    config = preset("tiny")
    d = config.data
    d.max_pixels = 64 * 64
    d.crop = "square"
    d.max_frames = 17
    d.frame_choices = (1, 17)
    d.fps = 0.0  # native frame rate: every clip of >= 17 frames gives 17
    d.max_batch_pixels = 16 * 17 * 64 * 64
    d.max_batch_size = 32
    d.max_buffered = 256
    d.num_threads = 4
    d.num_workers = 12
    d.synthetic.min_frames = 17
    d.synthetic.image_fraction = 0.25

    v = config.vae
    v.channels = 64
    v.channel_mult = (1, 2, 4)
    v.temporal_down = (True, True)
    del v["num_res_blocks"]  # an int in the preset: per-level counts here
    v.num_res_blocks = (2, 2, 2)
    v.latent_channels = 16
    v.norm = "group"  # per-frame GroupNorm learned fastest here (experiments/synthetic/vae_diagnose.py)
    v.shortcut = True
    v.patch_size = 2  # 2x2 pixel patches in and out: no layer runs at full resolution
    v.conv2d_levels = 0
    v.decoder_extra_blocks = 1
    v.pixel_shortcut = True  # block colours end to end: flat regions exact from the start, at any size
    v.pixel_shortcut_upsample = "nearest"  # or "linear": off latents blur instead of showing 8x8 blocks
    v.logvar_init = -8.0  # a near-deterministic posterior from the start (KL still applies)

    t = config.vae_train
    t.steps = 100_000  # an upper bound: the run is bounded by time_limit_s, and the schedule follows it
    t.log_every = 100
    t.ckpt_every = 100_000
    t.sample_every = 0
    t.l1_weight = 1.0
    t.l2_weight = 1.0
    t.kl_weight = 1e-6
    t.image_batches = False  # skip image batches: one batch shape, one compilation (images = first frames)
    t.first_frame_weight = 4.0  # a video's first frame is coded alone, as an image is: weight it up
    t.xla_autotune_level = -1  # -1: XLA's default; 0 disables GPU autotuning (faster compile)
    t.ema_decay = 0.995
    t.ema_warmup = True
    t.optim.lr = 1e-3
    t.optim.warmup_steps = 100
    t.optim.final_lr_fraction = 0.02
    t.optim.b2 = 0.99
    return config
