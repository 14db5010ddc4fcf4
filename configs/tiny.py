"""The small default: what tests, `jaxsora data preview` and the CPU demo use.

Clips are sized to about 64x64 pixels per frame at their native aspect ratio (a 16:9 clip becomes 80x48),
at most 17 frames (1 + 4k, the form the causal VAE takes) at 8 frames per second.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0

    data = config.data = ml_collections.ConfigDict()
    data.source = "synthetic"  # synthetic | folder | tfds
    data.path = ""  # folder source: the root folder of videos/images
    data.captions = ""  # folder source: captions.jsonl (default: <path>/captions.jsonl, else sidecar .txt)
    data.tfds_name = ""  # tfds source: dataset name (array_record format)
    data.tfds_data_dir = ""
    data.tfds_split = "train"
    data.video_key = ""  # tfds source: feature names; empty = detect
    data.text_key = ""
    data.caption = "descriptive"  # descriptive | short (short only where the source has short captions)

    # Geometry: native aspect kept, each frame fit to a pixel budget, sides multiples of `spatial_multiple`
    # (the VAE's spatial factor x the patch size), durations of the form 1 + k * temporal_factor.
    data.max_pixels = 64 * 64
    data.spatial_multiple = 16
    data.upscale = False  # never enlarge clips smaller than the budget
    data.crop = "none"  # none | square (centre square crop: the framing experiment's baseline)
    data.max_frames = 17
    data.frame_choices = ()  # e.g. (1, 17): only these counts (fewer buckets, fewer compilations); () = any
    data.temporal_factor = 4
    data.fps = 8.0  # resample to this rate by frame striding; 0 keeps the native rate
    data.random_crop = True  # random temporal window (else the first frames)

    # Batching by shape bucket: every batch is one (T, H, W); its size is max_batch_pixels // (T*H*W),
    # clamped to [batch_multiple, max_batch_size] and rounded down to a multiple of batch_multiple.
    data.max_batch_pixels = 8 * 17 * 64 * 64
    data.max_batch_size = 32
    data.batch_multiple = 1
    data.max_buffered = 512  # clips held across buckets before the fullest partial bucket is flushed
    data.shuffle = True
    data.num_threads = 2  # decode/render threads in this process
    data.num_workers = 0  # worker processes (grain multiprocessing); 0 = none
    data.worker_buffer_size = 1  # clips each worker process may hold ready (grain's per_worker_buffer_size)

    data.synthetic = ml_collections.ConfigDict()
    data.synthetic.num_clips = 100_000
    data.synthetic.seed = 0
    data.synthetic.image_fraction = 0.2
    data.synthetic.min_frames = 8
    data.synthetic.max_frames = 96

    config.text = ml_collections.ConfigDict()
    # Tokens a caption row, BOS and EOS included: byte tokens fit ~95% of 3-object captions; hashed words
    # (text_encoder.kind=words) are about 4x fewer (mean 31, max 64 over 2000 synthetic captions).
    config.text.max_len = 256

    # Device mesh: one axis may be -1 (all remaining devices).
    config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1, sequence=1))

    # XLA settings of the DiT's jitted train step and sampler (jaxsora.parallel.compiler_options).
    config.xla = ml_collections.ConfigDict()
    config.xla.gpu_triton_gemm = False  # Triton GEMM fusions on GPU: off compiles ~3x faster, same speed

    # The causal video VAE: 2^(levels-1) spatial and 2^sum(temporal_down) temporal compression.
    config.vae = ml_collections.ConfigDict()
    config.vae.channels = 8
    config.vae.channel_mult = (1, 2, 2, 2)
    config.vae.temporal_down = (False, True, True)
    config.vae.num_res_blocks = 1
    config.vae.latent_channels = 16
    config.vae.norm = "rms"  # rms (per voxel: tileable) | group (per frame)
    config.vae.zero_init_residual = True
    config.vae.shortcut = True  # DC-AE-style space<->channel shortcuts around resampling
    config.vae.dtype = "bfloat16"
    config.vae.remat = False

    # Spacetime patches of the latents (pt, ph, pw): a token is pt*ph*pw*latent_channels values.
    config.patch = (1, 2, 2)

    # NaViT-style packing of patch tokens (jaxsora/data/packing.py): clips of any shape share fixed-length
    # sequences; Grain's first-fit packer fills `num_bins` bins per round. Tiny clips are <= 80 tokens
    # (5 latent frames x 16 patches); experiments/data/packing_efficiency.py measured 99.3% real tokens here.
    pk = config.packing = ml_collections.ConfigDict()
    pk.seq_len = 1024  # video tokens per packed sequence
    pk.max_clips_per_pack = 32  # text rows per pack ([K, text.max_len]); caps clips a sequence (mean 18.7)
    pk.num_bins = 16  # first-fit bins per round: more = less padding, clips from further apart mixed
    pk.shuffle_bins = True  # emit each round's bins in a seeded random order
    pk.drop_rate = 0.0  # NaViT token dropping: fraction of each clip's tokens dropped at random, in [0, 1)
    pk.overflow = "error"  # a clip over seq_len tokens: error | drop (keep a random seq_len of its tokens)
    pk.batch_size = 4  # packs per batch: [batch_size, seq_len, ...]
    pk.num_workers = 0  # processes that read, patchify and pack (grain mp_prefetch); 0 = in this process

    # Text encoder: "byte" (a small transformer over byte tokens, trained with the DiT), "words" (the same
    # transformer over hashed word tokens: lowercased words and punctuation marks, each hashed to one of
    # vocab_size ids, about 4x fewer positions than bytes) or "t5" (a frozen T5/UMT5 from a local Hugging Face
    # folder: t5_path). words and t5 re-tokenize the latent dataset's captions in the data pipeline.
    te = config.text_encoder = ml_collections.ConfigDict()
    te.kind = "byte"
    te.t5_path = ""
    te.vocab_size = 16384  # kind words only: hashed word ids (the byte kind always has its 259)
    te.width = 64
    te.depth = 1
    te.num_heads = 2
    te.head_dim = 32
    te.mlp_dim = 128
    te.dtype = "bfloat16"
    te.attention = "auto"

    # The diffusion transformer (jaxsora/models/dit.py).
    dit = config.dit = ml_collections.ConfigDict()
    dit.width = 64
    dit.depth = 2
    dit.num_heads = 4
    dit.head_dim = 16
    dit.mlp_dim = 256
    dit.mlp = "gelu"  # gelu | swiglu
    dit.qk_norm = True
    dit.rope_theta = 10_000.0
    dit.freq_dim = 64
    dit.dtype = "bfloat16"  # matmul compute dtype (params stay float32)
    dit.residual_dtype = "float32"  # float32 | bfloat16: the residual stream between blocks
    dit.scan = True  # nn.scan over blocks (fast compiles) or a Python loop (no per-layer stacking copies)
    dit.remat = "none"  # none | full | dots | dots_no_batch | save_attention (jaxsora/models/layers.py)
    dit.attention = "auto"  # auto | xla | cudnn | splash

    # Rectified flow (jaxsora/diffusion.py).
    df = config.diffusion = ml_collections.ConfigDict()
    df.logit_mean = 0.0
    df.logit_std = 1.0
    df.shift_base = 1.0
    df.shift_max = 3.0
    df.shift_base_tokens = 256
    df.shift_max_tokens = 4096
    df.uniform_time_rate = 0.0  # share of clips trained at a uniform, unshifted t (more low-noise detail)
    # Given-frame conditioning rates: first frame, last frame, first k, last k, random frames (rest: none).
    df.cond_rates = (0.1, 0.05, 0.05, 0.05, 0.05)
    df.random_frame_rate = 0.3
    df.max_latent_frames = 64
    # Pass the DiT each packed row's times as a table (one per clip, and 0 for given frames) with a per-token
    # index, so the adaLN modulation is computed per clip and time instead of per token: the same loss
    # (tests/test_dit_train.py), without the [B, S, 6, D] float32 modulation and its gradient summed over the
    # blocks (experiments/synthetic/NOTES.md DiT item 7). Off until timed on a GPU.
    df.time_table = False
    df.caption_dropout = 0.1  # classifier-free guidance: captions replaced by the empty one
    df.sample_steps = 30  # Euler steps for the samples written during training
    df.guidance = 4.0

    # Training the DiT (`jaxsora train`) on a latent dataset from `jaxsora encode`.
    tr = config.train = ml_collections.ConfigDict()
    tr.latents = ""  # the latent dataset folder
    tr.vae = (
        ""  # the VAE workdir (decodes sample videos); default: the one recorded in the latents' meta.json
    )
    tr.steps = 200
    # stop (with a checkpoint) this many seconds after run() starts, compiles included (after the trainer is made
    # when it waits for its latents, the wait included); 0 = none
    tr.time_limit_s = 0.0
    # the cosine decay follows: steps | time (the fraction used of the time from the first step to time_limit_s)
    tr.schedule = "steps"
    # > 0: the latent dataset may still be being encoded (`jaxsora encode` beside this run): wait up to this many
    # seconds for the encode to start (its meta.json), build and compile meanwhile, then wait for it to end
    tr.wait_for_latents_s = 0.0
    # with wait_for_latents_s: > 0 trains once this many parts of the encode are finished, on them and their
    # statistics, and takes in the parts finished later as training goes on; 0 waits for the whole dataset
    tr.start_with_parts = 0
    tr.log_every = 10
    tr.ckpt_every = 100
    tr.keep = 3
    tr.sample_every = 0  # write sample videos from sample_prompts every this many steps; 0 = never
    tr.sample_prompts = (
        "a red circle moving to the right on a solid blue background",
        "a yellow square moving up on a solid gray background",
    )
    tr.sample_size = "64x64"  # WxH pixels of the samples
    tr.sample_frames = 17
    tr.ema_decay = 0.999
    tr.optim = ml_collections.ConfigDict(
        dict(
            lr=3e-4, warmup_steps=20, final_lr_fraction=0.1, b1=0.9, b2=0.99, weight_decay=0.0, grad_clip=1.0
        )
    )
    # adamw | muon: the attention and MLP matrices updated by orthogonalised momentum (Nesterov, muon_beta;
    # muon_steps Newton-Schulz iterations) at an update RMS of muon_rms, AdamW for the rest
    # (jaxsora/train/optim.py)
    tr.optim.kind = "adamw"
    tr.optim.muon_beta = 0.95
    tr.optim.muon_rms = 0.2
    tr.optim.muon_steps = 5

    tc = config.vae_train = ml_collections.ConfigDict()
    tc.steps = 200
    tc.time_limit_s = (
        0.0  # stop (with a checkpoint) after this many seconds of training, compiles included; 0 = none
    )
    tc.log_every = 10
    tc.ckpt_every = 100
    tc.keep = 3
    tc.sample_every = 100  # write an original/reconstruction strip; 0 = never
    tc.l1_weight = 1.0
    tc.l2_weight = 0.0
    tc.kl_weight = 1e-6
    tc.sample_posterior = True  # decode a sample of the posterior (VAE) rather than its mean
    # Decoder robustness: latents perturbed by up to this many channel standard deviations (uniformly drawn
    # per clip) in training, so slightly-off latents from the DiT decode cleanly. 0 = off.
    tc.latent_noise = 0.0
    tc.adv_weight = 0.1
    tc.disc_start = -1  # step the 3D patch-GAN term switches on; -1 = never
    tc.disc_channels = 16
    tc.ema_decay = 0.99
    tc.optim = ml_collections.ConfigDict(
        dict(
            lr=1e-3, warmup_steps=20, final_lr_fraction=0.1, b1=0.9, b2=0.99, weight_decay=0.0, grad_clip=1.0
        )
    )
    return config
