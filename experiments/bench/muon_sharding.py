"""What Muon's update costs each device on a sharded mesh (CPU compile only, no GPU): the collectives in the
compiled optimizer update, the bytes its all-gathers return, the per-device temporary memory XLA plans and the
FLOPs XLA counts for one device's share (``cost_analysis``), AdamW beside it.

    python experiments/bench/muon_sharding.py [--depth 30] [--meshes fsdp=8,data=2:fsdp=4,data=8,...]

Builds the train state of ``configs/wan13b_shape.py`` (the byte text encoder instead of T5, which needs
weights; ``dit.depth`` from ``--depth``) as shapes only, shards it by the logical rules over 8 forced host
devices, and compiles ``tx.update`` + ``apply_updates`` with the state's shardings in and out (donated),
nothing run. Muon's Newton-Schulz chains are split over the mesh axes that ``matrices`` maps to in
``jaxsora/parallel.py``'s rules (the stacks held over those of ``matrix_stacks``); ``--matrices`` overrides
the first mapping (``none``: every device runs every chain on gathered parameters, as before the split).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import sys
import time
from collections import Counter

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxsora import parallel  # noqa: E402
from jaxsora.config import load_config  # noqa: E402
from jaxsora.train.dit import DiTParts  # noqa: E402
from jaxsora.train.loop import state_layout  # noqa: E402

COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
DTYPE_BYTES = {"f32": 4, "bf16": 2, "s32": 4, "f16": 2}


def collectives(hlo: str) -> tuple[Counter, int]:
    """How many of each collective the compiled HLO has, and the bytes its all-gathers return (per device)."""
    ops = Counter(re.findall(r" (" + "|".join(COLLECTIVES) + r")(?:-start)?\(", hlo))
    gathered = 0
    for m in re.finditer(r"= (\w+)\[([\d,]*)\][^=\n]*? all-gather(?:-start)?\(", hlo):
        dims = [int(d) for d in m.group(2).split(",") if d]
        gathered += int(np.prod(dims)) * DTYPE_BYTES.get(m.group(1), 4)
    return ops, gathered


def measure(kind: str, depth: int, mesh_shape: dict) -> dict:
    config = load_config(
        "configs/wan13b_shape.py",
        [f"dit.depth={depth}", f"train.optim.kind={kind}", "text_encoder.kind=byte"],
    )
    parts = DiTParts(config, {"latent_channels": 16})
    mesh = parallel.make_mesh({"data": 1} | mesh_shape)
    abstract, shardings = state_layout(mesh, parts.init)  # the trainers' own layout of the train state

    def update(params, grads, opt_state):
        updates, opt_state = parts.tx.update(grads, opt_state, params)
        return optax.apply_updates(params, jax.tree.map(lambda u: -1e-3 * u, updates)), opt_state

    start = time.perf_counter()
    with parallel.mesh_context(mesh):
        compiled = (
            jax.jit(
                update,
                in_shardings=(shardings.params, shardings.params, shardings.opt_state),
                out_shardings=(shardings.params, shardings.opt_state),
                donate_argnums=(0, 2),
            )
            .lower(abstract.params, abstract.params, abstract.opt_state)
            .compile()
        )
    ops, gathered = collectives(compiled.as_text())
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis() or {}
    if isinstance(cost, list):  # older jax: one dict per computation
        cost = cost[0] if cost else {}
    return {
        "flops": cost.get("flops", float("nan")),
        "params": sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract.params)),
        "ops": ops,
        "gathered": gathered,
        "temp": memory.temp_size_in_bytes,
        "compile_s": time.perf_counter() - start,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=30, help="dit.depth (30: the Wan 1.3B size)")
    parser.add_argument(
        "--meshes",
        default="fsdp=8,data=2:fsdp=4,fsdp=2:tensor=4,data=8,data=2:fsdp=2:tensor=2",
        help="comma-separated meshes, each axis=size joined by ':'",
    )
    parser.add_argument(
        "--matrices",
        default=None,
        help="override the rule for Muon's 'matrices' axis: mesh axes joined by '+', or 'none'",
    )
    args = parser.parse_args(argv)
    if args.matrices is not None:
        value = None if args.matrices == "none" else tuple(args.matrices.split("+"))
        parallel.LOGICAL_RULES = tuple(
            (name, value if name == "matrices" else axes) for name, axes in parallel.LOGICAL_RULES
        )
    rule = dict(parallel.LOGICAL_RULES).get("matrices")
    print(f"jax {jax.__version__}, wan13b_shape at depth {args.depth}, 'matrices' -> {rule}")
    print("| mesh | optimizer | collectives | all-gathered / device | temp / device | GFLOP / device |")
    print("|---|---|---|---:|---:|---:|")
    for spec in args.meshes.split(","):
        mesh_shape = {k: int(v) for k, v in (kv.split("=") for kv in spec.split(":"))}
        for kind in ("adamw", "muon"):
            r = measure(kind, args.depth, mesh_shape)
            ops = ", ".join(f"{k} {v}" for k, v in sorted(r["ops"].items())) or "-"
            print(
                f"| {spec} | {kind} | {ops} | {r['gathered'] / 2**20:,.0f} MiB | {r['temp'] / 2**20:,.0f} MiB "
                f"| {r['flops'] / 1e9:,.0f} |",
                flush=True,
            )
    print(f"parameters: {r['params'] / 1e6:,.0f}M")


if __name__ == "__main__":
    main()
