"""Rotary position embeddings over 1 to 3 integer coordinates (3D: a token's (t, h, w) on its patch grid).

The head dimension's ``Dh / 2`` rotation pairs are split between the axes (3D: ``h`` and ``w`` get
``Dh/2 // 3`` pairs each, ``t`` the rest), each axis with its own geometric frequency ladder. A token's
rotation depends only on its own coordinates, and attention logits only on coordinate *differences*: a clip
gives the same result wherever it sits in a packed sequence, and a grid never seen in training (a longer or
wider video at sampling time) needs nothing new. Pairs are (x[..., :Dh/2], x[..., Dh/2:]) ("rotate half").
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


def axis_pairs(head_dim: int, num_axes: int) -> tuple[int, ...]:
    if head_dim % 2:
        raise ValueError(f"rotary embeddings need an even head dim, got {head_dim}")
    half = head_dim // 2
    rest = half // num_axes
    if rest < 1:
        raise ValueError(f"head dim {head_dim} is too small for {num_axes}-axis rotary embeddings")
    return (half - rest * (num_axes - 1),) + (rest,) * (num_axes - 1)


def frequencies(head_dim: int, num_axes: int, theta: float = 10_000.0) -> list[np.ndarray]:
    """Per axis, its pairs' angular frequencies ``theta ** (-2i / (2 * pairs))``."""
    return [theta ** (-np.arange(n, dtype=np.float64) / n) for n in axis_pairs(head_dim, num_axes)]


@dataclasses.dataclass(frozen=True)
class Rotary:
    """cos/sin tables ``[B, S, 1, Dh/2]`` (float32) for a batch of token positions; ``apply`` rotates
    ``[B, S, H, Dh]`` queries or keys."""

    cos: jax.Array
    sin: jax.Array

    @classmethod
    def from_positions(cls, positions, head_dim: int, theta: float = 10_000.0) -> Rotary:
        """``positions`` int ``[B, S, A]`` (A axes, e.g. 3 for (t, h, w))."""
        positions = jnp.asarray(positions)
        freqs = frequencies(head_dim, positions.shape[-1], theta)
        angles = jnp.concatenate(
            [
                positions[..., a : a + 1].astype(jnp.float32) * jnp.asarray(f, jnp.float32)
                for a, f in enumerate(freqs)
            ],
            axis=-1,
        )[:, :, None, :]
        return cls(jnp.cos(angles), jnp.sin(angles))

    def apply(self, x: jax.Array) -> jax.Array:
        half = x.shape[-1] // 2
        x32 = x.astype(jnp.float32)
        x1, x2 = x32[..., :half], x32[..., half:]
        out = jnp.concatenate([x1 * self.cos - x2 * self.sin, x2 * self.cos + x1 * self.sin], axis=-1)
        return out.astype(x.dtype)


jax.tree_util.register_dataclass(Rotary, data_fields=["cos", "sin"], meta_fields=[])
