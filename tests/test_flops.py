"""The model-FLOP count (jaxsora.flops): a hand count, the count of the traced model's matmuls, and Wan's."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsora import flops
from jaxsora.models.dit import DiT, DiTConfig


def small_cfg(**kw) -> DiTConfig:
    base = dict(
        patch_dim=6,
        width=8,
        depth=2,
        num_heads=2,
        head_dim=4,
        mlp_dim=16,
        mlp="gelu",
        text_dim=10,
        freq_dim=4,
    )
    base.update(kw)
    return DiTConfig(**base)


def test_hand_count():
    # d = 8, inner = heads * head_dim = 8, mlp 16 (gelu), patch_dim 6, text_dim 10; a clip: 3 tokens, 2 text.
    # Per video token and block, multiply-adds: qkv 8*24 + out 8*8 + cross q 8*8 + cross out 8*8
    #   + mlp 8*16 + 16*8 = 640 -> 1280 FLOPs; 3 tokens: 3840.
    # Per text token and block: cross k, v 8*16 = 128 -> 256 FLOPs; 2 tokens: 512.
    # Attention per block: (QK^T + PV) 2 * 2 * 8 * (3*3 self + 3*2 cross) = 480.
    # Two blocks: 2 * (3840 + 512 + 480) = 9664.
    # Patch embedding + head: 2 * 3 * (6*8 + 8*6) = 576. Text projection: 2 * 2 * (10*8 + 8*8) = 576.
    cfg = small_cfg()
    assert flops.dit_forward_flops(cfg, [3], [2]) == 9664 + 576 + 576
    assert flops.dit_train_flops(cfg, [3], [2]) == 3 * (9664 + 576 + 576)
    # Clips add up: two clips in one pack = the two counted alone.
    assert flops.dit_forward_flops(cfg, [3, 5], [2, 7]) == (
        flops.dit_forward_flops(cfg, [3], [2]) + flops.dit_forward_flops(cfg, [5], [7])
    )


def _dot_flops(jaxpr, scale: int = 1) -> int:
    """2 x multiply-adds of every dot_general in a jaxpr, scan bodies counted ``length`` times."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            lhs, rhs = (v.aval.shape for v in eqn.invars)
            (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
            contract = math.prod(lhs[i] for i in lc)
            batch = math.prod(lhs[i] for i in lb)
            lfree = math.prod(s for i, s in enumerate(lhs) if i not in lc and i not in lb)
            rfree = math.prod(s for i, s in enumerate(rhs) if i not in rc and i not in rb)
            total += scale * 2 * batch * contract * lfree * rfree
        inner = scale * (eqn.params["length"] if eqn.primitive.name == "scan" else 1)
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    total += _dot_flops(sub.jaxpr, inner)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    total += _dot_flops(sub, inner)
    return total


@pytest.mark.parametrize("scan", [True, False])
@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
def test_count_matches_traced_matmuls(scan, mlp):
    """Every matmul of the traced DiT (XLA attention: dense QK^T and PV) is in the count, except the
    timestep MLP, which the count leaves out on purpose (per row, small)."""
    cfg = small_cfg(
        depth=3, head_dim=8, scan=scan, mlp=mlp, attention="xla", remat="full" if scan else "none"
    )
    b, s, lt = 2, 12, 5
    tokens = jnp.ones((b, s, cfg.patch_dim))
    t = jnp.full((b,), 0.5)
    positions = jnp.zeros((b, s, 3), jnp.int32)
    text = jnp.ones((b, lt, cfg.text_dim))
    params = jax.eval_shape(DiT(cfg).init, jax.random.key(0), tokens, t, positions, text)
    jaxpr = jax.make_jaxpr(DiT(cfg).apply)(params, tokens, t, positions, text)
    d = cfg.width
    time_mlp = 2 * b * (cfg.freq_dim * d + d * d + d * 6 * d + d * 2 * d)  # time_in/hidden, modulations
    assert _dot_flops(jaxpr.jaxpr) == flops.dit_forward_flops(cfg, [s] * b, [lt] * b) + time_mlp


def test_wan_count_equals_ours_at_the_wan_shape():
    cfg = DiTConfig(
        patch_dim=64, width=1536, depth=30, num_heads=12, head_dim=128, mlp_dim=8960, text_dim=4096
    )
    for batch, shape in [(1, (21, 60, 104)), (1, (5, 32, 32)), (8, (5, 32, 32))]:
        n = int(np.prod(shape)) // 4
        ours = flops.dit_forward_flops(cfg, [n] * batch, [512] * batch)
        assert flops.wan_forward_flops(batch, shape, 512) == pytest.approx(ours, rel=1e-12)
        assert flops.wan_train_flops(batch, shape, 512) == pytest.approx(3 * ours, rel=1e-12)
    # The reference figure (shared/anchors, 2026-11-22): 0.6242 s at 453.3 TFLOP/s = 282.95 TFLOP.
    assert flops.wan_forward_flops(1, (21, 60, 104)) / 1e12 == pytest.approx(282.95, rel=2e-3)
    # A smaller Wan-like config: the same model as ours, hence the same count.
    small = small_cfg(patch_dim=4 * 3)
    wan = dict(
        patch_size=(1, 2, 2), in_channels=3, out_channels=3, num_layers=2, num_heads=2, head_dim=4, ffn_dim=16
    )
    assert flops.wan_forward_flops(3, (2, 4, 6), 7, text_dim=10, **wan) == flops.dit_forward_flops(
        dataclasses.replace(small), [12] * 3, [7] * 3
    )
    with pytest.raises(ValueError, match="not divisible"):
        flops.wan_forward_flops(1, (2, 3, 4))
