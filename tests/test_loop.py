"""The training loops' dispatch window: the host stays within ``depth`` steps of the device."""

import jax
import jax.numpy as jnp
import pytest

from jaxsora.train.loop import DispatchWindow


@jax.jit
def slow_step(x):  # ~0.1-0.3 s of matmuls on a CPU core: longer than dispatching it
    for _ in range(12):
        x = jnp.tanh(x @ x)
    return x


def test_the_window_keeps_at_most_depth_steps_queued():
    x = jnp.full((1024, 1024), 1e-3)
    slow_step(x).block_until_ready()  # compiled
    # Unbounded, the host dispatches every step before the device has run the last: a time limit checked on
    # the host would pass them all.
    outs = [slow_step(x) for _ in range(4)]
    assert not outs[-1].is_ready()
    jax.block_until_ready(outs)
    for depth in (1, 2):
        window, outs = DispatchWindow(depth), []
        for _ in range(5):
            outs.append(slow_step(x))
            window.push(outs[-1])
            assert all(o.is_ready() for o in outs[:-depth])  # only the last `depth` may still be queued
        jax.block_until_ready(outs)
    with pytest.raises(ValueError, match="depth must be >= 1"):
        DispatchWindow(0)
