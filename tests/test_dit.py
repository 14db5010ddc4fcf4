"""The diffusion transformer: packed clips are isolated, RoPE is position-relative, variants agree."""

import dataclasses

import jax
import jax.numpy as jnp
import model_params
import numpy as np
import pytest

from jaxsora import patching
from jaxsora.models.dit import DiT, DiTConfig
from jaxsora.models.rope import Rotary, axis_pairs

CFG = DiTConfig(
    patch_dim=8,
    width=32,
    depth=2,
    num_heads=2,
    head_dim=16,
    mlp_dim=64,
    text_dim=24,
    dtype="float32",
    attention="xla",
    max_segments=4,
)


def random_params(cfg, seed=0):
    """Initialised params with every leaf perturbed: adaLN-Zero starts at the identity (output 0), which
    would make any equality test trivially true."""
    model = DiT(cfg)
    params = model_params.init(
        model,
        jax.random.key(seed),
        jnp.zeros((1, 4, cfg.patch_dim)),
        jnp.zeros((1,)),
        jnp.zeros((1, 4, 3), jnp.int32),
        jnp.zeros((1, 2, cfg.text_dim)),
    )
    return Jitted(model), model_params.perturbed(params, 0.2, seed=seed + 1)


class Jitted:
    """A model whose ``apply`` is jit-compiled (once per shape: the packs below share one)."""

    def __init__(self, model):
        self.apply = jax.jit(model.apply)


def clip(seed, grid, text_len=5):
    rng = np.random.default_rng(seed)
    n = int(np.prod(grid))
    return {
        "tokens": rng.normal(size=(n, CFG.patch_dim)).astype(np.float32),
        "positions": patching.grid_positions(grid),
        "t": np.full((n,), rng.uniform()).astype(np.float32),
        "text": rng.normal(size=(text_len, CFG.text_dim)).astype(np.float32),
    }


def pack(clips, seq_len=64, text_rows=4, text_len=5):
    """Clips laid one after another in one sequence (padding after), text one row per clip."""
    tokens = np.zeros((1, seq_len, CFG.patch_dim), np.float32)
    positions = np.zeros((1, seq_len, 3), np.int32)
    t = np.zeros((1, seq_len), np.float32)
    seg = np.zeros((1, seq_len), np.int32)
    text = np.zeros((1, text_rows * text_len, CFG.text_dim), np.float32)
    text_seg = np.zeros((1, text_rows * text_len), np.int32)
    start, spans = 0, []
    for j, c in enumerate(clips):
        n = len(c["tokens"])
        sl = slice(start, start + n)
        tokens[0, sl], positions[0, sl], t[0, sl], seg[0, sl] = c["tokens"], c["positions"], c["t"], j + 1
        text[0, j * text_len : (j + 1) * text_len] = c["text"]
        text_seg[0, j * text_len : (j + 1) * text_len] = j + 1
        spans.append(sl)
        start += n
    return (tokens, t, positions, text), {"segment_ids": seg, "text_segment_ids": text_seg}, spans


def test_a_clip_gives_the_same_output_alone_or_packed_anywhere():
    model, params = random_params(CFG)
    a, b, c = clip(1, (2, 3, 4)), clip(2, (1, 4, 4)), clip(3, (2, 2, 3))
    args, kw, spans = pack([a])
    alone = model.apply({"params": params}, *args, **kw)[0, spans[0]]
    for order, index in (([b, a], 1), ([b, c, a], 2), ([a, c], 0)):
        args, kw, spans = pack(order)
        out = model.apply({"params": params}, *args, **kw)[0, spans[index]]
        np.testing.assert_allclose(out, alone, atol=1e-5, rtol=1e-5)
    # ...and the others do influence a clip when segment ids are ignored (the test can fail)
    args, kw, spans = pack([b, a])
    mixed = model.apply(
        {"params": params},
        *args,
        segment_ids=np.where(kw["segment_ids"] > 0, 1, 0),
        text_segment_ids=np.where(kw["text_segment_ids"] > 0, 1, 0),
    )[0, spans[1]]
    assert np.abs(mixed - alone).max() > 1e-3


def test_text_of_other_clips_is_not_seen():
    model, params = random_params(CFG)
    a, b = clip(1, (2, 3, 4)), clip(2, (1, 4, 4))
    args, kw, spans = pack([a, b])
    out1 = model.apply({"params": params}, *args, **kw)[0, spans[0]]
    b2 = dict(b, text=b["text"] * -3.0)
    args, kw, spans = pack([a, b2])
    out2 = model.apply({"params": params}, *args, **kw)[0, spans[0]]
    np.testing.assert_allclose(out1, out2, atol=1e-6)
    a2 = dict(a, text=a["text"] * -3.0)
    args, kw, spans = pack([a2, b])
    assert np.abs(model.apply({"params": params}, *args, **kw)[0, spans[0]] - out1).max() > 1e-3


def test_rope_logits_depend_only_on_position_differences():
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.normal(size=(1, 1, 1, 24)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(1, 1, 1, 24)), jnp.float32)

    def logit(pq, pk):
        rq = Rotary.from_positions(jnp.asarray([[pq]]), 24)
        rk = Rotary.from_positions(jnp.asarray([[pk]]), 24)
        return float(jnp.sum(rq.apply(q) * rk.apply(k)))

    base = logit((1, 2, 3), (4, 0, 7))
    assert logit((11, 12, 13), (14, 10, 17)) == pytest.approx(base, abs=1e-4)
    assert abs(logit((1, 2, 3), (4, 1, 7)) - base) > 1e-3  # each axis matters
    assert abs(logit((1, 2, 3), (5, 0, 7)) - base) > 1e-3
    assert sum(axis_pairs(24, 3)) == 12 and axis_pairs(128, 3) == (22, 21, 21)


def test_any_grid_size_and_per_row_timesteps():
    model, params = random_params(CFG)
    for grid in ((1, 1, 1), (1, 9, 16), (7, 3, 5)):
        n = int(np.prod(grid))
        pos = patching.grid_positions(grid)[None]
        out = model.apply(
            {"params": params},
            jnp.ones((1, n, CFG.patch_dim)),
            jnp.array([0.5]),
            pos,
            jnp.ones((1, 3, CFG.text_dim)),
        )
        assert out.shape == (1, n, CFG.patch_dim) and np.isfinite(out).all()
    with pytest.raises(ValueError, match="tokens must be"):
        model.apply(
            {"params": params}, jnp.ones((1, 4, 3)), jnp.array([0.5]), pos[:, :4], jnp.ones((1, 3, 24))
        )


@pytest.mark.parametrize(
    "variant",
    [
        dict(scan=False),
        dict(remat="full"),
        dict(remat="dots"),
        dict(remat="save_attention"),
        dict(mlp="swiglu"),
    ],
)
def test_variants_run_and_scan_equals_loop(variant):
    cfg = DiTConfig(**{**CFG.__dict__, **variant})
    model, params = random_params(cfg)
    a, b = clip(1, (2, 3, 4)), clip(2, (1, 4, 4))
    args, kw, _ = pack([a, b])

    def loss(p):
        return jnp.sum(model.apply({"params": p}, *args, **kw) ** 2)

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    assert np.isfinite(value) and all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    assert sum(x.size for x in jax.tree.leaves(params)) == cfg.param_count()
    base_model = Jitted(DiT(CFG))  # scanned, no remat
    base_params = dict(params)
    if "scan" in variant:  # stack the per-layer params the way nn.scan holds them
        layers = [base_params.pop(f"block_{i}") for i in range(cfg.depth)]
        base_params["blocks"] = jax.tree.map(lambda *xs: jnp.stack(xs), *layers)
    if "mlp" not in variant:
        np.testing.assert_allclose(
            model.apply({"params": params}, *args, **kw),
            base_model.apply({"params": base_params}, *args, **kw),
            rtol=1e-5,
            atol=1e-5,
        )
    if "remat" in variant:  # recomputation must not change the gradients
        base_grads = jax.jit(jax.grad(lambda p: jnp.sum(base_model.apply({"params": p}, *args, **kw) ** 2)))(
            params
        )
        for g, b in zip(jax.tree.leaves(grads), jax.tree.leaves(base_grads), strict=True):
            np.testing.assert_allclose(g, b, rtol=1e-4, atol=1e-5 * float(np.max(np.abs(b))))


def residual_bytes_per_token_per_block(cfg, seq=96):
    """What the backward pass of a jitted DiT keeps, per token and per block: the residuals of ``jax.vjp``
    (stacked over blocks by nn.scan) that have exactly one token axis."""
    model = DiT(cfg)
    tokens, t = jnp.ones((1, seq, cfg.patch_dim)), jnp.full((1, seq), 0.5)  # per-token timesteps
    pos = jnp.asarray(patching.grid_positions((2, 6, 8)))[None]
    text = jnp.ones((1, 7, cfg.text_dim))
    params = {"params": model_params.init(model, jax.random.key(0), tokens, t, pos, text)}
    _, vjp = jax.vjp(lambda p, x: model.apply(p, x, t, pos, text), params, tokens)
    stacked = [
        a for a in jax.tree.leaves(vjp) if a.ndim >= 3 and a.shape[0] == cfg.depth and a.shape.count(seq) == 1
    ]
    return sum(a.size * a.dtype.itemsize for a in stacked) / seq / cfg.depth


def test_backward_keeps_bf16_inputs_not_float32_intermediates():
    """Norms, GELU, modulation and gated adds keep only their inputs for the backward (layers.py): per token
    and block at most the three float32 residual-stream values, 16 bf16 width-sized tensors and the MLP's
    hidden pre-activation (bf16). Plain autodiff kept 3.2x that here (10,720 bytes; 265 KB at Wan 1.3B's
    width, which did not fit a B=8 training step on an 80 GB GPU)."""
    d, m = 64, 256
    cfg = DiTConfig(
        patch_dim=8, width=d, depth=3, num_heads=4, head_dim=16, mlp_dim=m, text_dim=24, attention="xla"
    )
    none = residual_bytes_per_token_per_block(cfg)
    assert none <= 3 * 4 * d + 16 * 2 * d + 2 * m, none
    bf16 = residual_bytes_per_token_per_block(dataclasses.replace(cfg, residual_dtype="bfloat16"))
    assert bf16 < none
    # save_attention keeps the block input and the attention kernels' residuals, recomputing the rest
    assert residual_bytes_per_token_per_block(dataclasses.replace(cfg, remat="save_attention")) < none / 2
    # full keeps only the block input (the scan carry)
    assert residual_bytes_per_token_per_block(dataclasses.replace(cfg, remat="full")) <= 4 * d


def test_backward_keeps_no_low_precision_copy_of_the_weights():
    """Each matmul casts its float32 kernel to bf16 inside ``jax.checkpoint`` (layers._matmul): the backward
    recomputes the cast from the float32 params it has anyway instead of keeping a stacked bf16 copy of every
    block's weights (2.8 GB at Wan 1.3B's size; 2.4 GiB less peak memory in a B=8 step on the H100)."""
    cfg = DiTConfig(patch_dim=8, width=64, depth=3, num_heads=4, head_dim=16, mlp_dim=256, text_dim=24)
    model = DiT(cfg)
    seq = 96
    tokens, t = jnp.ones((1, seq, cfg.patch_dim)), jnp.full((1,), 0.5)
    pos = jnp.asarray(patching.grid_positions((2, 6, 8)))[None]
    text = jnp.ones((1, 7, cfg.text_dim))
    params = {"params": model_params.init(model, jax.random.key(0), tokens, t, pos, text)}
    kernels = {
        a.shape
        for path, a in jax.tree_util.tree_leaves_with_path(params["params"]["blocks"])
        if "kernel" in jax.tree_util.keystr(path)
    }
    assert len(kernels) >= 6  # qkv, out, q, kv, wi, wo (some may share a shape)
    _, vjp = jax.vjp(lambda p: model.apply(p, tokens, t, pos, text), params)
    cast = [a.shape for a in jax.tree.leaves(vjp) if a.dtype == jnp.bfloat16 and a.shape in kernels]
    assert not cast, f"bf16 copies of weights kept for the backward: {cast}"


def test_bf16_residual_stream_stays_close_to_float32():
    cfg = dataclasses.replace(CFG, dtype="bfloat16")
    model, params = random_params(cfg)
    args, kw, _ = pack([clip(1, (2, 3, 4)), clip(2, (1, 4, 4))])
    ref = model.apply({"params": params}, *args, **kw)
    low = Jitted(DiT(dataclasses.replace(cfg, residual_dtype="bfloat16"))).apply(
        {"params": params}, *args, **kw
    )
    assert not np.array_equal(ref, low)  # the option does something
    np.testing.assert_allclose(low, ref, atol=0.05 * float(jnp.max(jnp.abs(ref))))


@pytest.mark.parametrize("scan", [True, False])
def test_times_as_a_table_give_the_per_token_result_and_gradients(scan):
    """``t [B, M]`` + ``t_index [B, S]`` (one time per clip, 0 for given frames) is the per-token ``t [B, S]``
    computed once per distinct time: the same velocity and the same parameter gradients."""
    cfg = dataclasses.replace(CFG, scan=scan)
    model, params = random_params(cfg, seed=4)
    (tokens, _, positions, text), kw, spans = pack(
        [clip(1, (2, 2, 3)), clip(2, (1, 3, 4)), clip(3, (3, 2, 2))]
    )
    table = np.array([[0.0, 0.81, 0.27, 0.55]], np.float32)  # entry 0: given frames (and padding)
    index = kw["segment_ids"].copy()
    index[0, spans[0].start : spans[0].start + 6] = 0  # the first clip's first latent frame is given
    t_tokens = np.take_along_axis(table, index, axis=1)
    module = DiT(cfg)

    def loss(p, **times):
        v = module.apply({"params": p}, tokens, positions=positions, text=text, **kw, **times)
        return jnp.sum(jnp.square(v) * (kw["segment_ids"] > 0)[..., None]), v

    (l_tok, v_tok), g_tok = jax.jit(jax.value_and_grad(lambda p: loss(p, t=t_tokens), has_aux=True))(params)
    (l_tab, v_tab), g_tab = jax.jit(
        jax.value_and_grad(lambda p: loss(p, t=table, t_index=index), has_aux=True)
    )(params)
    real = kw["segment_ids"][0] > 0
    np.testing.assert_allclose(v_tab[0, real], v_tok[0, real], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(l_tab, l_tok, rtol=1e-5)
    flat_tok, flat_tab = jax.tree.leaves(g_tok), jax.tree.leaves(g_tab)
    # float32 sums in another order: within 1e-5 of each leaf's scale
    for a, b in zip(flat_tok, flat_tab, strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * float(np.abs(a).max()))
    with pytest.raises(ValueError, match="t must be a table"):
        module.apply({"params": params}, tokens, t_tokens[0], positions, text, **kw, t_index=index)
