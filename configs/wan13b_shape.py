"""A DiT the size of Wan 2.1's 1.3B model (30 layers, width 1536, 12 heads of 128, GELU MLP of 8960, text
states of width 4096 as from UMT5-XXL, 16 latent channels, 1x2x2 patches): the shape used for performance
comparisons with diffusers' WanTransformer3DModel (experiments/bench/).

Text: a frozen UMT5-XXL (text_encoder.kind=t5 with t5_path) gives the 4096-wide states; benchmarks feed
random states of that width directly.
"""

from jaxsora.config import preset


def get_config():
    config = preset("base")
    dit = config.dit
    dit.width = 1536
    dit.depth = 30
    dit.num_heads = 12
    dit.head_dim = 128
    dit.mlp_dim = 8960
    dit.mlp = "gelu"
    dit.freq_dim = 256
    dit.remat = "none"
    # Scanned (base.py too): the step compiles in ~20 s. Unrolled (--config.dit.scan=false) the B=8 training
    # step compiles in ~70 s and runs ~20% faster in 6 GiB less memory (no per-layer stacking of residuals;
    # experiments/bench/NOTES.md item 8); the forward and long-clip cases were measured scanned only.
    dit.scan = True
    # The residual stream between blocks in bf16, as Wan keeps it: 5.7% faster B=8 training steps on the H100
    # and 2.8 GiB less peak memory (experiments/bench/NOTES.md, item 5).
    dit.residual_dtype = "bfloat16"

    te = config.text_encoder
    te.kind = "t5"
    te.width = 4096  # UMT5-XXL's d_model (the width the DiT's cross-attention reads)

    config.text.max_len = 512
    pk = config.packing
    pk.seq_len = 32760  # 21 x 60 x 104 latents / (1x2x2): 81 frames at 480x832
    pk.max_clips_per_pack = 1
    pk.batch_size = 1
    return config
