"""experiments/bench/roofline.py: the fused-traffic lower bound on small programs whose best kernels are known."""

import pathlib
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments" / "bench"))
import roofline  # noqa: E402

N = 256 * 512  # elements of x
X = jax.ShapeDtypeStruct((256, 512), jnp.float32)
W = jax.ShapeDtypeStruct((512, 512), jnp.float32)


def traffic(fn, *args):
    prog, outputs = roofline.Program.from_jaxpr(jax.make_jaxpr(fn)(*args))
    return roofline.bound(prog, outputs)


def test_elementwise_chain_before_a_matmul_is_one_kernel():
    r = traffic(lambda x, w: jnp.tanh(x * 2.0 + 1.0) @ w, X, W)
    assert r["kernels"] == 1
    assert r["bytes"] == 2 * 4 * N  # x read once, tanh(...) written once for the matmul
    assert r["matmul_flops"] == 2 * 256 * 512 * 512


def test_named_residuals_and_slices_cost_no_extra_traffic():
    from jax.ad_checkpoint import checkpoint_name

    def named(x, w):
        return checkpoint_name(x * 2.0, "kept") @ w

    assert traffic(named, X, W)["bytes"] == 2 * 4 * N  # the name is the same tensor, written once

    def halves(x, w):
        return (x[:, :256] * x[:, 256:]) @ w

    half_w = jax.ShapeDtypeStruct((256, 512), jnp.float32)
    assert traffic(halves, X, half_w)["bytes"] == 4 * N + 4 * N // 2  # x read once; the product written


def test_a_row_norm_fuses_with_its_consumers_and_a_column_sum_ends_its_kernel():
    def norm_then_matmul(x, w):
        y = x - jnp.mean(x, axis=-1, keepdims=True)
        return y @ w

    assert traffic(norm_then_matmul, X, W)["bytes"] == 2 * 4 * N  # one kernel: read x, write y

    def column_sum_then_scale(x):
        return x * jnp.sum(x, axis=0)  # every row needs the sum over all rows: two kernels

    r = traffic(column_sum_then_scale, X)
    assert r["kernels"] == 2
    assert (
        r["bytes"] == 3 * 4 * N + 2 * 4 * 512
    )  # read x; read it again, write the product; the sums written, read


def test_a_consumer_after_a_matmul_recomputes_an_elementwise_input_instead_of_reading_it():
    def f(x, w):
        a = x * 3.0
        return (a @ w) + jnp.exp(a)

    r = traffic(f, X, W)
    # Kernel 1 reads x and writes a (for the matmul); kernel 2 reads the product and x (recomputing a and
    # exp(a) rather than reading them) and writes the result.
    assert r["bytes"] == 5 * 4 * N
    assert r["kernels"] == 2


def test_attention_stand_in_has_cudnns_inputs_and_outputs():
    kernel = roofline.opaque_attention()
    q = jax.ShapeDtypeStruct((2, 64, 4, 32), jnp.bfloat16)

    def loss(q, k, v):
        return jnp.sum(kernel(q, k, v).astype(jnp.float32))

    prog, _ = roofline.Program.from_jaxpr(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1, 2)))(q, q, q))
    calls = [op for op in prog.ops if op.prim == "pure_callback"]
    forward = 4.0 * 2 * 4 * 64 * 64 * 32
    assert [op.flops for op in calls] == [forward, 2 * forward]


def test_profile_and_best_case_meet_per_module():
    assert roofline.module_key("bwd DiT/block_*/mlp/wo/checkpoint/mul", has_primitive=True) == (
        "bwd DiT/block_*/mlp/wo"
    )
    assert roofline.module_key("bwd DiT/block_*/mlp/wo/rematted_computation", has_primitive=False) == (
        "bwd DiT/block_*/mlp/wo"
    )
    assert roofline.module_key("fwd add", has_primitive=True) == roofline.OUTSIDE
    assert (
        roofline.module_key("(outside the model: loss, optimizer)", has_primitive=False) == roofline.OUTSIDE
    )
    profile = [
        {
            "scope": "bwd DiT/block_*/mlp/wo/checkpoint/mul",
            "ms": 5.0,
            "by_kind_ms": {"elementwise fusion": 5.0},
        },
        {"scope": "bwd DiT/block_*/mlp/wo/dot_general", "ms": 9.0, "by_kind_ms": {"matmul": 9.0}},
        {"scope": "fwd add", "ms": 2.0, "by_kind_ms": {"elementwise fusion": 2.0}},
    ]
    best = [
        ("bwd DiT/block_*/mlp/wo/rematted_computation", 4.3e9),
        ("(outside the model: loss, optimizer)", 8.6e9),
    ]
    rows = roofline.compare(profile, best, bandwidth_tbs=4.3)
    assert rows == [("bwd DiT/block_*/mlp/wo", 5.0, 1.0), (roofline.OUTSIDE, 2.0, 2.0)]
