"""The attention entry point: segment masking, kernel choice, and Splash (Pallas interpret mode) == XLA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsora import parallel
from jaxsora.models import attention as attn


def inputs(b=2, s=256, t=256, h=2, d=128, seed=0):
    rng = np.random.default_rng(seed)
    q, k, v = (jnp.asarray(rng.normal(size=(b, n, h, d)), jnp.float32) for n in (s, t, t))
    seg = np.zeros((b, s), np.int32)
    seg[0, :100], seg[0, 100:200] = 1, 2  # two clips, then padding
    seg[1, :] = 1
    return q, k, v, jnp.asarray(seg)


def reference(q, k, v, q_seg, kv_seg):
    q, k, v, q_seg, kv_seg = (np.asarray(x, np.float64) for x in (q, k, v, q_seg, kv_seg))
    logits = np.einsum("bshd,bthd->bhst", q, k) / np.sqrt(q.shape[-1])
    mask = (q_seg[:, None, :, None] == kv_seg[:, None, None, :]) & (q_seg[:, None, :, None] > 0)
    logits = np.where(mask, logits, -np.inf)
    w = np.exp(logits - np.max(np.where(mask, logits, -1e300), -1, keepdims=True))
    w = np.where(mask, w, 0)
    w = w / np.maximum(w.sum(-1, keepdims=True), 1e-300)
    return np.einsum("bhst,bthd->bshd", w, v)


def test_xla_matches_the_reference_and_zeroes_padding():
    q, k, v, seg = inputs()
    out = attn.attention(q, k, v, q_segment_ids=seg, kv_segment_ids=seg, implementation="xla")
    np.testing.assert_allclose(out, reference(q, k, v, seg, seg), atol=1e-5)
    assert np.all(np.asarray(out)[0, 200:] == 0)
    full = attn.attention(q, k, v, implementation="xla")  # no segments: everything attends everything
    np.testing.assert_allclose(full, reference(q, k, v, jnp.ones_like(seg), jnp.ones_like(seg)), atol=1e-5)


def test_cross_attention_segments_pick_each_clips_own_text():
    q, _, _, seg = inputs()
    rng = np.random.default_rng(1)
    text_seg = jnp.asarray(np.repeat([[1, 1, 1, 0, 2, 2, 0, 0]], 2, axis=0))  # two caption rows of 4
    k, v = (jnp.asarray(rng.normal(size=(2, 8, 2, 128)), jnp.float32) for _ in range(2))
    out = attn.attention(q, k, v, q_segment_ids=seg, kv_segment_ids=text_seg, implementation="xla")
    np.testing.assert_allclose(out, reference(q, k, v, seg, text_seg), atol=1e-5)


def test_packed_lengths_are_cudnn_segment_lengths_and_offsets():
    seg = jnp.asarray([[1, 1, 1, 2, 2, 0, 0], [1, 1, 1, 1, 1, 1, 1]], jnp.int32)
    lengths, offsets = attn.packed_lengths(seg, 3)
    np.testing.assert_array_equal(lengths, [[3, 2, -1], [7, -1, -1]])
    np.testing.assert_array_equal(offsets, [[0, 3, -1, -1], [0, -1, -1, -1]])


def test_kernel_choice():
    assert attn.choose_implementation("auto", jnp.bfloat16, 64) == "xla"  # the tests run on CPU
    assert attn.choose_implementation("cudnn", jnp.float32, 64) == "cudnn"
    with pytest.raises(ValueError, match="implementation must be one of"):
        attn.choose_implementation("flash", jnp.bfloat16, 64)
    q, k, v, seg = inputs(s=8, t=8)
    with pytest.raises(ValueError, match="both"):
        attn.attention(q, k, v, q_segment_ids=seg[:, :8])


def test_splash_kernel_matches_xla_in_interpret_mode():
    q, k, v, seg = inputs(s=256, t=256)
    expected = attn.attention(q, k, v, q_segment_ids=seg, kv_segment_ids=seg, implementation="xla")
    out = attn._splash(q, k, v, seg, seg, interpret=True)
    with pytest.raises(ValueError, match="needs max_segments"):
        attn.attention(q, k, v, q_segment_ids=seg, kv_segment_ids=seg, implementation="splash")
    keep = np.asarray(seg)[:, :, None, None] > 0
    np.testing.assert_allclose(np.where(keep, out, 0), expected, atol=2e-5)


def test_splash_under_a_mesh_maps_over_batch_and_heads():
    mesh = parallel.make_mesh({"data": 2, "fsdp": 1, "tensor": 2, "sequence": 2})
    q, k, v, seg = inputs(b=2, s=256, t=256, h=2)
    expected = attn.attention(q, k, v, q_segment_ids=seg, kv_segment_ids=seg, implementation="xla")
    with parallel.mesh_context(mesh):
        out = jax.jit(lambda *a: attn._splash(*a, interpret=True))(q, k, v, seg, seg)
    keep = np.asarray(seg)[:, :, None, None] > 0
    np.testing.assert_allclose(np.where(keep, out, 0), expected, atol=2e-5)
