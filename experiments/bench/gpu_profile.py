"""Where a jitted step's GPU time goes: a JAX profiler trace of a few calls, summed per kernel and per kind.

    summary = profile(lambda: step(...), calls=3, log_dir="/tmp/trace")
    print(format_summary(summary))

The trace is the JAX profiler's (``jax.profiler.trace(..., create_perfetto_trace=True)``); every complete
event on a device (GPU) track is a kernel or copy. Kernels are grouped by kind from their names: matmul
(cuBLAS/CUTLASS/nvjet gemms, XLA triton gemms), attention (cuDNN fused attention), elementwise/reduction
fusions (XLA's loop/input fusions), copies/transposes, and the rest. Times are per call (total / calls).
``wan_compare.py --profile DIR`` runs this after timing each jaxsora DiT case and stores the summary.

Given the compiled step's optimized HLO (``compiled.as_text()``), kernels are also summed per source scope:
each kernel's HLO instruction (the trace's ``hlo_op``) carries the JAX op that made it (``op_name`` metadata,
e.g. ``jit(step)/transpose(jvp(DiT))/blocks_7/mlp/fc_out/dot_general``), which :func:`scope_of` turns into
``bwd DiT/blocks_*/mlp/fc_out/dot_general``: forward or backward, the Flax module path with layer indices
folded, the primitive. An unrolled model's per-layer fusions (``loop_multiply_fusion_17``, ...) then add up
to one row per block part, which per-kernel names cannot show.
"""

from __future__ import annotations

import collections
import gzip
import json
import pathlib
import re

KINDS = (
    ("attention", re.compile(r"fmha|flash|cudnn|sdpa|attention", re.I)),
    ("matmul", re.compile(r"gemm|nvjet|cutlass|sm90_xmma|cublas|matmul|triton_gemm|dot", re.I)),
    ("copy/transpose", re.compile(r"copy|transpose|memcpy|memset", re.I)),
    ("reduction fusion", re.compile(r"reduce|reduction", re.I)),
    ("elementwise fusion", re.compile(r"fusion|loop_|convert|add|multiply", re.I)),
)


_OP_NAME = re.compile(r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=.*?metadata=\{[^}]*?op_name="([^"]*)"')
_INDEXED = re.compile(r"^(.+)_\d+$")


def op_names(hlo_text: str) -> dict[str, str]:
    """HLO instruction name -> its ``op_name`` metadata, for every instruction of an HLO module's text."""
    out = {}
    for line in hlo_text.splitlines():
        m = _OP_NAME.match(line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def scope_of(op_name: str) -> str:
    """``"fwd|bwd Module/path/primitive"`` from a JAX op_name: ``jit(...)`` dropped, ``bwd`` when under
    ``transpose(...)``, the ``jvp(...)``/``checkpoint``-style wrappers unwrapped to the module they name,
    numbered parts (``blocks_7``, ``Dense_0``) folded to ``blocks_*``, the path that ``jax.checkpoint``
    repeats inside its scope given once (``bwd DiT/blocks_*/mlp/checkpoint/mul``)."""
    phase = "bwd" if "transpose(" in op_name else "fwd"
    parts = []
    for part in op_name.split("/"):
        if not part or part.startswith("jit("):
            continue
        while "(" in part and part.endswith(")"):  # jvp(DiT) -> DiT, transpose(jvp(DiT)) -> DiT
            part = part[part.index("(") + 1 : -1]
        m = _INDEXED.match(part)
        parts.append(f"{m.group(1)}_*" if m else part)
    # Inside jax.checkpoint the path repeats: transpose(jvp(DiT))/blocks_3/mlp/jvp(DiT)/blocks_3/mlp/checkpoint
    j = parts.index(parts[0], 1) if parts and parts[0] in parts[1:] else 0
    if j and parts[j : 2 * j] == parts[:j]:
        parts = parts[j:]
    return f"{phase} {'/'.join(parts)}"


def kind_of(name: str) -> str:
    for kind, pattern in KINDS:
        if pattern.search(name):
            return kind
    return "other"


def _trace_file(log_dir: pathlib.Path) -> pathlib.Path:
    found = sorted(log_dir.rglob("*.trace.json.gz")) + sorted(log_dir.rglob("perfetto_trace.json.gz"))
    if not found:
        raise FileNotFoundError(f"no trace under {log_dir}")
    return found[-1]


def _hlo_op(event: dict, names: dict[str, str]) -> str | None:
    """The HLO instruction of a kernel event: the trace's ``hlo_op`` argument, else the kernel's name
    (XLA names fusion kernels after their instruction, ``.`` written ``_``). Kernels that a CUDA graph
    launches carry their command buffer's ``hlo_op``, not their own: those are matched by name."""
    op = event.get("args", {}).get("hlo_op")
    if op in names and not op.startswith("command_buffer"):
        return op
    name = event["name"]
    for candidate in (name, re.sub(r"_(\d+)$", r".\1", name)):
        if candidate in names:
            return candidate
    return None


def summarize_trace(
    path: pathlib.Path,
    calls: int,
    device_match: str = "GPU",
    hlo_text: str | None = None,
    top_scopes: int = 300,
) -> dict:
    """Per-kernel and per-kind device time (ms per call) from a perfetto/Chrome trace; with the module's
    ``hlo_text``, per source scope too (``by_scope``, the ``top_scopes`` largest, each split by kind)."""
    names = op_names(hlo_text) if hlo_text else {}
    per_scope: dict[str, float] = collections.defaultdict(float)
    scope_count: dict[str, int] = collections.defaultdict(int)
    scope_kind: dict[str, dict[str, float]] = collections.defaultdict(lambda: collections.defaultdict(float))
    data = json.loads(gzip.open(path).read())
    events = data["traceEvents"] if isinstance(data, dict) else data
    pids = {
        e["pid"]: e["args"].get("name", "")
        for e in events
        if e.get("ph") == "M" and e.get("name") == "process_name" and "args" in e
    }
    device_pids = {pid for pid, name in pids.items() if device_match.lower() in name.lower()}
    per_kernel: dict[str, float] = collections.defaultdict(float)
    count: dict[str, int] = collections.defaultdict(int)
    for e in events:
        if e.get("ph") != "X" or e.get("pid") not in device_pids or "dur" not in e:
            continue
        per_kernel[e["name"]] += float(e["dur"]) / 1e3  # us -> ms
        count[e["name"]] += 1
        if names:
            op = _hlo_op(e, names)
            scope = scope_of(names[op]) if op else "(no HLO instruction)"
            per_scope[scope] += float(e["dur"]) / 1e3
            scope_count[scope] += 1
            scope_kind[scope][kind_of(e["name"])] += float(e["dur"]) / 1e3
    per_kind: dict[str, float] = collections.defaultdict(float)
    for name, ms in per_kernel.items():
        per_kind[kind_of(name)] += ms
    total = sum(per_kernel.values())
    top = sorted(per_kernel.items(), key=lambda kv: -kv[1])[:30]
    summary = {
        "device_ms_per_call": total / calls,
        "by_kind_ms": {k: v / calls for k, v in sorted(per_kind.items(), key=lambda kv: -kv[1])},
        "top_kernels": [
            {"name": n[:160], "ms": ms / calls, "launches": count[n] // calls, "kind": kind_of(n)}
            for n, ms in top
        ],
        "trace": str(path),
    }
    if names:
        summary["by_scope"] = [
            {
                "scope": sc,
                "ms": ms / calls,
                "launches": scope_count[sc] // calls,
                "by_kind_ms": {k: v / calls for k, v in scope_kind[sc].items()},
            }
            for sc, ms in sorted(per_scope.items(), key=lambda kv: -kv[1])[:top_scopes]
        ]
    return summary


def profile(call, calls: int, log_dir: str, device_match: str = "GPU", hlo_text: str | None = None) -> dict:
    """Run ``call()`` (which blocks until done) ``calls`` times under the profiler and summarise (per scope
    too, given the compiled module's ``hlo_text``)."""
    import jax

    log = pathlib.Path(log_dir)
    log.mkdir(parents=True, exist_ok=True)
    with jax.profiler.trace(str(log), create_perfetto_trace=True):
        for _ in range(calls):
            call()
    return summarize_trace(_trace_file(log), calls, device_match, hlo_text)


def format_summary(summary: dict, top: int = 20) -> str:
    lines = [f"device time per call: {summary['device_ms_per_call']:.2f} ms"]
    lines += [f"  {kind:20s} {ms:9.2f} ms" for kind, ms in summary["by_kind_ms"].items()]
    lines.append("  top kernels (ms per call, launches per call, kind):")
    lines += [
        f"    {k['ms']:8.2f} {k['launches']:5d}  {k['kind']:18s} {k['name'][:110]}"
        for k in summary["top_kernels"][:top]
    ]
    if summary.get("by_scope"):
        lines.append("  by source scope (ms per call, launches per call):")
        lines += [
            f"    {s['ms']:8.2f} {s['launches']:5d}  {s['scope'][:120]}" for s in summary["by_scope"][:top]
        ]
    return "\n".join(lines)
