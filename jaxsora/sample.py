"""Generating videos with a trained DiT: noise laid out on any (T, H, W) patch grid, integrated by the flow.

:class:`Generator` holds the model parts, a VAE codec to decode with, and one jit-compiled sampler per grid
shape. Text-to-video of any size and duration the VAE accepts (an image is 1 frame); given latent frames
(image-to-video, extension, ...) enter as tokens fixed at ``t = 0``.
"""

from __future__ import annotations

import contextlib
import logging
import re

import jax
import jax.numpy as jnp
import numpy as np

from jaxsora import diffusion, parallel, patching


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> (width, height)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not m:
        raise ValueError(f"size must be WIDTHxHEIGHT in pixels, e.g. 1280x720; got {text!r}")
    return int(m.group(1)), int(m.group(2))


def smoothest_start(frames: np.ndarray) -> int:
    """Where to start playing a cyclic video ``frames [P, ...]`` (frame ``P - 1`` runs into frame 0): the
    frame ``s`` whose transition from the one before it (``frames[s - 1]``, cyclically) is the smallest mean
    absolute change, so the loop's wrap falls on its calmest transition, as video textures choose theirs."""
    f = np.asarray(frames, np.float32)
    change = np.abs(f - np.roll(f, 1, axis=0)).reshape(len(f), -1).mean(axis=1)
    return int(np.argmin(change))


class Generator:
    """Samples latents with the flow and decodes them; ``parts`` is a :class:`jaxsora.train.dit.DiTParts`.

    With a ``mesh`` of several devices (:func:`jaxsora.parallel.make_mesh`), sampling runs sharded over it:
    the parameters placed by the model's logical axis names (the training rules table), the batch of prompts
    (twice, with the unconditional half of classifier-free guidance) over data x fsdp where it divides, the
    tokens over the sequence axis, under the same one jit per (grid, steps, sampler)."""

    def __init__(self, parts, codec=None, mesh=None):
        self.parts = parts
        self.codec = codec
        self.mesh = mesh if mesh is not None and mesh.size > 1 else None
        self._jitted = jax.jit(
            self._sample,
            static_argnames=("grid", "steps", "method", "shift"),
            compiler_options=parallel.compiler_options(parts.config),
        )
        self._param_shardings = None

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
    def _sample(
        self,
        params,
        ids,
        mask,
        x_start,
        given,
        given_values,
        guidance,
        t_start,
        *,
        grid,
        steps,
        method,
        shift,
    ):
        parts = self.parts
        n = ids.shape[0]
        states = parts.text.apply(params["text"], ids, mask)
        empty_ids, empty_mask = (jnp.broadcast_to(jnp.asarray(a), ids.shape) for a in parts.empty)
        empty = parts.text.apply(params["text"], empty_ids, empty_mask)
        text = jnp.concatenate([states, empty])
        text_seg = jnp.concatenate([mask, empty_mask]).astype(jnp.int32)
        positions = jnp.broadcast_to(jnp.asarray(patching.grid_positions(grid)), (2 * n, x_start.shape[1], 3))
        seg = jnp.ones((2 * n, x_start.shape[1]), jnp.int32)

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

        if shift is None:  # the training rule: the shift grows with the clip's token count
            shift = diffusion.shift_for_tokens(int(np.prod(grid)), parts.flow)
        return diffusion.sample(
            velocity,
            x_start,
            steps=steps,
            shift=shift,
            guidance=guidance,
            given=given,
            given_values=given_values,
            method=method,
            t_start=t_start,
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
        sampler: str = "euler",
        shift: float | None = None,
        given=None,
        given_values=None,
        start=None,
        strength: float = 1.0,
    ) -> jax.Array:
        """Normalised latent tokens ``[N, T*H*W, P]`` for ``prompts`` on ``grid``.

        ``shift`` fixes the time grid's shift (``diffusion.timesteps``: more steps at high noise above 1);
        None uses the training rule for the clip's token count (``diffusion.shift_for_tokens``).

        ``given [N, S]`` tokens keep ``given_values`` (normalised) throughout; ``start`` (normalised tokens)
        with ``strength < 1`` starts from ``start`` noised to ``t = strength`` (SDEdit) instead of noise."""
        if sampler not in diffusion.SAMPLERS:
            raise ValueError(f"sampler must be one of {diffusion.SAMPLERS}, got {sampler!r}")
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if shift is not None and not shift > 0:
            raise ValueError(f"shift must be > 0, got {shift}")
        ids, mask = self.parts.text.tokenize(prompts)
        n, s, p = len(prompts), int(np.prod(grid)), self.parts.cfg.patch_dim
        noise = jax.random.normal(jax.random.key(seed), (n, s, p), jnp.float32)
        x_start = (
            noise
            if start is None
            else diffusion.noised(jnp.broadcast_to(start, noise.shape), noise, strength)
        )
        if given is None:
            given = jnp.zeros((n, s), bool)
            given_values = jnp.zeros_like(noise)
        given = jnp.broadcast_to(jnp.asarray(given), (n, s))
        given_values = jnp.broadcast_to(jnp.asarray(given_values, jnp.float32), (n, s, p))
        args = (params, ids, mask, x_start, given, given_values)
        if self.mesh is not None:
            args = self._place(*args)
        with contextlib.ExitStack() as stack:
            if self.mesh is not None:
                stack.enter_context(parallel.mesh_context(self.mesh))
            return self._jitted(
                *args,
                jnp.float32(guidance),
                jnp.float32(strength),
                grid=tuple(grid),
                steps=steps,
                method=sampler,
                shift=None if shift is None else float(shift),
            )

    def _place(self, params, *batch):
        """Parameters by their logical names, the batch over data x fsdp where its size divides."""
        mesh = self.mesh
        if self._param_shardings is None:
            abstract = jax.eval_shape(self.parts.init_params, jax.random.key(0))
            self._param_shardings = parallel.state_shardings(mesh, abstract)
        params = jax.device_put(params, self._param_shardings)
        ways = mesh.shape["data"] * mesh.shape["fsdp"]
        placed = []
        for x in batch:
            x = jnp.asarray(x)
            sharding = (
                parallel.batch_sharding(mesh, x.ndim) if x.shape[0] % ways == 0 else parallel.replicated(mesh)
            )
            placed.append(jax.device_put(x, sharding))
        return (params, *placed)

    # -- latents <-> tokens <-> pixels --------------------------------------------------------------------
    def tokens_to_latents(self, tokens, grid) -> jax.Array:
        """Normalised tokens ``[N, S, P]`` -> VAE latents ``[N, t, h, w, C]``."""
        lat = self.parts.denormalize(tokens)
        return jnp.stack([patching.unpatchify(x, grid, self.parts.patch, self.parts.channels) for x in lat])

    def latents_to_tokens(self, latents) -> tuple[jax.Array, tuple[int, int, int]]:
        """VAE latents ``[t, h, w, C]`` -> (normalised tokens ``[S, P]``, grid)."""
        grid = patching.grid_shape(latents.shape, self.parts.patch)
        tokens, _ = patching.patchify(jnp.asarray(latents), self.parts.patch)
        return self.parts.normalize(tokens), grid

    def _codec(self):
        if self.codec is None:
            raise ValueError("this Generator has no VAE codec to encode/decode with")
        return self.codec

    def encode(self, video) -> jax.Array:
        """Pixels ``[T, H, W, 3]`` (uint8, or float in [-1, 1]) -> VAE latents ``[t, h, w, C]``."""
        video = np.asarray(video)
        if video.dtype == np.uint8:
            video = video.astype(np.float32) / 127.5 - 1.0
        if video.ndim == 3:
            video = video[None]
        self.latent_grid(video.shape[0], video.shape[1], video.shape[2])  # a clear error for a bad size
        return self._codec().encode(jnp.asarray(video, jnp.float32)[None])[0]

    def decode(self, latents) -> np.ndarray:
        """VAE latents ``[N, t, h, w, C]`` -> videos ``[N, T, H, W, 3]`` in [-1, 1] (chunked when long)."""
        chunk = 4 if latents.shape[1] > 8 else 0
        latents = np.asarray(latents)  # from wherever sampling left them (a mesh) to the VAE's device
        return np.asarray(self._codec().decode(latents, chunk_latents=chunk), np.float32)

    def _frames_to_latent_count(self, frames: int) -> int:
        tf, _ = self.factors()
        if frames < 1 or (frames - 1) % tf:
            raise ValueError(f"frames must be 1 + k * {tf} (1, {1 + tf}, {1 + 2 * tf}, ...), got {frames}")
        return 1 + (frames - 1) // tf

    # -- the modes ----------------------------------------------------------------------------------------
    def text_to_video(self, params, prompts, *, frames: int, height: int, width: int, **kw) -> np.ndarray:
        """Videos ``[N, frames, height, width, 3]`` in [-1, 1] for ``prompts``; ``frames=1`` is an image."""
        grid = self.latent_grid(frames, height, width)
        tokens = self.sample_tokens(params, prompts, grid, **kw)
        return self.decode(self.tokens_to_latents(tokens, grid))

    def _with_given(self, params, prompts, grid, given_frames: dict[int, jax.Array], **kw) -> jax.Array:
        """Samples ``grid`` with latent frames ``{index: normalised tokens [H*W, P]}`` held fixed."""
        t, h, w = grid
        per_frame = h * w
        given = np.zeros((t * per_frame,), bool)
        # Assembled on the host: the frames may come from different devices (the VAE's, or a sharded sample).
        values = np.zeros((t * per_frame, self.parts.cfg.patch_dim), np.float32)
        for index, tokens in given_frames.items():
            given[index * per_frame : (index + 1) * per_frame] = True
            values[index * per_frame : (index + 1) * per_frame] = np.asarray(tokens)
        return self.sample_tokens(params, prompts, grid, given=given[None], given_values=values[None], **kw)

    def _split_frames(self, latents) -> dict[int, jax.Array]:
        tokens, grid = self.latents_to_tokens(latents)
        per_frame = grid[1] * grid[2]
        return {i: tokens[i * per_frame : (i + 1) * per_frame] for i in range(grid[0])}

    def image_to_video(self, params, prompts, image, *, frames: int, **kw) -> np.ndarray:
        """The image (``[H, W, 3]``) encoded as the first latent frame and kept; the rest generated."""
        height, width = np.asarray(image).shape[:2]
        grid = self.latent_grid(frames, height, width)
        first = self._split_frames(self.encode(image))[0]
        tokens = self._with_given(params, prompts, grid, {0: first}, **kw)
        return self.decode(self.tokens_to_latents(tokens, grid))

    def extend(
        self, params, prompts, video, *, new_frames: int, direction: str = "forward", **kw
    ) -> np.ndarray:
        """The video (``[F, H, W, 3]``, F = 1 + 4k) with ``new_frames`` (a multiple of 4) generated after
        (``forward``) or before (``backward``) it. Returns the whole clip, original part included."""
        tf, _ = self.factors()
        if direction not in ("forward", "backward"):
            raise ValueError(f"direction must be 'forward' or 'backward', got {direction!r}")
        if new_frames < tf or new_frames % tf:
            raise ValueError(f"new_frames must be a positive multiple of {tf}, got {new_frames}")
        video = np.asarray(video)
        latents = self.encode(video)
        known, added = latents.shape[0], new_frames // tf
        grid = self.latent_grid(1 + tf * (known + added - 1), video.shape[1], video.shape[2])
        frames = self._split_frames(latents)
        offset = 0 if direction == "forward" else added
        tokens = self._with_given(params, prompts, grid, {i + offset: v for i, v in frames.items()}, **kw)
        return self.decode(self.tokens_to_latents(tokens, grid))

    def connect(self, params, prompts, first, second, *, middle_frames: int, **kw) -> np.ndarray:
        """``first``, then ``middle_frames`` (a multiple of 4) generated frames, then ``second`` from its second
        frame on: ``len(first) + middle_frames + len(second) - 1`` frames. The last generated frame takes the
        place of ``second``'s first: ``second`` is given from its latent frame 1 (its frames 1-4), a four-frame
        latent where the model has seen such frames in training, rather than its one-frame first latent in
        the middle of a clip, where it has never seen one."""
        tf, _ = self.factors()
        if middle_frames < tf or middle_frames % tf:
            raise ValueError(f"middle_frames must be a positive multiple of {tf}, got {middle_frames}")
        first, second = np.asarray(first), np.asarray(second)
        if first.shape[1:3] != second.shape[1:3]:
            raise ValueError(f"the two videos differ in size: {first.shape[1:3]} vs {second.shape[1:3]}")
        if len(second) < 1 + tf:
            raise ValueError(f"the second video needs at least {1 + tf} frames, got {len(second)}")
        a, b = self._split_frames(self.encode(first)), self._split_frames(self.encode(second))
        middle = middle_frames // tf
        total = len(a) + middle + len(b) - 1
        grid = self.latent_grid(1 + tf * (total - 1), first.shape[1], first.shape[2])
        given = dict(a) | {len(a) + middle + i - 1: v for i, v in b.items() if i > 0}
        tokens = self._with_given(params, prompts, grid, given, **kw)
        return self.decode(self.tokens_to_latents(tokens, grid))

    def loop(self, params, prompts, *, frames: int, height: int, width: int, **kw) -> np.ndarray:
        """A clip of ``frames`` frames (the loop's period: a multiple of 4) whose last frame runs into its
        first, played in a loop.

        Latents first, two samplings, each with every latent frame where the model has seen such frames in
        training (a one-frame latent first, four-frame latents after it): clip A covers about half of the
        loop; clip B starts from A's end (one of A's frames re-encoded as a first latent frame, then A's last
        latent frame), generates the rest, and ends held on A's latent frame 1, so that what it generates
        leads back into A's start. The loop's latents are A's from frame 1 on, then B's new ones: every
        neighbouring pair, the wrap included, was generated side by side. Then pixels: the VAE decodes that
        sequence repeated until its causal memory holds only repeats (:meth:`VideoCodec.decode_periodic`),
        so the wrap is a transition of one decode like every other, and the loop starts on the frame after
        its calmest transition (:func:`smoothest_start`)."""
        if len(prompts) != 1:
            raise ValueError("loop makes one clip at a time: give one prompt")
        tf, _ = self.factors()
        if frames < 2 * tf or frames % tf:
            raise ValueError(
                f"a loop's frames are its period: a multiple of {tf}, at least {2 * tf} (e.g. 16), got {frames}"
            )
        steps = frames // tf  # four-frame latent steps around the loop
        a_steps = (steps + 1) // 2  # made by A (after its first frame)
        b_steps = steps - a_steps  # made by B
        grid_a = self.latent_grid(1 + tf * a_steps, height, width)
        a = self.sample_tokens(params, prompts, grid_a, **kw)
        latents_a = np.asarray(self.tokens_to_latents(a, grid_a))
        video_a = self.decode(latents_a)[0]
        per_frame = grid_a[1] * grid_a[2]
        a = np.asarray(a[0])

        def latent_frame(i):
            return a[i * per_frame : (i + 1) * per_frame]

        restart = self._split_frames(self.encode(video_a[tf * (a_steps - 1)]))[0]
        length_b = 3 + b_steps  # restart, A's last latent frame, b_steps new ones, A's latent frame 1
        grid_b = self.latent_grid(1 + tf * (length_b - 1), height, width)
        given = {0: restart, 1: latent_frame(a_steps), length_b - 1: latent_frame(1)}
        b = self._with_given(params, prompts, grid_b, given, **dict(kw, seed=kw.get("seed", 0) + 1))
        latents_b = np.asarray(self.tokens_to_latents(b, grid_b))
        period = np.concatenate([latents_a[:, 1:], latents_b[:, 2 : 2 + b_steps]], axis=1)
        cyclic, settled = self._codec().decode_periodic(latents_a[:, :1], period)
        if settled > 1e-3:
            logging.getLogger(__name__).warning(
                "the loop's decode did not settle (last change %.3g): its wrap may show a jump", settled
            )
        cyclic = np.asarray(cyclic, np.float32)[0]
        return np.roll(cyclic, -smoothest_start(cyclic), axis=0)[None]

    def edit(self, params, prompts, video, *, strength: float, **kw) -> np.ndarray:
        """SDEdit: the video's latents noised to ``t = strength`` and denoised under the new prompt(s)."""
        video = np.asarray(video)
        latents = self.encode(video)
        tokens, grid = self.latents_to_tokens(latents)
        out = self.sample_tokens(params, prompts, grid, start=tokens[None], strength=strength, **kw)
        return self.decode(self.tokens_to_latents(out, grid))
