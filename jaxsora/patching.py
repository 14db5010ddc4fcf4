"""Spacetime latent patches: a latent video ``[t, h, w, C]`` <-> a sequence of tokens with 3D grid positions.

A patch is ``(pt, ph, pw)`` latent voxels; its token is those voxels' values flattened in ``(pt, ph, pw, C)``
order, so a token has ``D = pt * ph * pw * C`` values. Tokens are ordered t-major, then h, then w (raster
order over the patch grid ``(T, H, W) = (t / pt, h / ph, w / pw)``), and each carries its integer
``(t, h, w)`` index on that grid. Positions, not sequence order, are what tell the transformer where a token
is: that is what lets NaViT-style packing drop tokens and mix clips of any shape in one sequence.

The functions take numpy or jax arrays and return the same kind (reshapes and transposes only), so they run
in the data pipeline and inside ``jit`` alike. Any grid works, including a 1-frame image (``T = 1``) and odd
sizes; the latent sides only have to be multiples of the patch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _xp(x):
    """numpy for numpy inputs (and lists), jax.numpy for jax arrays: keeps the pipeline free of jax."""
    if isinstance(x, np.ndarray | np.generic | list | tuple):
        return np
    import jax.numpy as jnp

    return jnp


def _check_patch(patch: Sequence[int]) -> tuple[int, int, int]:
    patch = tuple(int(p) for p in patch)
    if len(patch) != 3 or min(patch) < 1:
        raise ValueError(f"patch must be three positive sizes (pt, ph, pw), got {patch}")
    return patch


def grid_shape(latent_shape: Sequence[int], patch: Sequence[int]) -> tuple[int, int, int]:
    """The patch grid ``(T, H, W)`` of a latent of shape ``[t, h, w, C]`` (or ``[t, h, w]``)."""
    pt, ph, pw = _check_patch(patch)
    if len(latent_shape) not in (3, 4):
        raise ValueError(f"latents must be [t, h, w, C], got shape {tuple(latent_shape)}")
    t, h, w = (int(s) for s in latent_shape[:3])
    if t % pt or h % ph or w % pw or min(t, h, w) < 1:
        raise ValueError(
            f"latent shape {tuple(latent_shape)} is not divisible by the patch {(pt, ph, pw)}: "
            f"(t, h, w) = {(t, h, w)} must be positive multiples of (pt, ph, pw); size clips with "
            "data.spatial_multiple = VAE spatial factor x patch (and frames 1 + k * pt * temporal factor)"
        )
    return t // pt, h // ph, w // pw


def grid_positions(grid: Sequence[int]) -> np.ndarray:
    """int32 ``[T*H*W, 3]``: the ``(t, h, w)`` index of every cell of a patch grid, in token order.

    At sampling time this is the layout of the noise tokens for any requested duration and size.
    """
    grid = tuple(int(g) for g in grid)
    if len(grid) != 3 or min(grid) < 1:
        raise ValueError(f"grid must be three positive sizes (T, H, W), got {grid}")
    t, h, w = grid
    tt, hh, ww = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
    return np.stack([tt.ravel(), hh.ravel(), ww.ravel()], axis=-1).astype(np.int32)


def patchify(latents, patch: Sequence[int] = (1, 2, 2)):
    """``[t, h, w, C]`` -> (tokens ``[N, pt*ph*pw*C]``, positions int32 ``[N, 3]``), ``N = T*H*W``."""
    pt, ph, pw = _check_patch(patch)
    if latents.ndim != 4:
        raise ValueError(f"latents must be [t, h, w, C], got shape {tuple(latents.shape)}")
    t_, h_, w_ = grid_shape(latents.shape, patch)
    c = latents.shape[-1]
    xp = _xp(latents)
    x = latents.reshape(t_, pt, h_, ph, w_, pw, c)
    x = xp.transpose(x, (0, 2, 4, 1, 3, 5, 6))  # T, H, W, pt, ph, pw, C
    tokens = x.reshape(t_ * h_ * w_, pt * ph * pw * c)
    return tokens, grid_positions((t_, h_, w_))


def unpatchify(tokens, grid: Sequence[int], patch: Sequence[int], channels: int):
    """The exact inverse of :func:`patchify`: tokens ``[T*H*W, D]`` in token order -> ``[T*pt, H*ph, W*pw, C]``."""
    pt, ph, pw = _check_patch(patch)
    t_, h_, w_ = (int(g) for g in grid)
    d = pt * ph * pw * channels
    if tuple(tokens.shape) != (t_ * h_ * w_, d):
        raise ValueError(
            f"tokens of shape {tuple(tokens.shape)} do not fill grid {(t_, h_, w_)} with patch "
            f"{(pt, ph, pw)} and {channels} channels: expected {(t_ * h_ * w_, d)} (all tokens, none dropped)"
        )
    xp = _xp(tokens)
    x = tokens.reshape(t_, h_, w_, pt, ph, pw, channels)
    x = xp.transpose(x, (0, 3, 1, 4, 2, 5, 6))  # T, pt, H, ph, W, pw, C
    return x.reshape(t_ * pt, h_ * ph, w_ * pw, channels)
