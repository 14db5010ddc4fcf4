"""The video compression network: a causal 3D convolutional VAE (KL bottleneck).

Causal in time: every temporal convolution pads on the past side only, so latent frame ``i`` depends on
pixel frames ``<= f * i`` (``f`` the temporal factor). A clip of ``1 + f*k`` frames becomes ``1 + k`` latent
frames; the first frame is encoded on its own, which makes an image (1 frame) a valid input and output.

Streaming: each :class:`CausalConv3d` can keep the input frames its next window still needs in the mutable
``"cache"`` collection. One-shot processing is the same code with an empty (zero) cache, so a long video
processed a few frames at a time (first 1 frame, then ``f`` frames per latent frame; see
:mod:`jaxsora.models.vae_codec`) gives the one-shot result, with memory that does not grow with its length.

Normalisation (``norm``) is either RMS over channels at each voxel (no statistics across time or space:
causal, chunkable and exactly tileable) or GroupNorm with statistics per frame (causal and chunkable; tiles
see their own statistics).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Dtype = Any
ACT_AXES = ("batch", "time", "height", "width", "channels")


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)  # one entry per level; len - 1 spatial 2x downsamplings
    temporal_down: tuple[bool, ...] = (False, True, True)  # per downsampling: also halve time?
    num_res_blocks: int | tuple[int, ...] = 2  # encoder blocks per level (one count, or one per level)
    latent_channels: int = 16
    norm: str = (
        "rms"  # rms: over channels per voxel (tileable) | group: GroupNorm per frame (causal, not tileable)
    )
    zero_init_residual: bool = True  # residual branches start at zero (each block starts as the identity)
    shortcut: bool = (
        True  # parameter-free space<->channel shortcuts around every resampling and the bottleneck
    )
    dtype: str = "bfloat16"  # compute dtype; params are float32
    remat: bool = False  # rematerialise residual blocks in the backward pass (long/large clips)
    patch_size: int = 1  # pixel patches folded into channels at the input and unfolded at the output
    conv2d_levels: int = 0  # res blocks of this many highest-resolution levels use 1x3x3 (per-frame) kernels
    decoder_extra_blocks: int = 1  # the decoder has this many more res blocks per level than the encoder
    # End-to-end colour shortcut: latent channels 0-2 carry each block's mean colour (plus a learned
    # correction), and the decoder adds them back, upsampled, to its (zero-initialised) output.
    pixel_shortcut: bool = False
    # How the decoder spreads each block colour over its block: "nearest" (repeated: a latent the decoder's
    # networks do not match shows as 8x8 blocks) or "linear" (bilinear between block centres, edges clamped:
    # such a latent shows as a smooth blur). Flat regions are exact either way.
    pixel_shortcut_upsample: str = "nearest"
    logvar_init: float = 0.0  # added to the posterior's log-variance (negative: start near-deterministic)

    def __post_init__(self):
        if self.norm not in ("rms", "group"):
            raise ValueError(f"vae.norm must be 'rms' or 'group', got {self.norm!r}")
        if len(self.temporal_down) != len(self.channel_mult) - 1:
            raise ValueError(
                f"temporal_down needs one entry per downsampling ({len(self.channel_mult) - 1}), "
                f"got {self.temporal_down}"
            )
        if isinstance(self.num_res_blocks, tuple) and len(self.num_res_blocks) != len(self.channel_mult):
            raise ValueError(
                f"num_res_blocks needs one count per level ({len(self.channel_mult)}), got {self.num_res_blocks}"
            )
        if self.pixel_shortcut_upsample not in ("nearest", "linear"):
            raise ValueError(
                f"vae.pixel_shortcut_upsample must be 'nearest' or 'linear', got {self.pixel_shortcut_upsample!r}"
            )
        if self.pixel_shortcut and self.latent_channels < 3:
            raise ValueError("vae.pixel_shortcut needs at least 3 latent channels (the block colours)")
        if self.patch_size < 1:
            raise ValueError(f"vae.patch_size must be >= 1, got {self.patch_size}")

    def blocks(self, level: int) -> int:
        """Encoder res blocks at ``level`` (the decoder has ``decoder_extra_blocks`` more)."""
        n = self.num_res_blocks
        return n[level] if isinstance(n, tuple) else n

    def kernel(self, level: int) -> tuple[int, int, int]:
        return (1, 3, 3) if level < self.conv2d_levels else (3, 3, 3)

    @property
    def spatial_factor(self) -> int:
        return self.patch_size * 2 ** (len(self.channel_mult) - 1)

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.temporal_down)

    @classmethod
    def from_config(cls, section) -> VAEConfig:
        d = dict(section)
        d["channel_mult"] = tuple(d["channel_mult"])
        d["temporal_down"] = tuple(bool(v) for v in d["temporal_down"])
        if not isinstance(d.get("num_res_blocks", 0), int):
            d["num_res_blocks"] = tuple(int(n) for n in d["num_res_blocks"])
        return cls(**d)


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class CausalConv3d(nn.Module):
    """3D convolution, causal in time (past-side padding or the streaming cache), 'SAME' in space."""

    features: int
    kernel: tuple[int, int, int] = (3, 3, 3)
    strides: tuple[int, int, int] = (1, 1, 1)
    dtype: Dtype = jnp.bfloat16
    param_dtype: Dtype = jnp.float32
    zero_init: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kt, kh, kw = self.kernel
        st, sh, sw = self.strides
        init = nn.initializers.zeros if self.zero_init else nn.initializers.lecun_normal()
        kernel = self.param(
            "kernel",
            nn.with_logical_partitioning(init, ("conv_t", "conv_h", "conv_w", "conv_in", "conv_out")),
            (kt, kh, kw, x.shape[-1], self.features),
            self.param_dtype,
        )
        bias = self.param(
            "bias",
            nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",)),
            (self.features,),
            self.param_dtype,
        )
        x = x.astype(self.dtype)
        past_shape = (x.shape[0], kt - 1, *x.shape[2:])
        if self.is_mutable_collection("cache"):
            cache = self.variable("cache", "past", lambda: jnp.zeros(past_shape, self.dtype))
            x = jnp.concatenate([cache.value.astype(self.dtype), x], axis=1)
        else:
            cache = None
            x = jnp.concatenate([jnp.zeros(past_shape, self.dtype), x], axis=1)
        n_out = (x.shape[1] - kt) // st + 1
        if n_out < 1:
            raise ValueError(
                f"a chunk of {x.shape[1] - kt + 1} new frames is too short for temporal stride {st}"
            )
        if cache is not None:
            cache.value = x[:, n_out * st :]
        x = x[:, : (n_out - 1) * st + kt]
        pads = [(0, 0), _same_pads(x.shape[2], kh, sh), _same_pads(x.shape[3], kw, sw)]
        y = lax.conv_general_dilated(
            x, kernel.astype(self.dtype), self.strides, pads, dimension_numbers=("NDHWC", "DHWIO", "NDHWC")
        )
        return y + bias.astype(self.dtype)


class RMSNorm(nn.Module):
    """RMS normalisation over channels at each voxel (float32 statistics)."""

    eps: float = 1e-6
    dtype: Dtype = jnp.bfloat16

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param(
            "scale", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)), (x.shape[-1],)
        )
        x32 = x.astype(jnp.float32)
        x32 = x32 * lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (x32 * scale).astype(self.dtype)


class FrameGroupNorm(nn.Module):
    """GroupNorm with statistics per frame (over height, width and a group of channels): causal in time."""

    dtype: Dtype = jnp.bfloat16

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        groups = next(g for g in (32, 16, 8, 4, 2, 1) if c % g == 0)
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)), (c,))
        bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)), (c,))
        x32 = x.astype(jnp.float32).reshape(*x.shape[:-1], groups, c // groups)
        mean = jnp.mean(x32, axis=(2, 3, 5), keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=(2, 3, 5), keepdims=True)
        x32 = ((x32 - mean) * lax.rsqrt(var + 1e-6)).reshape(x.shape)
        return (x32 * scale + bias).astype(self.dtype)


def make_norm(kind: str, dtype: Dtype, name: str | None = None) -> nn.Module:
    return RMSNorm(dtype=dtype, name=name) if kind == "rms" else FrameGroupNorm(dtype=dtype, name=name)


class ResBlock(nn.Module):
    features: int
    dtype: Dtype = jnp.bfloat16
    norm: str = "rms"
    zero_init: bool = True
    kernel: tuple[int, int, int] = (3, 3, 3)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = make_norm(self.norm, self.dtype)(x)
        h = CausalConv3d(self.features, self.kernel, dtype=self.dtype, name="conv1")(nn.silu(h))
        h = make_norm(self.norm, self.dtype)(h)
        h = CausalConv3d(
            self.features, self.kernel, dtype=self.dtype, zero_init=self.zero_init, name="conv2"
        )(nn.silu(h))
        if x.shape[-1] != self.features:
            x = CausalConv3d(self.features, kernel=(1, 1, 1), dtype=self.dtype, name="skip")(x)
        return nn.with_logical_constraint(x.astype(self.dtype) + h, ACT_AXES)


def pixels_to_patches(x: jax.Array, p: int) -> jax.Array:
    """``[B, T, H, W, C] -> [B, T, H/p, W/p, p*p*C]``: each ``p x p`` pixel patch folded into channels."""
    if p == 1:
        return x
    b, t, h, w, c = x.shape
    x = x.reshape(b, t, h // p, p, w // p, p, c).transpose(0, 1, 2, 4, 3, 5, 6)
    return x.reshape(b, t, h // p, w // p, p * p * c)


def patches_to_pixels(x: jax.Array, p: int) -> jax.Array:
    """The inverse of :func:`pixels_to_patches`."""
    if p == 1:
        return x
    b, t, h, w, c = x.shape
    x = x.reshape(b, t, h, w, p, p, c // (p * p)).transpose(0, 1, 2, 4, 3, 5, 6)
    return x.reshape(b, t, h * p, w * p, c // (p * p))


def block_mean(x: jax.Array, s: int, f: int) -> jax.Array:
    """Mean of each ``s x s`` pixel block over each latent frame's pixel frames, causally: a clip start
    (``1 + f*k`` frames) has its first frame alone, a continuation chunk (``f*k`` frames) none alone."""
    b, t, h, w, c = x.shape
    x = x.astype(jnp.float32).reshape(b, t, h // s, s, w // s, s, c).mean(axis=(3, 5))
    head, rest = x[:, : t % f], x[:, t % f :]
    rest = rest.reshape(b, rest.shape[1] // f, f, h // s, w // s, c).mean(axis=2)
    return jnp.concatenate([head, rest], axis=1)


def block_upsample(z: jax.Array, s: int, f: int, is_first: bool, method: str = "nearest") -> jax.Array:
    """The inverse layout of :func:`block_mean`: each latent voxel over its ``f`` frames (the first latent
    frame of a clip over its one frame) and, in space, repeated over its ``s x s`` block (``nearest``) or
    interpolated bilinearly between block centres, clamped at the frame's edges (``linear``)."""
    if method == "linear":
        z = _linear_up(_linear_up(z, s, axis=2), s, axis=3)
    else:
        z = jnp.repeat(jnp.repeat(z, s, axis=2), s, axis=3)
    z = jnp.repeat(z, f, axis=1)
    return z[:, f - 1 :] if is_first else z


def _linear_up(z: jax.Array, s: int, axis: int) -> jax.Array:
    """``z`` upsampled ``s`` times along ``axis``, linearly between the centres of its cells (output pixel
    ``i`` sits at cell coordinate ``(i + 0.5) / s - 0.5``), clamped to the first and last cell at the ends:
    a weighted sum of each cell and its neighbour, so constant stretches stay exact."""
    n = z.shape[axis]
    u = (np.arange(n * s) + 0.5) / s - 0.5
    lo = np.clip(np.floor(u), 0, n - 1).astype(np.int32)
    hi = np.clip(lo + 1, 0, n - 1)
    w = np.clip(u - lo, 0.0, 1.0).astype(np.float32)  # 0 before the first centre (lo clamped to 0 there)
    shape = [1] * z.ndim
    shape[axis] = n * s
    w = jnp.asarray(w).reshape(shape)
    return jnp.take(z, lo, axis=axis) * (1 - w) + jnp.take(z, hi, axis=axis) * w


def space_to_channel(x: jax.Array, out_channels: int, temporal: bool) -> jax.Array:
    """The parameter-free shortcut of a downsampling (residual autoencoding, as in DC-AE): each 2x2 (x2 in
    time) block of voxels folded into channels, then averaged in groups down to ``out_channels``.

    In time the fold is causal: an odd clip (``1 + 2m`` frames: the start of a clip) keeps its first frame
    alone (repeated to fill the pair); an even one is a continuation chunk whose frames pair up in order.
    """
    b, t, h, w, c = x.shape
    x = (
        x.reshape(b, t, h // 2, 2, w // 2, 2, c)
        .transpose(0, 1, 2, 4, 3, 5, 6)
        .reshape(b, t, h // 2, w // 2, 4 * c)
    )
    if temporal:
        if t % 2:
            x = jnp.concatenate([x[:, :1], x], axis=1)
        x = x.reshape(b, x.shape[1] // 2, 2, h // 2, w // 2, 4 * c).transpose(0, 1, 3, 4, 2, 5)
        x = x.reshape(b, x.shape[1], h // 2, w // 2, 8 * c)
    return x.reshape(*x.shape[:-1], out_channels, x.shape[-1] // out_channels).mean(axis=-1)


def channel_to_space(x: jax.Array, out_channels: int, temporal: bool, is_first: bool) -> jax.Array:
    """The parameter-free shortcut of an upsampling: channels repeated up to 4 (8 in time) x ``out_channels``
    and unfolded into 2x2 (x2 in time) blocks; on a clip's first chunk its first frame keeps one of its two."""
    b, t, h, w, c = x.shape
    factor = 8 if temporal else 4
    x = jnp.repeat(x, factor * out_channels // c, axis=-1)
    if temporal:
        x = x.reshape(b, t, h, w, 2, 4 * out_channels).transpose(0, 1, 4, 2, 3, 5).reshape(b, 2 * t, h, w, -1)
        if is_first:
            x = x[:, 1:]
        t = x.shape[1]
    x = x.reshape(b, t, h, w, 2, 2, out_channels).transpose(0, 1, 2, 4, 3, 5, 6)
    return x.reshape(b, t, 2 * h, 2 * w, out_channels)


class Downsample(nn.Module):
    """2x in space, and 2x in time when ``temporal`` (stride-2 causal conv: 1 + 2m frames -> 1 + m)."""

    features: int
    temporal: bool
    dtype: Dtype = jnp.bfloat16
    shortcut: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kt, st = (3, 2) if self.temporal else (1, 1)
        y = CausalConv3d(self.features, kernel=(kt, 3, 3), strides=(st, 2, 2), dtype=self.dtype)(x)
        if self.shortcut:
            y = y + space_to_channel(x.astype(self.dtype), self.features, self.temporal)
        return y


class Upsample(nn.Module):
    """2x in space (nearest + conv), and 2x in time when ``temporal`` (1 + m frames -> 1 + 2m).

    In time each frame is expanded into two by a causal conv with twice the channels; on the clip's first
    chunk (``is_first``) the first frame keeps only one of its two, mirroring the encoder.
    """

    features: int
    temporal: bool
    dtype: Dtype = jnp.bfloat16
    shortcut: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, is_first: bool) -> jax.Array:
        skip = (
            channel_to_space(x.astype(self.dtype), self.features, self.temporal, is_first)
            if self.shortcut
            else 0
        )
        if self.temporal:
            b, t, h, w, c = x.shape
            y = CausalConv3d(2 * c, kernel=(3, 1, 1), dtype=self.dtype, name="time_conv")(x)
            x = y.reshape(b, t, h, w, 2, c).transpose(0, 1, 4, 2, 3, 5).reshape(b, 2 * t, h, w, c)
            if is_first:
                x = x[:, 1:]
        b, t, h, w, c = x.shape
        x = jnp.broadcast_to(x[:, :, :, None, :, None, :], (b, t, h, 2, w, 2, c)).reshape(
            b, t, 2 * h, 2 * w, c
        )
        return CausalConv3d(self.features, kernel=(1, 3, 3), dtype=self.dtype, name="conv")(x) + skip


def _block(cfg: VAEConfig):
    block = nn.remat(ResBlock) if cfg.remat else ResBlock
    return functools.partial(block, norm=cfg.norm, zero_init=cfg.zero_init_residual)


class Encoder(nn.Module):
    cfg: VAEConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        cfg, dtype = self.cfg, jnp.dtype(self.cfg.dtype)
        block = _block(cfg)
        x = x_pixels = nn.with_logical_constraint(x, ACT_AXES)
        x = pixels_to_patches(x, cfg.patch_size)
        h = CausalConv3d(cfg.channels * cfg.channel_mult[0], dtype=dtype, name="conv_in")(x)
        for level, mult in enumerate(cfg.channel_mult):
            for j in range(cfg.blocks(level)):
                h = block(
                    cfg.channels * mult, dtype=dtype, kernel=cfg.kernel(level), name=f"down{level}_block{j}"
                )(h)
            if level < len(cfg.channel_mult) - 1:
                h = Downsample(
                    cfg.channels * mult,
                    temporal=cfg.temporal_down[level],
                    dtype=dtype,
                    shortcut=cfg.shortcut,
                    name=f"down{level}",
                )(h)
        h = block(h.shape[-1], dtype=dtype, name="mid_block")(h)
        h = nn.silu(make_norm(cfg.norm, dtype, name="norm_out")(h))
        moments = CausalConv3d(
            2 * cfg.latent_channels, dtype=jnp.float32, zero_init=cfg.pixel_shortcut, name="conv_out"
        )(h)
        mean, logvar = jnp.split(moments.astype(jnp.float32), 2, axis=-1)
        if cfg.shortcut:  # the bottleneck's shortcut: features averaged in groups down to the latent channels
            skip = h.reshape(*h.shape[:-1], cfg.latent_channels, -1).astype(jnp.float32).mean(-1)
            if cfg.pixel_shortcut:  # the colour channels get the pixels' block means instead
                skip = skip.at[..., :3].set(0.0)
            mean = mean + skip
        if cfg.pixel_shortcut:
            mean = mean.at[..., :3].add(block_mean(x_pixels, cfg.spatial_factor, cfg.temporal_factor))
        return mean, jnp.clip(logvar + cfg.logvar_init, -30.0, 20.0)


class Decoder(nn.Module):
    cfg: VAEConfig

    @nn.compact
    def __call__(self, z: jax.Array, is_first: bool = True) -> jax.Array:
        cfg, dtype = self.cfg, jnp.dtype(self.cfg.dtype)
        block = _block(cfg)
        z = nn.with_logical_constraint(z, ACT_AXES)
        h = CausalConv3d(cfg.channels * cfg.channel_mult[-1], dtype=dtype, name="conv_in")(z)
        if cfg.shortcut:  # latents repeated up to the decoder's width
            h = h + jnp.repeat(z.astype(dtype), h.shape[-1] // z.shape[-1], axis=-1)
        h = block(h.shape[-1], dtype=dtype, name="mid_block")(h)
        for level in reversed(range(len(cfg.channel_mult))):
            for j in range(cfg.blocks(level) + cfg.decoder_extra_blocks):
                h = block(
                    cfg.channels * cfg.channel_mult[level],
                    dtype=dtype,
                    kernel=cfg.kernel(level),
                    name=f"up{level}_block{j}",
                )(h)
            if level > 0:
                h = Upsample(
                    cfg.channels * cfg.channel_mult[level - 1],
                    temporal=cfg.temporal_down[level - 1],
                    dtype=dtype,
                    shortcut=cfg.shortcut,
                    name=f"up{level}",
                )(h, is_first)
        h = nn.silu(make_norm(cfg.norm, dtype, name="norm_out")(h))
        p = cfg.patch_size
        out = CausalConv3d(3 * p * p, dtype=jnp.float32, zero_init=cfg.pixel_shortcut, name="conv_out")(h)
        out = patches_to_pixels(out.astype(jnp.float32), p)
        if cfg.pixel_shortcut:
            out = out + block_upsample(
                z[..., :3].astype(jnp.float32),
                cfg.spatial_factor,
                cfg.temporal_factor,
                is_first,
                cfg.pixel_shortcut_upsample,
            )
        return out


class VAE(nn.Module):
    """``encode(video) -> (mean, logvar)``, ``decode(z) -> video``; video ``[B, T, H, W, 3]`` in [-1, 1]."""

    cfg: VAEConfig

    def setup(self):
        self.encoder = Encoder(self.cfg)
        self.decoder = Decoder(self.cfg)

    def encode(self, video: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.encoder(video)

    def decode(self, z: jax.Array, is_first: bool = True) -> jax.Array:
        return self.decoder(z, is_first)

    def __call__(
        self, video: jax.Array, *, sample: bool = True, latent_noise: float = 0.0
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Reconstruction, mean and log-variance; ``sample`` draws z with the ``"noise"`` rng stream.

        ``latent_noise > 0`` (training) perturbs each clip's latent with Gaussian noise of standard deviation
        ``u * latent_noise`` times each channel's standard deviation over the batch, ``u ~ U(0, 1)`` per clip,
        so the decoder learns to render clean pixels from latents that are slightly off, as a diffusion
        model's are (rather than to turn every deviation into visible blocks)."""
        mean, logvar = self.encode(video)
        z = mean
        if sample:
            z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(self.make_rng("noise"), mean.shape)
        if latent_noise:
            k_scale, k_noise = jax.random.split(self.make_rng("noise"))
            channel_std = jax.lax.stop_gradient(jnp.std(mean, axis=tuple(range(mean.ndim - 1))))
            u = jax.random.uniform(k_scale, (mean.shape[0],) + (1,) * (mean.ndim - 1))
            z = z + (latent_noise * u) * channel_std * jax.random.normal(k_noise, mean.shape)
        return self.decode(z), mean, logvar


def check_video_shape(shape: tuple[int, ...], cfg: VAEConfig) -> None:
    """A clear error for a clip the VAE cannot take: ``[B, 1 + f*k, H, W, 3]`` with H, W multiples of s."""
    if len(shape) != 5 or shape[-1] != 3:
        raise ValueError(f"expected a video [batch, frames, height, width, 3], got shape {tuple(shape)}")
    _, t, h, w, _ = shape
    f, s = cfg.temporal_factor, cfg.spatial_factor
    if (t - 1) % f:
        raise ValueError(f"the VAE takes 1 + {f}k frames; got {t} (use {1 + (t - 1) // f * f})")
    if h % s or w % s:
        raise ValueError(f"height and width must be multiples of {s}; got {h}x{w}")
