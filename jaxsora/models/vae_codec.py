"""Encoding and decoding videos of any length and size with a trained :class:`~jaxsora.models.vae.VAE`.

* one-shot: the whole clip in one jitted call (compiled once per shape, or ahead of time in background threads
  for the shapes to come: :meth:`VideoCodec.precompile_encode`);
* chunked (causal streaming): the first frame alone, then ``temporal_factor * chunk_latents`` frames per call,
  the convolutions' past frames carried in the ``"cache"`` collection. Equal to one-shot (to float rounding),
  with memory set by the chunk, not the clip's length;
* tiled: frames split into overlapping spatial tiles, each coded (optionally chunked) and blended with linear
  ramps across the overlaps, for frames larger than memory allows.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxsora.data.pixels import to_signed_unit
from jaxsora.models.vae import VAE, VAEConfig, check_video_shape


class VideoCodec:
    """A VAE and its params: ``encode(video) -> latent mean``, ``decode(latents) -> video`` in [-1, 1]."""

    def __init__(self, cfg: VAEConfig, params):
        self.cfg = cfg
        self.params = params
        self.model = VAE(cfg)
        m = self.model
        # uint8 pixels are converted to [-1, 1] inside the jitted call (float input is taken as it is)
        self._encode = jax.jit(
            lambda p, x: _moments(*m.apply({"params": p}, to_signed_unit(x), method=VAE.encode))
        )
        self._encode_ahead: dict = {}  # (shape, dtype) -> future of a compiled one-shot encoder
        self._decode = jax.jit(lambda p, z: m.apply({"params": p}, z, method=VAE.decode))

        def enc_stream(p, cache, x):
            variables = {"params": p} if cache is None else {"params": p, "cache": cache}
            (mean, logvar), state = m.apply(variables, x, method=VAE.encode, mutable=["cache"])
            return _moments(mean, logvar), state["cache"]

        def dec_stream(p, cache, z, is_first):
            variables = {"params": p} if cache is None else {"params": p, "cache": cache}
            out, state = m.apply(variables, z, is_first, method=VAE.decode, mutable=["cache"])
            return out, state["cache"]

        self._enc_stream = jax.jit(enc_stream)
        self._dec_stream = jax.jit(dec_stream, static_argnums=3)

    # -- time ------------------------------------------------------------------------------------------
    def _encode_chunked(self, video: jax.Array, chunk_latents: int) -> jax.Array:
        f = self.cfg.temporal_factor
        mean, cache = self._enc_stream(self.params, None, video[:, :1])
        outs = [mean]
        for start in range(1, video.shape[1], f * chunk_latents):
            mean, cache = self._enc_stream(self.params, cache, video[:, start : start + f * chunk_latents])
            outs.append(mean)
        return jnp.concatenate(outs, axis=1)

    def _decode_chunked(self, z: jax.Array, chunk_latents: int) -> jax.Array:
        out, cache = self._dec_stream(self.params, None, z[:, :1], True)
        outs = [out]
        for start in range(1, z.shape[1], chunk_latents):
            out, cache = self._dec_stream(self.params, cache, z[:, start : start + chunk_latents], False)
            outs.append(out)
        return jnp.concatenate(outs, axis=1)

    def _encode_time(self, video, chunk_latents):
        if chunk_latents:
            return self._encode_chunked(to_signed_unit(video), chunk_latents)
        future = self._encode_ahead.get((tuple(video.shape), np.dtype(video.dtype)))
        if future is not None and not future.cancelled():  # cancelled: its pool was shut down first
            return future.result()(self.params, video)
        return self._encode(self.params, video)

    def precompile_encode(self, pool, shape: tuple[int, ...], dtype=np.uint8) -> None:
        """Compile the one-shot encoder for videos of ``shape`` ``[B, T, H, W, 3]`` and ``dtype`` on ``pool``
        (a thread pool), so that :meth:`encode` of such a video later runs the executable instead of compiling
        then; several shapes compile side by side. A shape asked for twice compiles once."""
        key = (tuple(shape), np.dtype(dtype))
        if key in self._encode_ahead:
            return
        check_video_shape(key[0], self.cfg)
        spec = jax.ShapeDtypeStruct(key[0], key[1])
        self._encode_ahead[key] = pool.submit(lambda: self._encode.lower(self.params, spec).compile())

    def _decode_time(self, z, chunk_latents):
        if chunk_latents:
            return self._decode_chunked(z, chunk_latents)
        return self._decode(self.params, z)

    # -- public ----------------------------------------------------------------------------------------
    def encode(
        self,
        video: jax.Array,
        *,
        chunk_latents: int = 0,
        tile: int = 0,
        overlap: int = 0,
        with_std: bool = False,
    ):
        """Latent means ``[B, 1 + (T-1)/f, H/s, W/s, C]`` of a video ``[B, T, H, W, 3]`` in [-1, 1] (or of
        uint8 pixels, converted on the device) and the posterior's standard deviations, with ``with_std``.

        ``chunk_latents`` > 0 streams that many latent frames per call; ``tile`` > 0 codes square pixel tiles
        of that side overlapping by ``overlap`` pixels (both multiples of the spatial factor).
        """
        check_video_shape(video.shape, self.cfg)
        fn = functools.partial(self._encode_time, chunk_latents=chunk_latents)
        if tile:
            moments = _tiled(fn, to_signed_unit(video), tile, overlap, self.cfg.spatial_factor, down=True)
        else:
            moments = fn(video)
        mean, std = jnp.split(moments, 2, axis=-1)
        return (mean, std) if with_std else mean

    def decode(self, z: jax.Array, *, chunk_latents: int = 0, tile: int = 0, overlap: int = 0) -> jax.Array:
        """Videos ``[B, 1 + f*(t-1), h*s, w*s, 3]`` from latents; ``tile``/``overlap`` in latent units."""
        if z.ndim != 5 or z.shape[-1] != self.cfg.latent_channels:
            raise ValueError(
                f"expected latents [batch, frames, h, w, {self.cfg.latent_channels}], got {tuple(z.shape)}"
            )
        fn = functools.partial(self._decode_time, chunk_latents=chunk_latents)
        if tile:
            return _tiled(fn, z, tile, overlap, self.cfg.spatial_factor, down=False)
        return fn(z)

    def decode_periodic(
        self, start: jax.Array, period: jax.Array, *, max_periods: int = 32, tol: float = 1e-3
    ):
        """The frames a repeating latent sequence settles into: ``start [B, 1, h, w, C]`` (a first, one-frame
        latent), then ``period [B, n, h, w, C]`` over and over.

        The streaming decoder is fed one period at a time, its causal memory carried along, until a period's
        frames match the previous period's to ``tol`` (exactly, to float rounding, once every frame the
        decoder still remembers is a repeat: ``configs/vae_synthetic.py``'s decoder, perturbed at one latent
        frame, changes the pixels of the next 31 (``tests/test_vae.py``), so a 4-frame period settles in
        about 9). The result, ``[B, f * n, H, W, 3]``, played in a loop, is what the decoder makes of the
        endless sequence: its last frame runs into its first as any two neighbouring frames do. Returns
        (frames, the max absolute difference between the last two periods: above ``tol`` only if they did
        not settle in ``max_periods``).
        """
        if start.ndim != 5 or start.shape[1] != 1 or period.ndim != 5 or period.shape[0] != start.shape[0]:
            raise ValueError(
                f"expected a first latent [B, 1, h, w, C] and a period [B, n, h, w, C], got {tuple(start.shape)} "
                f"and {tuple(period.shape)}"
            )
        _, cache = self._dec_stream(self.params, None, jnp.asarray(start), True)
        period = jnp.asarray(period)
        previous, diff = None, math.inf
        for _ in range(max_periods):
            out, cache = self._dec_stream(self.params, cache, period, False)
            if previous is not None:
                diff = float(jnp.max(jnp.abs(out.astype(jnp.float32) - previous.astype(jnp.float32))))
                if diff <= tol:
                    return out, diff
            previous = out
        return out, diff


def _moments(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """Mean and standard deviation side by side on the channel axis (tiled and chunked alike)."""
    return jnp.concatenate([mean, jnp.exp(0.5 * logvar)], axis=-1)


def _ramp(length: int, overlap: int, ramp_start: bool, ramp_end: bool) -> np.ndarray:
    w = np.ones(length, np.float32)
    if overlap > 0:
        r = (np.arange(overlap, dtype=np.float32) + 1) / (overlap + 1)
        if ramp_start:
            w[:overlap] = np.minimum(w[:overlap], r)
        if ramp_end:
            w[-overlap:] = np.minimum(w[-overlap:], r[::-1])
    return w


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if tile >= size:
        return [0]
    step = tile - overlap
    n = math.ceil((size - tile) / step) + 1
    return sorted({min(i * step, size - tile) for i in range(n)})


def _tiled(fn, x: jax.Array, tile: int, overlap: int, factor: int, down: bool) -> jax.Array:
    """Applies ``fn`` to overlapping spatial tiles of ``x`` and blends the outputs with linear ramps."""
    if not 0 <= overlap < tile:
        raise ValueError(f"need 0 <= overlap < tile, got overlap={overlap}, tile={tile}")
    if down and (tile % factor or overlap % factor):
        raise ValueError(f"pixel tile and overlap must be multiples of {factor}, got {tile}, {overlap}")
    scale = (lambda n: n // factor) if down else (lambda n: n * factor)
    _, _, h, w, _ = x.shape
    out = weight = None
    for top in _starts(h, tile, overlap):
        for left in _starts(w, tile, overlap):
            th, tw = min(tile, h), min(tile, w)
            y = np.asarray(fn(x[:, :, top : top + th, left : left + tw]), np.float32)
            if out is None:
                out = np.zeros((*y.shape[:2], scale(h), scale(w), y.shape[-1]), np.float32)
                weight = np.zeros((scale(h), scale(w)), np.float32)
            o = scale(overlap)
            wy = _ramp(y.shape[2], o, top > 0, top + th < h)
            wx = _ramp(y.shape[3], o, left > 0, left + tw < w)
            ww = wy[:, None] * wx[None, :]
            t, l_ = scale(top), scale(left)
            out[:, :, t : t + y.shape[2], l_ : l_ + y.shape[3]] += y * ww[None, None, :, :, None]
            weight[t : t + y.shape[2], l_ : l_ + y.shape[3]] += ww
    return jnp.asarray(out / weight[None, None, :, :, None])
