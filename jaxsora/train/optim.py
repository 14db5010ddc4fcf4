"""AdamW with linear warm-up and cosine decay, global-norm clipping, and an EMA of the weights."""

from __future__ import annotations

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
