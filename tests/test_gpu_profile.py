"""experiments/bench/gpu_profile.py on the CPU: a profiled step's kernels summed per kind and per source scope."""

import pathlib
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "experiments" / "bench"))
import gpu_profile  # noqa: E402


class TwoBlocks(nn.Module):
    @nn.compact
    def __call__(self, x):
        for i in range(2):
            x = jax.nn.gelu(nn.Dense(64, name=f"blocks_{i}")(x))
        return jnp.sum(x * x)


def test_scope_of_folds_layers_and_tells_forward_from_backward():
    assert gpu_profile.scope_of("jit(step)/transpose(jvp(DiT))/blocks_7/mlp/fc_out/dot_general") == (
        "bwd DiT/blocks_*/mlp/fc_out/dot_general"
    )
    assert gpu_profile.scope_of("jit(step)/jvp(DiT)/blocks_12/checkpoint/mul") == (
        "fwd DiT/blocks_*/checkpoint/mul"
    )
    assert gpu_profile.scope_of(
        "jit(f)/transpose(jvp(M))/block_3/qkv/jvp(M)/block_3/qkv/checkpoint/dot_general"
    ) == ("bwd M/block_*/qkv/checkpoint/dot_general")
    names = gpu_profile.op_names(
        '  %fusion.3 = f32[8]{0} fusion(%p), kind=kLoop, calls=%c, metadata={op_name="jit(f)/jvp(M)/tanh" '
        'stack_frame_id=2}\n  ROOT %dot.1 = f32[2,2]{1,0} dot(%a, %b), metadata={op_name="jit(f)/M/dot"}'
    )
    assert names == {"fusion.3": "jit(f)/jvp(M)/tanh", "dot.1": "jit(f)/M/dot"}
    # A kernel inside a CUDA graph carries the command buffer's hlo_op: matched by its own name instead.
    names["command_buffer.1"] = "jit(f)/M/dot"
    event = {"name": "fusion_3", "args": {"hlo_op": "command_buffer.1"}}
    assert gpu_profile._hlo_op(event, names) == "fusion.3"
    assert gpu_profile._hlo_op({"name": "nvjet_sm90_tst", "args": {}}, names) is None


def test_profile_sums_kernels_per_scope(tmp_path):
    model = TwoBlocks()
    x = jnp.ones((256, 64))
    params = model.init(jax.random.key(0), x)
    step = jax.jit(jax.grad(lambda p, x: model.apply(p, x)))
    compiled = step.lower(params, x).compile()
    jax.block_until_ready(compiled(params, x))
    summary = gpu_profile.profile(
        lambda: jax.block_until_ready(compiled(params, x)),
        calls=2,
        log_dir=str(tmp_path),
        device_match="CPU",
        hlo_text=compiled.as_text(),
    )
    scopes = {s["scope"]: s for s in summary["by_scope"]}
    # Both blocks' matmuls fold into one row each way; the forward one runs once per block and call.
    forward = [s for name, s in scopes.items() if name.startswith("fwd TwoBlocks/blocks_*/")]
    backward = [s for name, s in scopes.items() if name.startswith("bwd TwoBlocks/blocks_*/")]
    assert forward and backward, sorted(scopes)
    assert any(s["launches"] == 2 for s in forward), forward
    assert sum(s["ms"] for s in summary["by_scope"]) <= summary["device_ms_per_call"] + 1e-9
    assert "by source scope" in gpu_profile.format_summary(summary)
