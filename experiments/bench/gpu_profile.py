"""Where a jitted step's GPU time goes: a JAX profiler trace of a few calls, summed per kernel and per kind.

    summary = profile(lambda: step(...), calls=3, log_dir="/tmp/trace")
    print(format_summary(summary))

The trace is the JAX profiler's (``jax.profiler.trace(..., create_perfetto_trace=True)``); every complete
event on a device (GPU) track is a kernel or copy. Kernels are grouped by kind from their names: matmul
(cuBLAS/CUTLASS/nvjet gemms, XLA triton gemms), attention (cuDNN fused attention), elementwise/reduction
fusions (XLA's loop/input fusions), copies/transposes, and the rest. Times are per call (total / calls).
``wan_compare.py --profile DIR`` runs this after timing each jaxsora DiT case and stores the summary.
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


def summarize_trace(path: pathlib.Path, calls: int, device_match: str = "GPU") -> dict:
    """Per-kernel and per-kind device time (ms per call) from a perfetto/Chrome trace."""
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
    per_kind: dict[str, float] = collections.defaultdict(float)
    for name, ms in per_kernel.items():
        per_kind[kind_of(name)] += ms
    total = sum(per_kernel.values())
    top = sorted(per_kernel.items(), key=lambda kv: -kv[1])[:30]
    return {
        "device_ms_per_call": total / calls,
        "by_kind_ms": {k: v / calls for k, v in sorted(per_kind.items(), key=lambda kv: -kv[1])},
        "top_kernels": [
            {"name": n[:160], "ms": ms / calls, "launches": count[n] // calls, "kind": kind_of(n)}
            for n, ms in top
        ],
        "trace": str(path),
    }


def profile(call, calls: int, log_dir: str, device_match: str = "GPU") -> dict:
    """Run ``call()`` (which blocks until done) ``calls`` times under the profiler and summarise."""
    import jax

    log = pathlib.Path(log_dir)
    log.mkdir(parents=True, exist_ok=True)
    with jax.profiler.trace(str(log), create_perfetto_trace=True):
        for _ in range(calls):
            call()
    return summarize_trace(_trace_file(log), calls, device_match)


def format_summary(summary: dict, top: int = 20) -> str:
    lines = [f"device time per call: {summary['device_ms_per_call']:.2f} ms"]
    lines += [f"  {kind:20s} {ms:9.2f} ms" for kind, ms in summary["by_kind_ms"].items()]
    lines.append("  top kernels (ms per call, launches per call, kind):")
    lines += [
        f"    {k['ms']:8.2f} {k['launches']:5d}  {k['kind']:18s} {k['name'][:110]}"
        for k in summary["top_kernels"][:top]
    ]
    return "\n".join(lines)
