"""How fast can the B=8 Wan-shape training step be? A lower bound from the step's own program (CPU, no GPU).

    python experiments/bench/roofline.py [--depth 30] [--params float32] [--bandwidth-tbs 4.3]

Traces the benchmark's training step (``wan_compare.py``'s ``jax-train-small-b8``: the DiT at
``configs/wan13b_shape.py``, unrolled, the MSE, ``jax.grad``, the trainer's AdamW with its global-norm clip) and
walks its jaxpr (every ``jit``, ``jax.checkpoint`` and custom-VJP body inlined). Attention is swapped for an
opaque kernel with cuDNN flash attention's inputs and outputs (forward: q, k, v -> o and the softmax
statistics; backward: those and dO -> dq, dk, dv), since the CPU cannot trace cuDNN's.

The bound has three parts:
- **matmuls** (``dot_general``) at ``--matmul-tflops`` (745: the bf16 ceiling measured on an H100 here) and
  **attention** at ``--attention-tflops`` (551: cuDNN forward+backward through JAX, model FLOPs), both counted
  2 per multiply-add from the traced shapes;
- **everything else** (norms, modulation, RoPE, GELU, residual adds, casts, the loss, the bias and modulation
  gradients, the optimizer) as memory traffic at ``--bandwidth-tbs`` (4.3: a device-to-device copy on an
  H200 here, KINDS.md), under the best fusion a compiler without GEMM prologue/epilogue fusion could do: the
  element-wise and reduction ops between two matmuls form one kernel whenever they are connected and no
  matmul or attention call lies between them (a "level": the count of matmuls and attention calls on the
  longest path from the step's inputs). Each kernel reads each tensor it needs from outside once and writes
  each tensor that a matmul, attention call, other kernel or the step's result needs. A kernel may
  instead recompute an element-wise chain (casts and broadcasts included) from the chain's own inputs, as XLA
  duplicates cheap producers into their consumers, when that reads no more than ~the chain's result; a
  kernel whose results are all recomputed elsewhere is dead. A row reduction (norm statistics, over the last
  axis) may feed its consumers in the same kernel; a reduction over other axes (bias and modulation gradients
  over tokens, the gradient's global norm) ends its kernel, since every block of the grid has to finish before
  its result exists. Ops whose results nothing uses are dropped.

Matmuls and attention are assumed to run at their ceilings with their own operand traffic hidden, and no
launch gaps: the sum is this program's best case on this GPU (a lower bound but for the recompute choice,
which is greedy per kernel); a real compiler's fusions, reductions and launches only add to it. Compare with ``wan_compare.py``'s measured step and with 1.2x the compiled diffusers
step. ``--top`` lists where the bound's traffic is, per source scope; ``--against RESULT.json`` (a
``wan_compare.py --profile`` result) puts each module's profiled non-matmul time beside its best case.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import math
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
for p in (REPO, HERE):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

HEAVY = ("dot_general", "pure_callback")
IDENTITIES = ("name", "copy", "copy_p", "optimization_barrier")  # results alias their inputs
REDUCTIONS = ("reduce_sum", "reduce_max", "reduce_min", "argmax", "argmin", "reduce_prod")
SUB_JAXPRS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


@dataclasses.dataclass
class Op:
    prim: str
    ins: list[int]
    outs: list[int]
    scope: str
    flops: float = 0.0
    axes: tuple[int, ...] = ()  # reductions: the reduced axes
    row_local: bool = True  # reductions: over the last axis only


class Program:
    """A flat list of ops over integer tensor ids, with each tensor's shape and dtype, bytes and producer."""

    def __init__(self):
        self.ops: list[Op] = []
        self.nbytes: list[int] = []
        self.avals: list = []
        self.producer: list[int] = []  # op index, -1 for the step's inputs and constants

    @classmethod
    def from_jaxpr(cls, closed) -> tuple[Program, list[int]]:
        """The flattened program of a ``ClosedJaxpr`` without its dead ops, and its outputs' tensor ids."""
        prog = cls()
        jaxpr = closed.jaxpr
        env = {v: prog.tensor(v.aval, -1) for v in [*jaxpr.constvars, *jaxpr.invars]}
        flatten(jaxpr, prog, env)
        outputs = [env[v] for v in jaxpr.outvars if v in env]
        prog.drop_dead(outputs)
        return prog, outputs

    def drop_dead(self, outputs: list[int]) -> None:
        """Removes ops whose results nothing uses (as XLA would): the trace keeps them."""
        live = set(outputs)
        keep = [False] * len(self.ops)
        for index in range(len(self.ops) - 1, -1, -1):
            op = self.ops[index]
            if any(o in live for o in op.outs):
                keep[index] = True
                live.update(op.ins)
        remap = {}
        ops = []
        for index, op in enumerate(self.ops):
            if keep[index]:
                remap[index] = len(ops)
                ops.append(op)
        self.ops = ops
        self.producer = [remap.get(p, -1) if p >= 0 else -1 for p in self.producer]

    def tensor(self, aval, producer: int) -> int:
        size = int(np.prod(aval.shape)) * np.dtype(aval.dtype).itemsize if hasattr(aval, "shape") else 0
        self.nbytes.append(size)
        self.avals.append(aval)
        self.producer.append(producer)
        return len(self.nbytes) - 1


def _sub_jaxpr(eqn):
    """The body of an eqn that only wraps another jaxpr (jit, checkpoint, custom JVP/VJP calls), if any."""
    for key in SUB_JAXPRS:
        sub = eqn.params.get(key)
        if sub is None:
            continue
        jaxpr = getattr(sub, "jaxpr", sub)
        consts = getattr(sub, "consts", [])
        if hasattr(jaxpr, "eqns") and len(jaxpr.invars) == len(eqn.invars):
            if len(jaxpr.outvars) == len(eqn.outvars):
                return jaxpr, consts
    return None


def _dot_flops(eqn) -> float:
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lhs, rhs = (v.aval.shape for v in eqn.invars)
    free_rhs = [d for i, d in enumerate(rhs) if i not in rc and i not in rb]
    return 2.0 * math.prod(lhs) * math.prod(free_rhs)


def _attention_flops(eqn) -> float:
    """Model FLOPs of the opaque attention kernel: 4*B*H*S*T*D forward, twice that backward."""
    q, k = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape  # [B, S, H, D], [B, T, H, D]
    forward = 4.0 * q[0] * q[2] * q[1] * k[1] * q[3]
    return forward if len(eqn.invars) == 3 else 2.0 * forward


def flatten(jaxpr, prog: Program, env: dict, stack: str = "") -> None:
    """Appends ``jaxpr``'s ops to ``prog``; ``env`` maps its variables to tensor ids."""
    from jax.extend import core

    def read(atom):
        if isinstance(atom, core.Literal):
            return None
        return env[atom]

    for eqn in jaxpr.eqns:
        scope = str(eqn.source_info.name_stack)
        scope = f"{stack}/{scope}" if stack and scope else (stack or scope)
        sub = _sub_jaxpr(eqn)
        if sub is not None:
            inner, consts = sub
            inner_env = {v: read(a) for v, a in zip(inner.invars, eqn.invars, strict=True)}
            for c in inner.constvars:
                inner_env[c] = prog.tensor(c.aval, -1)
            flatten(inner, prog, inner_env, scope)
            for outer, v in zip(eqn.outvars, inner.outvars, strict=True):
                env[outer] = inner_env[v] if not isinstance(v, core.Literal) else prog.tensor(v.aval, -1)
            continue
        ins = [i for i in (read(a) for a in eqn.invars) if i is not None]
        if eqn.primitive.name in IDENTITIES and len(ins) == len(eqn.outvars):
            for v, i in zip(eqn.outvars, ins, strict=True):  # checkpoint_name and the like: the same tensor
                env[v] = i
            continue
        index = len(prog.ops)
        outs = [prog.tensor(v.aval, index) for v in eqn.outvars]
        for v, i in zip(eqn.outvars, outs, strict=True):
            env[v] = i
        op = Op(eqn.primitive.name, ins, outs, scope)
        if op.prim == "dot_general":
            op.flops = _dot_flops(eqn)
        elif op.prim == "pure_callback":
            op.flops = _attention_flops(eqn)
        elif op.prim in REDUCTIONS:
            op.axes = tuple(eqn.params.get("axes", ()))
            op.row_local = op.axes == (len(eqn.invars[0].aval.shape) - 1,)
        prog.ops.append(op)


def bound(prog: Program, outputs: list[int]) -> dict:
    """Fuses the light ops into kernels (see the module docstring) and sums their traffic; ``outputs`` are
    the step's results (written)."""
    import gpu_profile

    n = len(prog.ops)
    level = [0] * len(prog.nbytes)  # of each tensor: heavy ops on the longest path to it
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def is_kernel_op(op):
        return op.prim not in HEAVY

    def kernel_producer(t):
        p = prog.producer[t]
        return p if p >= 0 and is_kernel_op(prog.ops[p]) else None

    for index, op in enumerate(prog.ops):
        lvl = max((level[i] for i in op.ins), default=0)
        for o in op.outs:
            level[o] = lvl + (op.prim in HEAVY)
        if not is_kernel_op(op):
            continue
        for i in op.ins:
            p = kernel_producer(i)
            if p is None or level[i] != lvl:
                continue
            if prog.ops[p].prim in REDUCTIONS and not prog.ops[p].row_local:
                continue  # a reduction over tokens (or all) ends its kernel
            parent[find(p)] = find(index)

    group_of = {}  # tensor -> the kernel that computes it
    for index, op in enumerate(prog.ops):
        if is_kernel_op(op):
            for o in op.outs:
                group_of[o] = find(index)

    # For each tensor, the tensors an element-wise chain recomputes it from (a consumer may do so rather than
    # read it); ops are in topological order, so one forward pass fills it.
    base_sets: list[frozenset] = [frozenset((t,)) for t in range(len(prog.nbytes))]
    for op in prog.ops:
        if not is_kernel_op(op) or op.prim in REDUCTIONS:
            continue
        inner = frozenset().union(*(base_sets[i] for i in op.ins))  # none: a constant, free
        if len(inner) <= 16:
            for o in op.outs:
                base_sets[o] = inner

    reads: dict[int, set] = collections.defaultdict(set)
    written: set[int] = set()
    for index, op in enumerate(prog.ops):
        if not is_kernel_op(op):  # matmuls and attention read tensors that must be in memory
            written.update(i for i in op.ins if kernel_producer(i) is not None)
            continue
        g = find(index)
        for t in op.ins:
            if group_of.get(t) == g:
                continue
            remat = base_sets[t]
            extra = remat - reads[g] - {t}
            # Recompute when that reads no more than ~the tensor itself (a bias or scale more): the chain's
            # other inputs are then usually shared with the kernel's other reads.
            if t in reads[g] or sum(prog.nbytes[b] for b in extra) > 1.05 * prog.nbytes[t]:
                chosen = {t}
            else:
                chosen = remat
            for b in chosen:
                if group_of.get(b) == g:
                    continue
                reads[g].add(b)
                if kernel_producer(b) is not None:
                    written.add(b)
    written.update(t for t in outputs if kernel_producer(t) is not None)

    group_scope: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    group_ops: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for index, op in enumerate(prog.ops):
        if is_kernel_op(op):
            group_scope[find(index)][op.scope] += 1
            group_ops[find(index)][op.prim] += 1
    writes: dict[int, list] = collections.defaultdict(list)
    for t in written:
        writes[group_of[t]].append(prog.nbytes[t])
    kernels = []
    for g in set(writes):  # a kernel that writes nothing is dead: its consumers all recompute what it made
        top = group_scope[g].most_common(1)[0][0]
        kernels.append(
            {
                "bytes": sum(prog.nbytes[t] for t in reads[g]) + sum(writes[g]),
                "scope": gpu_profile.scope_of(top) if top else "(outside the model: loss, optimizer)",
                "reads": sorted((prog.nbytes[t] for t in reads[g]), reverse=True),
                "writes": sorted(writes[g], reverse=True),
                "ops": group_ops[g],
            }
        )
    kernels.sort(key=lambda k: -k["bytes"])
    scope_bytes: dict[str, float] = collections.defaultdict(float)
    for k in kernels:
        scope_bytes[k["scope"]] += k["bytes"]
    heavy = collections.Counter()
    for op in prog.ops:
        if op.prim in HEAVY:
            heavy[op.prim] += op.flops
    return {
        "kernel_list": kernels,
        "kernels": len(kernels),
        "bytes": sum(k["bytes"] for k in kernels),
        "matmul_flops": heavy["dot_general"],
        "attention_flops": heavy["pure_callback"],
        "by_scope": sorted(scope_bytes.items(), key=lambda kv: -kv[1]),
    }


REMAT_PARTS = {"checkpoint", "rematted_computation", "remat", "remat2"}
OUTSIDE = "(outside the model)"


def module_key(scope: str, has_primitive: bool) -> str:
    """A scope (``gpu_profile.scope_of``'s form) reduced to phase and module path: the primitive dropped where
    the scope ends in one (the profile's), recompute markers dropped (the trace calls them
    ``rematted_computation``, the HLO ``checkpoint``), and ops outside every module as one row."""
    if scope.startswith("("):
        return OUTSIDE
    phase, _, path = scope.partition(" ")
    parts = [p for p in path.split("/") if p and p not in REMAT_PARTS]
    if has_primitive and parts:
        parts = parts[:-1]
    if not parts or parts[0] not in ("DiT",):
        return OUTSIDE
    return f"{phase} {'/'.join(parts)}"


def compare(profile_scopes: list[dict], best_scopes: list[tuple[str, float]], bandwidth_tbs: float) -> list:
    """Rows ``(module, profiled ms, best-case ms)`` of the non-matmul, non-attention work, largest excess
    first: the profile's ``by_scope`` (``gpu_profile``) against the best case's traffic per scope."""
    profiled: dict[str, float] = collections.defaultdict(float)
    for row in profile_scopes:
        kinds = row.get("by_kind_ms") or {"other": row["ms"]}
        ms = sum(v for k, v in kinds.items() if k not in ("matmul", "attention"))
        profiled[module_key(row["scope"], has_primitive=True)] += ms
    best: dict[str, float] = collections.defaultdict(float)
    for scope, nbytes in best_scopes:
        best[module_key(scope, has_primitive=False)] += nbytes / (bandwidth_tbs * 1e9)
    rows = [(k, profiled.get(k, 0.0), best.get(k, 0.0)) for k in set(profiled) | set(best)]
    return sorted(rows, key=lambda r: -(r[1] - r[2]))


def opaque_attention():
    """A stand-in for the attention kernel with cuDNN flash attention's inputs and outputs (traced, never run)."""
    import jax
    import jax.numpy as jnp

    def never(*_):
        raise RuntimeError("the roofline's attention stand-in is only traced")

    @jax.custom_vjp
    def kernel(q, k, v):
        return jax.pure_callback(never, jax.ShapeDtypeStruct(q.shape, q.dtype), q, k, v)

    def fwd(q, k, v):
        b, s, h, _ = q.shape
        out = (jax.ShapeDtypeStruct(q.shape, q.dtype), jax.ShapeDtypeStruct((b, h, s), jnp.float32))
        o, stats = jax.pure_callback(never, out, q, k, v)
        return o, (q, k, v, o, stats)

    def bwd(res, do):
        q, k, v, _, _ = res
        shapes = tuple(jax.ShapeDtypeStruct(x.shape, x.dtype) for x in (q, k, v))
        return jax.pure_callback(never, shapes, *res, do)

    kernel.defvjp(fwd, bwd)
    return lambda q, k, v, q_seg=None, kv_seg=None: kernel(q, k, v)


def trace_step(
    depth: int, batch: int, latent: str, text_tokens: int, params_dtype: str, optimizer: bool = True
):
    """The closed jaxpr of the B=8 benchmark step (DiT at ``configs/wan13b_shape.py`` unrolled, MSE, gradient,
    and with ``optimizer`` the trainer's AdamW), attention swapped for :func:`opaque_attention`; with the
    parameter count and (batch, tokens a row)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax
    import wan_compare

    from jaxsora.config import load_config
    from jaxsora.models import attention
    from jaxsora.models.dit import DiT
    from jaxsora.train.optim import make_unscaled_optimizer

    attention._xla = opaque_attention()  # the CPU's kernel choice; cuDNN's I/O
    cfg = wan_compare.jax_dit_config(
        argparse.Namespace(jax_dit=[f"depth={depth}"], tiny=False), "none", False
    )
    f, h, w = (int(x) for x in latent.split("x"))
    b, n = batch, f * (h // 2) * (w // 2)
    sds = jax.ShapeDtypeStruct
    x, t = sds((b, n, cfg.patch_dim), jnp.float32), sds((b,), jnp.float32)
    pos, text = sds((b, n, 3), jnp.int32), sds((b, text_tokens, cfg.text_dim), jnp.float32)
    model = DiT(cfg)
    params = jax.eval_shape(
        lambda *a: nn.meta.unbox(model.init(jax.random.key(0), *a)["params"]), x, t, pos, text
    )
    params = jax.tree.map(lambda p: sds(p.shape, jnp.dtype(params_dtype)), params)
    tx = make_unscaled_optimizer(load_config(str(REPO / "configs" / "wan13b_shape.py")).train.optim)
    opt = jax.eval_shape(tx.init, params)

    def loss_fn(p, x, t, pos, text, y):
        return jnp.mean(jnp.square(model.apply({"params": p}, x, t, pos, text) - y))

    def step(params, opt, x, t, pos, text, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, t, pos, text, y)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, jax.tree.map(lambda u: -1e-5 * u, updates)), opt, loss

    n_params = sum(math.prod(p.shape) for p in jax.tree.leaves(params))
    if optimizer:
        closed = jax.make_jaxpr(step)(params, opt, x, t, pos, text, x)
    else:
        closed = jax.make_jaxpr(jax.grad(loss_fn))(params, x, t, pos, text, x)
    return closed, n_params, (b, n)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depth", type=int, default=30)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--latent", default="5x32x32", help="latent frames x height x width (patches 1x2x2)")
    p.add_argument("--text-tokens", type=int, default=512)
    p.add_argument("--params", default="float32", help="params and Adam state dtype (float32 or bfloat16)")
    p.add_argument("--matmul-tflops", type=float, default=745.0)
    p.add_argument("--attention-tflops", type=float, default=551.0)
    p.add_argument("--bandwidth-tbs", type=float, default=4.3)
    p.add_argument(
        "--matmul-ms", type=float, help="the matmuls' time as profiled, instead of FLOPs / ceiling"
    )
    p.add_argument(
        "--attention-ms", type=float, help="attention's time as profiled, instead of FLOPs / ceiling"
    )
    p.add_argument("--measured-s", type=float, default=0.2260, help="the measured step, for the last line")
    p.add_argument("--reference-s", type=float, default=0.1997, help="compiled diffusers' step, same run")
    p.add_argument("--top", type=int, default=15, help="scopes listed by their share of the traffic")
    p.add_argument("--kernels", type=int, default=0, help="list this many fused kernels, largest first")
    p.add_argument(
        "--no-recompute",
        action="store_true",
        help="trace the layers without their jax.checkpoint: the backward reads what the forward kept (the "
        "norms' and GELU's outputs) instead of recomputing it; more memory (must run before jaxsora is imported)",
    )
    p.add_argument(
        "--against",
        metavar="RESULT.json",
        help="a wan_compare.py --profile result: compare its profiled non-matmul time per module with the best case",
    )
    p.add_argument(
        "--case", default="", help="with --against: the profiled case (default: the first profiled)"
    )
    args = p.parse_args(argv)
    if args.no_recompute:
        import jax

        if "jaxsora.models.layers" in sys.modules:
            raise SystemExit("--no-recompute must patch jax.checkpoint before jaxsora.models is imported")
        jax.checkpoint = lambda fun=None, **kw: fun if fun is not None else (lambda f: f)

    closed, n_params, (b, n) = trace_step(args.depth, args.batch, args.latent, args.text_tokens, args.params)
    prog, outputs = Program.from_jaxpr(closed)
    r = bound(prog, outputs)
    mm = args.matmul_ms / 1e3 if args.matmul_ms else r["matmul_flops"] / (args.matmul_tflops * 1e12)
    at = (
        args.attention_ms / 1e3
        if args.attention_ms
        else r["attention_flops"] / (args.attention_tflops * 1e12)
    )
    mem = r["bytes"] / (args.bandwidth_tbs * 1e12)
    total = mm + at + mem
    print(
        f"training step, DiT depth {args.depth} (unrolled), B={b} x {n} tokens, {n_params / 1e9:.3f}B params "
        f"in {args.params}: {len(prog.ops)} ops traced, {r['kernels']} fused element-wise/reduction kernels"
    )
    print("| part | work | at | ms |")
    print("|---|---:|---|---:|")
    mm_at = "profiled" if args.matmul_ms else f"{args.matmul_tflops:.0f} TFLOP/s"
    at_at = "profiled" if args.attention_ms else f"{args.attention_tflops:.0f} TFLOP/s"
    print(f"| matmuls | {r['matmul_flops'] / 1e12:.1f} TFLOP | {mm_at} | {mm * 1e3:.1f} |")
    print(f"| attention | {r['attention_flops'] / 1e12:.1f} TFLOP | {at_at} | {at * 1e3:.1f} |")
    print(
        f"| the rest, best fusion | {r['bytes'] / 1e9:.1f} GB | {args.bandwidth_tbs:.1f} TB/s | {mem * 1e3:.1f} |"
    )
    print(f"| **best case** | | | **{total * 1e3:.1f}** |")
    target = args.reference_s / 1.2
    print(
        f"measured {args.measured_s * 1e3:.1f} ms; 1.2x compiled diffusers ({args.reference_s * 1e3:.1f} ms) "
        f"is {target * 1e3:.1f} ms: the best case is {total / target:.2f}x that, the measured step "
        f"{args.measured_s / total:.2f}x the best case"
    )
    if args.kernels:
        print(f"the {args.kernels} kernels with the most traffic (MB read and written, by tensor):")
        for k in r["kernel_list"][: args.kernels]:
            ops = ", ".join(f"{name} {c}" for name, c in k["ops"].most_common(6))
            print(
                f"  {k['bytes'] / 1e6:8.1f} MB {k['scope'][:70]}: reads {[round(b / 1e6) for b in k['reads'][:6]]}"
                f" writes {[round(b / 1e6) for b in k['writes'][:6]]} ({ops})"
            )
    if args.against:
        import json

        rows = [
            row for row in json.loads(pathlib.Path(args.against).read_text())["rows"] if row.get("profile")
        ]
        rows = [row for row in rows if not args.case or row.get("case") == args.case]
        if not rows or "by_scope" not in rows[0]["profile"]:
            raise SystemExit(f"{args.against}: no profiled case with per-scope times (--case {args.case!r})")
        table = compare(rows[0]["profile"]["by_scope"], r["by_scope"], args.bandwidth_tbs)
        print(f"profiled ({rows[0].get('case')}) against the best case, non-matmul work per module (ms):")
        print("| module | profiled | best case | excess |")
        print("|---|---:|---:|---:|")
        for key, got, ideal in table[: args.top]:
            print(f"| {key} | {got:.2f} | {ideal:.2f} | {got - ideal:+.2f} |")
        total_got, total_ideal = sum(t[1] for t in table), sum(t[2] for t in table)
        print(f"| all | {total_got:.2f} | {total_ideal:.2f} | {total_got - total_ideal:+.2f} |")
    print(f"traffic by source scope (the {args.top} largest of {len(r['by_scope'])}):")
    for scope, nbytes in r["by_scope"][: args.top]:
        print(f"  {nbytes / 1e9:7.2f} GB {nbytes / (args.bandwidth_tbs * 1e9):6.2f} ms  {scope[:110]}")


if __name__ == "__main__":
    main()
