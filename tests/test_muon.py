"""Muon (train.optim.kind=muon): which parameters it takes and how, the orthogonalisation, the update's size.
The DiT trained with it, on one device and on the 8-device mesh: tests/test_dit_train.py."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxsora import parallel
from jaxsora.config import load_config
from jaxsora.train import dit as dit_train
from jaxsora.train import optim

MUON = ["train.optim.kind=muon"]


@pytest.mark.parametrize("shape", [(40, 96), (96, 40), (3, 64, 64), (2, 5, 24, 8)])
def test_orthogonalize_keeps_the_singular_vectors_and_takes_the_values_near_one(shape):
    g = jax.random.normal(jax.random.key(0), shape) * jnp.linspace(0.2, 3.0, shape[-1])
    x = optim.orthogonalize(g)
    assert x.shape == g.shape and x.dtype == g.dtype
    g64, x64 = np.asarray(g, np.float64), np.asarray(x, np.float64)
    u, s, vt = np.linalg.svd(g64, full_matrices=False)
    # x in g's singular bases: diagonal (the same vectors), each value moved towards 1; five iterations lift
    # a value from at least 1% of g's Frobenius norm (a square Gaussian matrix has some near 0)
    inner = np.swapaxes(u, -1, -2) @ x64 @ np.swapaxes(vt, -1, -2)
    diag = np.diagonal(inner, axis1=-2, axis2=-1)
    off = inner - diag[..., None] * np.eye(diag.shape[-1])
    assert np.sqrt(np.mean(off**2)) < 0.01 and np.abs(off).max() < 0.1  # bfloat16 rounding
    lifted = s / np.linalg.norm(g64, axis=(-2, -1), keepdims=True)[..., 0] >= 0.01
    assert lifted.mean() > 0.8
    assert np.all(diag[lifted] > 0.6) and np.all(diag < 1.25), (diag.min(), diag.max())


def test_matrix_layouts_follow_the_logical_axis_names():
    layout = optim.matrix_layout
    assert layout(("embed", "mlp")) == optim.MatrixLayout((), (0,), (1,))
    assert layout(("layers", "mlp", "embed")) == optim.MatrixLayout((0,), (1,), (2,))
    assert layout(("embed", "qkv", "heads", "kv")) == optim.MatrixLayout((1,), (0,), (2, 3))
    assert layout(("heads", "kv", "embed")) == optim.MatrixLayout((), (0, 1), (2,))
    assert layout(("embed", "heads", "kv")) == optim.MatrixLayout((), (0,), (1, 2))
    for names in [("embed",), ("patch", "embed"), ("embed_in", "modulation", "embed"), ("vocab", "embed")]:
        assert layout(names) is None  # embeddings, patch embedding, head, modulation: AdamW
    assert layout(("layers", "mlp")) is None  # a stacked bias


def test_an_update_has_the_configured_rms_for_any_layout():
    g = jax.random.normal(jax.random.key(1), (2, 48, 3, 4, 16))  # (layers, embed, qkv, heads, kv)
    lay = optim.matrix_layout(("layers", "embed", "qkv", "heads", "kv"))
    u = optim.orthogonal_update(g, lay, rms=0.2, steps=5)
    assert u.shape == g.shape
    for i in range(2):
        for j in range(3):  # each (layer, q/k/v) matrix on its own: 48 x 64
            m = np.asarray(u[i, :, j]).reshape(48, 64)
            assert np.sqrt(np.mean(m**2)) == pytest.approx(0.2, rel=0.25)
            s = np.linalg.svd(m / (0.2 * np.sqrt(64)), compute_uv=False)
            assert 0.6 < s.min() and s.max() < 1.25


@pytest.mark.parametrize(
    "mesh_shape", [{"fsdp": 8}, {"data": 8}, {"data": 2, "fsdp": 4}, {"data": 2, "fsdp": 2, "tensor": 2}]
)
def test_on_a_mesh_each_device_orthogonalises_whole_matrices(mesh_shape):
    """The stacks are split by whole matrices over fsdp x data (logical axis ``matrices``): from the parameters'
    fsdp shards by all-to-all, and data-parallel replicas each take a slice and afterwards all-gather the
    orthogonalised stacks. Each device runs ~1/8 of the Newton-Schulz work, and the updates equal one device's."""
    names = {
        "mlp_in": ("layers", "embed", "mlp"),
        "mlp_out": ("layers", "mlp", "embed"),  # tall: turned wide, stacked with mlp_in
        "qkv": ("embed", "qkv", "heads", "kv"),
        "out": ("heads", "kv", "embed"),
    }
    shapes = {"mlp_in": (3, 64, 256), "mlp_out": (3, 256, 64), "qkv": (64, 3, 4, 16), "out": (4, 16, 64)}
    keys = jax.random.split(jax.random.key(2), len(names))
    grads = {k: jax.random.normal(r, shapes[k]) for k, r in zip(names, keys, strict=True)}
    layouts = {k: optim.matrix_layout(n) for k, n in names.items()}

    def update(g):
        return optim.orthogonal_updates(g, layouts, rms=0.2, steps=5)

    one_device = jax.jit(update).lower(grads).compile()
    expected = one_device(grads)
    mesh = parallel.make_mesh({"data": 1} | mesh_shape)
    shardings = {k: parallel.logical_sharding(mesh, n) for k, n in names.items()}
    with parallel.mesh_context(mesh):
        compiled = jax.jit(update, in_shardings=(shardings,), out_shardings=shardings).lower(grads).compile()
    hlo = compiled.as_text()
    gathered = [line for line in hlo.splitlines() if " all-gather(" in line or " all-gather-start(" in line]
    if mesh_shape == {"fsdp": 8}:  # no device gathers a parameter or a stack
        assert "all-to-all" in hlo and not gathered
    if mesh_shape == {"data": 8}:  # only the orthogonalised stacks, whole: 8 of 64 x 256 and 8 of 64 x 64
        shapes_gathered = sorted(re.search(r"= \w+\[([\d,]+)\]", line).group(1) for line in gathered)
        assert shapes_gathered == ["8,64,256", "8,64,64"]
    # 6 matrices of 64 x 256 (3 mlp_in, 3 mlp_out turned wide) and 4 of 64 x 64 (3 qkv, out), each stack padded
    # to 8: one of each a device against all 10
    assert compiled.cost_analysis()["flops"] < 0.25 * one_device.cost_analysis()["flops"]
    got = compiled(jax.device_put(grads, shardings))
    for k in names:
        assert got[k].sharding.is_equivalent_to(shardings[k], len(shapes[k]))
        if "tensor" in mesh_shape:  # matrices split over tensor: partial products summed in another order
            error = np.linalg.norm(np.asarray(got[k]) - expected[k]) / np.linalg.norm(expected[k])
            assert error < 0.02, (k, error)
        else:  # whole matrices on each device: the same arithmetic
            np.testing.assert_allclose(np.asarray(got[k]), np.asarray(expected[k]), atol=1e-6, err_msg=k)


def test_the_dit_optimizer_keeps_adam_moments_only_for_what_muon_does_not_take():
    parts = dit_train.DiTParts(load_config("configs/tiny.py", MUON), {"latent_channels": 16})
    layouts = optim.muon_layouts(jax.eval_shape(parts.init_params, jax.random.key(0)))
    muon_keys = {k for k, v in layouts.items() if v is not None}
    assert "['dit']['blocks']['mlp']['wi']['kernel']" in muon_keys
    assert "['dit']['blocks']['self_attention']['qkv']['kernel']" in muon_keys
    assert (
        "['dit']['head']['kernel']" not in muon_keys and "['dit']['patch_embed']['kernel']" not in muon_keys
    )
    assert "['text']['embedding']" not in muon_keys
    state = nn.meta.unbox(jax.eval_shape(parts.init, jax.random.key(0)))
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    n_muon = sum(x.size for k, x in _flat(state.params).items() if k in muon_keys)
    n_state = sum(x.size for x in jax.tree.leaves(state.opt_state))
    # momentum for Muon's matrices, two moments (plus counters) for the rest
    assert n_state == pytest.approx(n_muon + 2 * (n_params - n_muon), abs=8)


def _flat(tree) -> dict:
    return {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def test_muon_needs_the_logical_names_and_a_known_kind():
    opt = ml_collections.ConfigDict(dict(b1=0.9, b2=0.99, weight_decay=0.0, grad_clip=1.0, kind="muon"))
    with pytest.raises(ValueError, match="logical axis names"):
        optim.make_unscaled_optimizer(opt)
    opt.kind = "lion"
    with pytest.raises(ValueError, match="adamw"):
        optim.make_unscaled_optimizer(opt)
