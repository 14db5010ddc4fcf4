"""The diffusion transformer: noisy spacetime patch tokens + timesteps + text states in, velocity out.

    tokens [B, S, P] --linear--> [B, S, D] --N x Block--> adaLN --linear (zero-init)--> [B, S, P]

A :class:`Block` is adaLN-modulated self-attention (QK-norm, 3D rotary positions over each token's (t, h, w),
segment-masked so packed clips never see each other), cross-attention to the text states (each clip only its
own caption), and an adaLN-modulated MLP (GELU or SwiGLU), with zero-initialised gates (adaLN-Zero: every block
starts as the identity).

Timesteps are **per token** (``t [B, S]``; ``[B]`` is broadcast): a token given clean as conditioning has
``t = 0`` while the others are noised, which is what image-to-video, extension, loops and connecting clips are
made of. The timestep embedding is projected once to the six modulation vectors per token (shift, scale, gate
for attention and MLP); each block adds its own learned table (as Wan does), so per-token conditioning costs
one projection, not one per block. Given as a table (``t [B, M]`` with a per-token ``t_index``: a packed row's
clips each have one time, given frames 0), the embedding and modulation are computed once per entry and each
token gathers its row (``layers.gather_rows``), so no per-token ``[B, S, 6, D]`` modulation is held.

The blocks repeat through ``nn.scan`` (params stacked on a leading "layers" axis) with an ``nn.remat`` policy
from the config (``none | full | dots | dots_no_batch | save_attention``).
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxsora.models import layers
from jaxsora.models.rope import Rotary


@dataclasses.dataclass(frozen=True)
class DiTConfig:
    patch_dim: int  # values per token: pt * ph * pw * latent channels
    width: int = 256
    depth: int = 4
    num_heads: int = 4
    head_dim: int = 64
    mlp_dim: int = 1024
    mlp: str = "gelu"  # gelu | swiglu
    text_dim: int = 256  # width of the text encoder's states
    qk_norm: bool = True
    rope_theta: float = 10_000.0
    freq_dim: int = 256  # sinusoidal timestep features
    dtype: str = "bfloat16"  # compute dtype; params are float32
    residual_dtype: str = "float32"  # the residual stream between blocks (Wan keeps it in bf16)
    scan: bool = True
    remat: str = "none"
    attention: str = "auto"  # auto | xla | cudnn | splash
    max_segments: int = 32  # clips per packed sequence (packing.max_clips_per_pack)

    def __post_init__(self):
        if self.mlp not in ("gelu", "swiglu"):
            raise ValueError(f"dit.mlp must be 'gelu' or 'swiglu', got {self.mlp!r}")
        if self.residual_dtype not in ("float32", "bfloat16"):
            raise ValueError(
                f"dit.residual_dtype must be 'float32' or 'bfloat16', got {self.residual_dtype!r}"
            )
        if self.remat not in layers.REMAT_POLICIES:
            raise ValueError(f"dit.remat must be one of {sorted(layers.REMAT_POLICIES)}, got {self.remat!r}")

    @classmethod
    def from_config(cls, section, *, patch_dim: int, text_dim: int, max_segments: int) -> DiTConfig:
        return cls(patch_dim=patch_dim, text_dim=text_dim, max_segments=max_segments, **dict(section))

    def param_count(self) -> int:
        """Parameters of the model (for FLOP counts and logs)."""
        d, h = self.width, self.num_heads * self.head_dim
        mlp_in = (2 if self.mlp == "swiglu" else 1) * self.mlp_dim
        attention = d * 3 * h + 3 * h + h * d + d  # qkv, out
        cross = d * h + h + d * 2 * h + 2 * h + h * d + d  # q, kv (from the projected text), out
        mlp = d * mlp_in + mlp_in + self.mlp_dim * d + d
        norms = 6 * d + d + (4 * self.head_dim if self.qk_norm else 0)  # modulation table, cross norm, qk
        block = attention + cross + mlp + norms
        embed = self.patch_dim * d + d + self.freq_dim * d + d + d * d + d + d * 6 * d + 6 * d
        embed += self.text_dim * d + d + d * d + d  # text projection
        head = d * 2 * d + 2 * d + d * self.patch_dim + self.patch_dim
        return self.depth * block + embed + head


def timestep_features(t: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
    """Sinusoidal features of ``t`` in [0, 1] (scaled by 1000, as diffusion models do), float32 ``[..., dim]``."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = 1000.0 * t.astype(jnp.float32)[..., None] * freqs
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class Block(nn.Module):
    cfg: DiTConfig

    @nn.compact
    def __call__(self, x, mod, rope, segment_ids, text, text_segment_ids, t_index=None):
        cfg = self.cfg
        dtype = jnp.dtype(cfg.dtype)
        table = self.param(
            "modulation",
            nn.with_logical_partitioning(nn.initializers.zeros_init(), ("modulation", "embed")),
            (6, cfg.width),
        )
        # rows of mod + table ([B, S|1, 6, D] float32): shift, scale, gate for attention, then for the MLP
        shift1, scale1, gate1, shift2, scale2, gate2 = range(6)

        h = layers.modulated_norm(x, mod, table, shift1, scale1, dtype, t_index)
        h = layers.SelfAttention(
            cfg.num_heads,
            cfg.head_dim,
            cfg.qk_norm,
            dtype,
            cfg.attention,
            cfg.max_segments,
            name="self_attention",
        )(h, rope, segment_ids)
        x = layers.gated_add(x, mod, table, gate1, h, t_index)
        x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))

        h = layers.RMSNorm("embed", dtype=dtype, name="cross_norm")(x)
        h = layers.CrossAttention(
            cfg.num_heads,
            cfg.head_dim,
            cfg.qk_norm,
            dtype,
            cfg.attention,
            cfg.max_segments,
            name="cross_attention",
        )(h, text, segment_ids, text_segment_ids)
        x = layers.residual_add(x, h)

        h = layers.modulated_norm(x, mod, table, shift2, scale2, dtype, t_index)
        h = layers.MLP(cfg.mlp_dim, cfg.mlp, dtype, name="mlp")(h)
        x = layers.gated_add(x, mod, table, gate2, h, t_index)
        x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
        return x, None


class DiT(nn.Module):
    cfg: DiTConfig

    @nn.compact
    def __call__(
        self,
        tokens: jax.Array,
        t: jax.Array,
        positions: jax.Array,
        text: jax.Array,
        *,
        segment_ids: jax.Array | None = None,
        text_segment_ids: jax.Array | None = None,
        t_index: jax.Array | None = None,
    ) -> jax.Array:
        """Velocity ``[B, S, P]`` (float32) for noisy ``tokens [B, S, P]`` at times ``t`` (``[B, S]`` or
        ``[B]``), token ``positions [B, S, 3]``, text states ``[B, Lt, text_dim]``. ``segment_ids [B, S]`` and
        ``text_segment_ids [B, Lt]`` (0 = padding) say which tokens belong together; None = one clip per row
        with all of its text.

        ``t_index [B, S]`` (int) gives the times as a table instead: ``t [B, M]`` holds each row's distinct
        times (a packed row's clips, and 0 for given frames) and token ``s`` is at ``t[b, t_index[b, s]]``. The
        result is the same as with the per-token times, but the timestep embedding and the adaLN modulation
        are computed for M entries rather than S tokens, and no ``[B, S, 6, D]`` modulation (nor its gradient,
        summed over the blocks) is ever held."""
        cfg = self.cfg
        dtype = jnp.dtype(cfg.dtype)
        if tokens.ndim != 3 or tokens.shape[-1] != cfg.patch_dim:
            raise ValueError(f"tokens must be [B, S, {cfg.patch_dim}], got {tokens.shape}")
        if (segment_ids is None) != (text_segment_ids is None):
            raise ValueError("give both segment_ids and text_segment_ids, or neither")
        if t_index is not None:
            if t.ndim != 2 or t_index.shape != tokens.shape[:2]:
                raise ValueError(
                    f"with t_index [B, S] (got {t_index.shape}), t must be a table [B, M] (got {t.shape})"
                )
            t_index = nn.with_logical_constraint(t_index.astype(jnp.int32), ("batch", "length"))
        elif t.ndim == 1:
            t = t[:, None]  # one timestep per row: [B, 1], broadcast over tokens
        d = cfg.width

        x = layers.dense(d, ("patch", "embed"), dtype=dtype, name="patch_embed")(tokens.astype(dtype))
        x = nn.with_logical_constraint(x.astype(cfg.residual_dtype), ("batch", "length", "act_embed"))

        temb = timestep_features(t, cfg.freq_dim)
        temb = layers.dense(d, ("freq", "embed"), dtype=jnp.float32, name="time_in")(temb)
        temb = layers.dense(d, ("embed_in", "embed"), dtype=jnp.float32, name="time_hidden")(
            jax.nn.silu(temb)
        )
        silu_t = jax.nn.silu(temb)
        mod = layers.dense(
            (6, d),
            ("embed_in", "modulation", "embed"),
            dtype=jnp.float32,
            name="time_modulation",
            zero_init=True,
        )(silu_t)

        # Text states (any encoder width) -> the model width, once, shared by every block's cross-attention.
        text = layers.dense(d, ("embed_in", "embed"), dtype=dtype, name="text_in")(text.astype(dtype))
        text = layers.dense(d, ("embed_in", "embed"), dtype=dtype, name="text_hidden")(
            jax.nn.gelu(text, approximate=True)
        )
        text = nn.with_logical_constraint(text, ("batch", "length", "act_embed"))
        rope = Rotary.from_positions(positions, cfg.head_dim, cfg.rope_theta)

        block, scanned = layers.repeat(
            Block, depth=cfg.depth, scan=cfg.scan, remat=cfg.remat, num_broadcast=6
        )
        shared = (mod, rope, segment_ids, text, text_segment_ids, t_index)  # the same for every block
        if scanned:
            x, _ = block(cfg, name="blocks")(x, *shared)
        else:
            for i in range(cfg.depth):
                x, _ = block(cfg, name=f"block_{i}")(x, *shared)

        final = layers.dense(
            (2, d),
            ("embed_in", "modulation", "embed"),
            dtype=jnp.float32,
            name="final_modulation",
            zero_init=True,
        )(silu_t)
        shift, scale = final[:, :, 0], final[:, :, 1]
        if t_index is not None:
            shift, scale = (layers.gather_rows(final.shape[1], r, t_index) for r in (shift, scale))
        h = layers.layer_norm(x) * (1.0 + scale) + shift
        out = layers.dense(cfg.patch_dim, ("embed", "patch"), dtype=dtype, name="head", zero_init=True)(
            h.astype(dtype)
        )
        return out.astype(jnp.float32)
