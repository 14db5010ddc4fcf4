"""Rectified flow: time shift, given-frame conditioning, loss masking, and the Euler sampler."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsora import diffusion, patching

CFG = diffusion.FlowConfig()


def packed(grids, seq_len=96):
    seg = np.zeros((1, seq_len), np.int32)
    pos = np.zeros((1, seq_len, 3), np.int32)
    start = 0
    for j, g in enumerate(grids):
        n = int(np.prod(g))
        seg[0, start : start + n] = j + 1
        pos[0, start : start + n] = patching.grid_positions(g)
        start += n
    grid = np.zeros((1, 4, 3), np.int32)
    grid[0, : len(grids)] = grids
    return jnp.asarray(seg), jnp.asarray(pos), jnp.asarray(grid)


def test_shift_grows_with_tokens():
    s = np.asarray(diffusion.shift_for_tokens(jnp.asarray([16, 256, 1024, 4096, 10**6]), CFG))
    np.testing.assert_allclose(s[[0, 1, 3, 4]], [1.0, 1.0, 3.0, 3.0], rtol=1e-6)
    assert 1.0 < s[2] < 3.0
    t = jnp.linspace(0, 1, 11)
    shifted = diffusion.shift_time(t, 3.0)
    assert float(shifted[0]) == 0 and float(shifted[-1]) == 1 and bool(jnp.all(shifted >= t))


def test_given_frames_follow_the_drawn_mode():
    seg, pos, grid = packed([(4, 2, 2), (1, 3, 3), (3, 2, 2)])
    x0 = jax.random.normal(jax.random.key(0), (1, 96, 8))
    for rates, expect in (
        ((1, 0, 0, 0, 0), lambda f, T: f == 0),
        ((0, 1, 0, 0, 0), lambda f, T: f == T - 1),
    ):
        cfg = diffusion.FlowConfig(cond_rates=rates)
        inp = diffusion.training_inputs(jax.random.key(1), x0, seg, pos, grid, cfg)
        s, f = np.asarray(seg[0]), np.asarray(pos[0, :, 0])
        T = np.asarray(grid[0, :, 0])[np.maximum(s - 1, 0)]
        given = (s > 0) & (T > 1) & expect(f, T)  # the image (segment 2) is never conditioned
        np.testing.assert_array_equal(
            np.asarray(inp.t[0]) == 0, given | (s == 0) & (np.asarray(inp.t[0]) == 0)
        )
        np.testing.assert_array_equal(np.asarray(inp.loss_mask[0]), (s > 0) & ~given)
        np.testing.assert_allclose(np.asarray(inp.x_t[0])[given], np.asarray(x0[0])[given])
        assert given.sum() > 0
        # the same times as the DiT's table form: entry 0 for given frames, entry k for segment k
        index = np.asarray(inp.t_index[0])
        np.testing.assert_array_equal(index, np.where(given, 0, s))
        assert float(inp.t_table[0, 0]) == 0.0
        np.testing.assert_array_equal(np.asarray(inp.t_table[0])[index][s > 0], np.asarray(inp.t[0])[s > 0])


def test_first_k_leaves_at_least_one_frame_to_generate_and_times_are_per_clip():
    seg, pos, grid = packed([(4, 2, 2), (3, 2, 2), (5, 1, 2)])
    cfg = diffusion.FlowConfig(cond_rates=(0, 0, 0.5, 0.5, 0))
    s = np.asarray(seg[0])
    for seed in range(20):
        inp = diffusion.training_inputs(jax.random.key(seed), jnp.zeros((1, 96, 8)), seg, pos, grid, cfg)
        mask = np.asarray(inp.loss_mask[0])
        t = np.asarray(inp.t[0])
        for j in (1, 2, 3):
            assert mask[s == j].any()  # something of every clip is generated
            assert len(np.unique(t[(s == j) & mask])) == 1  # one time per clip


def test_euler_with_the_exact_velocity_lands_on_the_data_and_keeps_given_tokens():
    x0 = jax.random.normal(jax.random.key(0), (2, 10, 4))
    noise = jax.random.normal(jax.random.key(1), (2, 10, 4))
    given = jnp.zeros((2, 10), bool).at[:, :3].set(True)

    def velocity(x, t):  # the straight path's velocity towards x0 (exact for rectified flow)
        v = (x - x0) / jnp.maximum(t, 1e-6)[..., None]
        return v, jnp.zeros_like(v)

    out = diffusion.euler_sample(
        velocity, noise, steps=7, shift=2.0, guidance=1.0, given=given, given_values=x0
    )
    np.testing.assert_allclose(out, x0, atol=1e-4)
    loss = diffusion.masked_mse(out, x0, ~given)
    assert float(loss) < 1e-8


def test_uniform_time_rate_mixes_uniform_unshifted_times_into_the_shifted_ones():
    # 4096 packs of one 320-token clip (5 x 8 x 8) at a shift of 3: the mixture's share below t = 0.2 is
    # rate * 0.2 + (1 - rate) * P(shifted logit-normal < 0.2), the latter about 1%.
    b, n = 4096, 320
    seg = jnp.ones((b, n), jnp.int32)
    pos = jnp.broadcast_to(jnp.asarray(patching.grid_positions((5, 8, 8))), (b, n, 3))
    grid = jnp.broadcast_to(jnp.asarray([[5, 8, 8]], jnp.int32), (b, 1, 3))
    x0 = jnp.zeros((b, n, 1))

    def times(rate):
        cfg = diffusion.FlowConfig(shift_base=3.0, shift_max=3.0, uniform_time_rate=rate, cond_rates=(0,) * 5)
        return np.asarray(diffusion.training_inputs(jax.random.key(3), x0, seg, pos, grid, cfg).t_table[:, 1])

    shifted, half, uniform = times(0.0), times(0.5), times(1.0)
    below = [float(np.mean(t < 0.2)) for t in (shifted, half, uniform)]
    assert below[0] < 0.02
    assert abs(below[2] - 0.2) < 0.02 and abs(np.mean(uniform) - 0.5) < 0.02
    assert abs(below[1] - (0.5 * 0.2 + 0.5 * below[0])) < 0.02
    # the clips not drawn uniform keep exactly the shifted draw (the mixture only replaces times)
    kept = np.isclose(half, shifted)
    assert 0.45 < kept.mean() < 0.55
    with pytest.raises(ValueError, match="uniform_time_rate"):
        diffusion.FlowConfig(uniform_time_rate=1.5)
