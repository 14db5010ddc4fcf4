"""AdamW with linear warm-up and cosine decay, global-norm clipping, and an EMA of the weights."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import optax


def schedule(opt: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    warmup = max(1, min(opt.warmup_steps, total_steps))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=opt.lr,
        warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1),
        end_value=opt.lr * opt.final_lr_fraction,
    )


def make_optimizer(opt: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(opt.grad_clip),
        optax.adamw(schedule(opt, total_steps), b1=opt.b1, b2=opt.b2, weight_decay=opt.weight_decay),
    )


def ema_update(ema, params, decay: float):
    return jax.tree.map(lambda e, p: e + (1.0 - decay) * (p.astype(jnp.float32) - e), ema, params)


def make_unscaled_optimizer(opt: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """AdamW without its learning rate: the caller multiplies the updates by ``-lr`` (:func:`lr_at`), so the
    rate can follow something only the host knows, such as the fraction of a time budget used."""
    return optax.chain(
        optax.clip_by_global_norm(opt.grad_clip),
        optax.scale_by_adam(b1=opt.b1, b2=opt.b2),
        optax.add_decayed_weights(opt.weight_decay),
    )


def lr_at(
    opt: ml_collections.ConfigDict, step: int, total_steps: int, progress: float | None = None
) -> float:
    """:func:`schedule`'s rate at ``step`` (a host float). With ``progress`` in [0, 1] the cosine decay
    follows it instead of the step count (warm-up still counts steps)."""
    warmup = max(1, min(opt.warmup_steps, total_steps))
    if step < warmup:
        return opt.lr * step / warmup
    if progress is None:
        progress = (step - warmup) / max(total_steps - warmup, 1)
    progress = min(max(progress, 0.0), 1.0)
    alpha = opt.final_lr_fraction
    return opt.lr * ((1.0 - alpha) * 0.5 * (1.0 + math.cos(math.pi * progress)) + alpha)
