"""Generating videos with a trained DiT: noise laid out on any (T, H, W) patch grid, integrated by the flow.

:class:`Generator` holds the model parts, a VAE codec to decode with, and one jit-compiled sampler per grid
shape. Text-to-video of any size and duration the VAE accepts (an image is 1 frame); given latent frames
(image-to-video, extension, ...) enter as tokens fixed at ``t = 0``.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np

from jaxsora import diffusion, patching


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> (width, height)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not m:
        raise ValueError(f"size must be WIDTHxHEIGHT in pixels, e.g. 1280x720; got {text!r}")
    return int(m.group(1)), int(m.group(2))


class Generator:
    """Samples latents with the flow and decodes them; ``parts`` is a :class:`jaxsora.train.dit.DiTParts`."""

    def __init__(self, parts, codec=None):
        self.parts = parts
        self.codec = codec
        self._jitted = jax.jit(self._sample, static_argnames=("grid", "steps"))

    # -- geometry -----------------------------------------------------------------------------------------
    def factors(self) -> tuple[int, int]:
        meta = self.parts.meta
        return int(meta["temporal_factor"]), int(meta["spatial_factor"])

    def latent_grid(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """The patch grid of a ``frames x height x width`` video, or a ValueError naming valid sizes."""
        tf, sf = self.factors()
        pt, ph, pw = self.parts.patch
        if frames < 1 or (frames - 1) % tf:
            raise ValueError(f"frames must be 1 + k * {tf} (1, {1 + tf}, {1 + 2 * tf}, ...), got {frames}")
        lat_t = 1 + (frames - 1) // tf
        step_h, step_w = sf * ph, sf * pw
        if height % step_h or width % step_w or height < step_h or width < step_w:
            raise ValueError(
                f"size {width}x{height} must be a multiple of {step_w}x{step_h} (VAE factor {sf} x patch); "
                f"e.g. {max(step_w, width // step_w * step_w)}x{max(step_h, height // step_h * step_h)}"
            )
        if lat_t % pt:
            raise ValueError(
                f"{frames} frames give {lat_t} latent frames, not a multiple of the patch's {pt}"
            )
        return lat_t // pt, height // step_h, width // step_w

    # -- sampling -----------------------------------------------------------------------------------------
    def _sample(self, params, ids, mask, noise, given, given_values, guidance, *, grid, steps):
        parts = self.parts
        n = ids.shape[0]
        states = parts.text.apply(params["text"], ids, mask)
        empty_ids, empty_mask = (jnp.broadcast_to(jnp.asarray(a), ids.shape) for a in parts.empty)
        empty = parts.text.apply(params["text"], empty_ids, empty_mask)
        text = jnp.concatenate([states, empty])
        text_seg = jnp.concatenate([mask, empty_mask]).astype(jnp.int32)
        positions = jnp.broadcast_to(jnp.asarray(patching.grid_positions(grid)), (2 * n, noise.shape[1], 3))
        seg = jnp.ones((2 * n, noise.shape[1]), jnp.int32)

        def velocity(x, t):
            v = parts.model.apply(
                {"params": params["dit"]},
                jnp.concatenate([x, x]),
                jnp.concatenate([t, t]),
                positions,
                text,
                segment_ids=seg,
                text_segment_ids=text_seg,
            )
            return v[:n], v[n:]

        shift = diffusion.shift_for_tokens(int(np.prod(grid)), parts.flow)
        return diffusion.euler_sample(
            velocity,
            noise,
            steps=steps,
            shift=shift,
            guidance=guidance,
            given=given,
            given_values=given_values,
        )

    def sample_tokens(
        self,
        params,
        prompts: list[str],
        grid: tuple[int, int, int],
        *,
        seed: int = 0,
        steps: int = 30,
        guidance: float = 4.0,
        given=None,
        given_values=None,
    ) -> jax.Array:
        """Normalised latent tokens ``[N, T*H*W, P]`` for ``prompts`` on ``grid``; ``given [N, S]`` tokens keep
        ``given_values`` (normalised)."""
        ids, mask = self.parts.text.tokenize(prompts)
        s, p = int(np.prod(grid)), self.parts.cfg.patch_dim
        noise = jax.random.normal(jax.random.key(seed), (len(prompts), s, p), jnp.float32)
        if given is None:
            given = jnp.zeros((len(prompts), s), bool)
            given_values = jnp.zeros_like(noise)
        return self._jitted(
            params,
            ids,
            mask,
            noise,
            given,
            given_values,
            jnp.float32(guidance),
            grid=tuple(grid),
            steps=steps,
        )

    def tokens_to_latents(self, tokens, grid) -> jax.Array:
        """Normalised tokens ``[N, S, P]`` -> VAE latents ``[N, t, h, w, C]``."""
        lat = self.parts.denormalize(tokens)
        return jnp.stack([patching.unpatchify(x, grid, self.parts.patch, self.parts.channels) for x in lat])

    def decode(self, latents) -> np.ndarray:
        if self.codec is None:
            raise ValueError("this Generator has no VAE codec to decode with")
        return np.asarray(self.codec.decode(latents), np.float32)

    def text_to_video(
        self,
        params,
        prompts,
        *,
        frames: int,
        height: int,
        width: int,
        seed: int = 0,
        steps: int = 30,
        guidance: float = 4.0,
    ) -> np.ndarray:
        """Videos ``[N, frames, height, width, 3]`` in [-1, 1] for ``prompts``."""
        grid = self.latent_grid(frames, height, width)
        tokens = self.sample_tokens(params, prompts, grid, seed=seed, steps=steps, guidance=guidance)
        return self.decode(self.tokens_to_latents(tokens, grid))
