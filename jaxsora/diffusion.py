"""Rectified flow: the training objective and a plain Euler sampler with classifier-free guidance.

Path and target: ``x_t = (1 - t) * x_0 + t * noise`` for ``t`` in [0, 1] (``t = 1`` is pure noise); the model
predicts the velocity ``v = noise - x_0``, and sampling integrates ``dx/dt = v`` from ``t = 1`` down to 0.

Timesteps: ``t = sigmoid(n)``, ``n ~ Normal(logit_mean, logit_std)`` (logit-normal, as SD3), then shifted
``t' = s t / (1 + (s - 1) t)`` with a shift ``s`` that grows with the clip's token count (log ``s`` linear in
the count between ``shift_base_tokens`` and ``shift_max_tokens``): a larger or longer clip keeps more of its
structure at a given ``t``, so it needs more noise to be as uncertain. Every clip of a pack draws its own ``t``.
With ``uniform_time_rate`` > 0 that share of the clips draws ``t`` uniformly in [0, 1] instead, unshifted: a large
shift leaves almost no training at low noise (at shift 3 about 1% of the times fall below 0.2), where the fine
detail of the last sampling steps is learned.

Conditioning on given frames: per clip, a mode is drawn (``cond_rates``: first frame, last frame, first k,
last k, random frames; the rest unconditioned); the tokens of given latent frames keep ``t = 0`` and their clean
values, and the loss counts only the generated tokens. Images (1 latent frame) are never conditioned.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

COND_MODES = ("first", "last", "first_k", "last_k", "random")


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    logit_mean: float = 0.0
    logit_std: float = 1.0
    shift_base: float = 1.0  # shift at shift_base_tokens tokens (and below)
    shift_max: float = 3.0  # shift at shift_max_tokens tokens (and above)
    shift_base_tokens: int = 256
    shift_max_tokens: int = 4096
    uniform_time_rate: float = 0.0  # share of clips whose t is uniform in [0, 1] (unshifted) instead
    cond_rates: tuple[float, ...] = (0.1, 0.05, 0.05, 0.05, 0.05)  # one per COND_MODES entry
    random_frame_rate: float = 0.3  # "random" mode: each frame given with this probability
    max_latent_frames: int = 64  # bound on a clip's latent frames (for the random-frame table)

    def __post_init__(self):
        if not 0.0 <= self.uniform_time_rate <= 1.0:
            raise ValueError(
                f"diffusion.uniform_time_rate is a share in [0, 1]; got {self.uniform_time_rate}"
            )
        if len(self.cond_rates) != len(COND_MODES) or min(self.cond_rates) < 0 or sum(self.cond_rates) > 1:
            raise ValueError(
                f"diffusion.cond_rates needs {len(COND_MODES)} rates {COND_MODES}, each >= 0, summing to <= 1; "
                f"got {self.cond_rates}"
            )

    @classmethod
    def from_config(cls, section) -> FlowConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in dict(section).items() if k in fields}
        if "cond_rates" in d:
            d["cond_rates"] = tuple(float(r) for r in d["cond_rates"])
        return cls(**d)


def shift_for_tokens(num_tokens, cfg: FlowConfig):
    """The timestep shift for clips of ``num_tokens`` tokens (array or number)."""
    lo, hi = math.log(cfg.shift_base_tokens), math.log(max(cfg.shift_max_tokens, cfg.shift_base_tokens + 1))
    frac = jnp.clip(
        (jnp.log(jnp.maximum(jnp.asarray(num_tokens, jnp.float32), 1.0)) - lo) / (hi - lo), 0.0, 1.0
    )
    return jnp.exp(math.log(cfg.shift_base) + frac * (math.log(cfg.shift_max) - math.log(cfg.shift_base)))


def shift_time(t, shift):
    return shift * t / (1.0 + (shift - 1.0) * t)


def per_token(values, segment_ids):
    """Per-clip values ``[B, K]`` -> per-token ``[B, S]`` (padding tokens get clip 0's value; mask them)."""
    return jnp.take_along_axis(values, jnp.maximum(segment_ids - 1, 0), axis=1)


def given_frames(rng, segment_ids, frame_index, grid, cfg: FlowConfig):
    """bool ``[B, S]``: the tokens whose latent frame is given clean under each clip's drawn mode."""
    b, k = grid.shape[:2]
    k_mode, k_count, k_random = jax.random.split(rng, 3)
    probs = jnp.asarray((1.0 - sum(cfg.cond_rates), *cfg.cond_rates), jnp.float32)
    mode = jax.random.categorical(k_mode, jnp.log(jnp.maximum(probs, 1e-12)), shape=(b, k))  # 0 = none
    frames = grid[..., 0]
    mode = jnp.where(frames > 1, mode, 0)  # images are never conditioned
    count = 1 + jnp.floor(jax.random.uniform(k_count, (b, k)) * jnp.maximum(frames - 1, 1)).astype(jnp.int32)
    table = jax.random.bernoulli(k_random, cfg.random_frame_rate, (b, k, cfg.max_latent_frames))

    f = frame_index
    t_clip, m, c = per_token(frames, segment_ids), per_token(mode, segment_ids), per_token(count, segment_ids)
    clip = jnp.maximum(segment_ids - 1, 0)
    rand = table[jnp.arange(b)[:, None], clip, jnp.minimum(f, cfg.max_latent_frames - 1)] & (
        f < cfg.max_latent_frames
    )
    given = jnp.select(
        [m == 1, m == 2, m == 3, m == 4, m == 5],
        [f == 0, f == t_clip - 1, f < c, f >= t_clip - c, rand],
        False,
    )
    return given & (segment_ids > 0)


@dataclasses.dataclass
class FlowInputs:
    x_t: jax.Array  # [B, S, P] noisy tokens (clean where given)
    t: jax.Array  # [B, S] per-token time (0 where given)
    target: jax.Array  # [B, S, P] velocity target
    loss_mask: jax.Array  # [B, S] generated, real tokens
    # The same times as a table (DiT's t_index form): entry 0 is t = 0 (given frames), entry k the clip of
    # segment k; every real token's t == t_table[t_index] (padding tokens read entry 0: they are masked).
    t_table: jax.Array | None = None  # [B, K + 1]
    t_index: jax.Array | None = None  # [B, S] int32


def training_inputs(rng, x0, segment_ids, positions, grid, cfg: FlowConfig) -> FlowInputs:
    """Noisy inputs, per-token times, targets and loss mask for a packed batch of clean tokens ``x0``."""
    b, k = grid.shape[:2]
    k_t, k_noise, k_given = jax.random.split(rng, 3)
    t_clip = jax.nn.sigmoid(cfg.logit_mean + cfg.logit_std * jax.random.normal(k_t, (b, k)))
    t_clip = shift_time(t_clip, shift_for_tokens(jnp.prod(grid, axis=-1), cfg))
    if cfg.uniform_time_rate > 0:  # static: without it the draws are those of a config that lacks the field
        k_mix, k_uniform = jax.random.split(jax.random.fold_in(k_t, 1))
        uniform = jax.random.bernoulli(k_mix, cfg.uniform_time_rate, (b, k))
        t_clip = jnp.where(uniform, jax.random.uniform(k_uniform, (b, k)), t_clip)
    given = given_frames(k_given, segment_ids, positions[..., 0], grid, cfg)
    t = jnp.where(given, 0.0, per_token(t_clip, segment_ids))
    noise = jax.random.normal(k_noise, x0.shape, x0.dtype)
    x_t = jnp.where(given[..., None], x0, (1.0 - t[..., None]) * x0 + t[..., None] * noise)
    t_table = jnp.concatenate([jnp.zeros((b, 1), t_clip.dtype), t_clip], axis=1)
    t_index = jnp.where(given, 0, segment_ids).astype(jnp.int32)
    return FlowInputs(x_t, t, noise - x0, (segment_ids > 0) & ~given, t_table, t_index)


def masked_mse(pred, target, mask):
    """Mean squared error over the masked tokens (and all their values)."""
    err = jnp.mean(jnp.square(pred.astype(jnp.float32) - target), axis=-1)
    return jnp.sum(err * mask) / jnp.maximum(jnp.sum(mask), 1)


def timesteps(steps: int, shift, t_start: float = 1.0) -> jax.Array:
    """``steps + 1`` times from ``t_start`` down to 0, shifted (more steps at high noise when ``shift > 1``).

    ``t_start < 1`` starts part-way (SDEdit: the input noised to that time)."""
    t = jnp.linspace(1.0, 0.0, steps + 1)
    t = shift_time(t, shift)
    return t * t_start


SAMPLERS = ("euler", "heun")


def sample(
    velocity: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]],
    x_start: jax.Array,
    *,
    steps: int,
    shift,
    guidance: float,
    given: jax.Array | None = None,
    given_values: jax.Array | None = None,
    method: str = "euler",
    t_start: float = 1.0,
) -> jax.Array:
    """Integrates the flow from ``x_start`` at ``t_start`` (pure noise at 1) to ``t = 0``.

    ``velocity(x, t) -> (v_cond, v_uncond)`` for tokens ``x [B, S, P]`` at per-token times ``t [B, S]``;
    guidance mixes them as ``v_u + g (v_c - v_u)``. Tokens where ``given [B, S]`` keep ``given_values`` and
    ``t = 0`` throughout (conditioning frames). ``method``: ``euler`` (one model call a step) or ``heun``
    (second order, two calls a step; the last step, to ``t = 0``, is Euler)."""
    if method not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {method!r}")
    ts = timesteps(steps, shift, t_start)
    if given is None:
        given = jnp.zeros(x_start.shape[:2], bool)
        given_values = jnp.zeros_like(x_start)
    keep = given[..., None]

    def guided(x, t):
        v_cond, v_uncond = velocity(x, jnp.where(given, 0.0, t))
        return v_uncond + guidance * (v_cond - v_uncond)

    def body(i, x):
        t_now, t_next = ts[i], ts[i + 1]
        v = guided(x, t_now)
        x_euler = jnp.where(keep, given_values, x + (t_next - t_now) * v)
        if method == "euler":
            return x_euler

        def heun(_):
            v2 = guided(x_euler, t_next)
            return jnp.where(keep, given_values, x + (t_next - t_now) * 0.5 * (v + v2))

        return jax.lax.cond(t_next > 0, heun, lambda _: x_euler, None)

    x = jnp.where(keep, given_values, x_start)
    return jax.lax.fori_loop(0, steps, body, x)


def euler_sample(velocity, noise, *, steps, shift, guidance, given=None, given_values=None) -> jax.Array:
    """Euler from pure noise (``t = 1``) to data; see :func:`sample`."""
    return sample(
        velocity, noise, steps=steps, shift=shift, guidance=guidance, given=given, given_values=given_values
    )


def noised(x0, noise, t):
    """The rectified-flow path at time ``t``: ``(1 - t) x0 + t noise`` (SDEdit's starting point)."""
    return (1.0 - t) * x0 + t * noise
