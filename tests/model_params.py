"""Parameters of test models, initialised and perturbed without compiling one XLA program per leaf.

Flax's ``init`` run eagerly dispatches every initializer op by op, and each ``jax.random.normal`` of a new shape
is its own compiled program (a third of a second apiece on a CPU; a VAE has ~150 leaves): :func:`init` jits
the whole initialisation into one program instead. :func:`perturbed` adds the noise that keeps zero-initialised
layers (adaLN-Zero gates, zero-init residual convs, zero heads) from making equality tests trivially true,
drawn with numpy: no compile at all.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np


def init(module: nn.Module, rngs, *args, **kwargs):
    """``module.init(rngs, *args, **kwargs)["params"]``, unboxed, as one jitted program."""
    return jax.jit(lambda r: nn.meta.unbox(module.init(r, *args, **kwargs)["params"]))(rngs)


def perturbed(params, scale: float, seed: int):
    """Every leaf plus ``scale`` times standard normal noise (numpy, seeded), as arrays on the default device."""
    rng = np.random.default_rng(seed)

    def leaf(x):
        x = np.asarray(x)
        return (x + scale * rng.standard_normal(x.shape)).astype(x.dtype)

    return jax.device_put(jax.tree.map(leaf, params))
