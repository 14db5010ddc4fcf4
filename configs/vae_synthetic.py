"""The VAE recipe for the synthetic world on one GPU (about 3 minutes of training on an H100).

8x8 spatial, 4x temporal compression into 16 channels. Training clips are 64x64 square crops (many small steps
learn faster than few large ones: experiments/synthetic/vae_diagnose.py), 17 frames or single images (two
shapes: two compilations); evaluation (``jaxsora eval-vae``) runs on held-out clips at their native aspect
ratios, at 128x128 pixels per frame. The convolutional VAE takes any size.

    jaxsora train-vae --config configs/vae_synthetic.py --workdir runs/vae
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
    v.channel_mult = (1, 2, 4, 4)
    v.num_res_blocks = 2
    v.latent_channels = 16
    v.norm = "group"  # per-frame GroupNorm learned fastest here (experiments/synthetic/vae_diagnose.py)
    v.shortcut = True

    t = config.vae_train
    t.steps = 2500
    t.log_every = 50
    t.ckpt_every = 400
    t.sample_every = 400
    t.l1_weight = 1.0
    t.l2_weight = 1.0
    t.kl_weight = 1e-6
    t.ema_decay = 0.995
    t.optim.lr = 1e-3
    t.optim.warmup_steps = 100
    t.optim.b2 = 0.99
    return config
