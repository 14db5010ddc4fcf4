"""jaxsora vs diffusers' Wan 2.1 on one GPU, side by side (issue 6): the 1.3B-size DiT and the VAE.

DiT: jaxsora's :class:`~jaxsora.models.dit.DiT` at ``configs/wan13b_shape.py`` (no text encoder: random text
states ``[B, 512, 4096]``, ``segment_ids=None``, one timestep per row) against diffusers'
``WanTransformer3DModel`` at Wan 2.1 T2V 1.3B's configuration in bf16, eager and ``torch.compile``:

* inference forward at latent 21x60x104 (B=1, 32,760 tokens) and 5x32x32 (B=1);
* a training step at B=8, 5x32x32: jaxsora = jitted value_and_grad + the trainer's AdamW (global-norm clip,
  Adam, decoupled weight decay; f32 params and Adam state, bf16 compute; no EMA unless ``--jax-ema``),
  state donated, the blocks scanned (the preset) and unrolled (``*-unrolled``), with f32 and bf16 state;
  diffusers = forward + MSE + backward + ``torch.optim.AdamW(fused=True)`` step on the model
  as ``from_pretrained(torch_dtype=bfloat16)`` casts it (bf16 params, grads and Adam state, except the
  float32 modules it keeps: norms, modulation tables, time embedder);
* a training step at B=1, 21x60x104 with rematerialisation: jaxsora ``dit.remat`` = full / dots_no_batch /
  save_attention; diffusers with ``enable_gradient_checkpointing()``, and without it (expected: OOM).

VAE: jaxsora's VAE (``configs/vae_synthetic.py``, random params, bf16) against diffusers' ``AutoencoderKLWan``
(default config, random weights, bf16): one-shot encode and decode of 17 frames at 256x256 and 1280x720, B=1.

Every case runs in a fresh subprocess of this script (``--case NAME``), so peak memory is the case's own:
jax ``device.memory_stats()['peak_bytes_in_use']``, torch ``torch.cuda.max_memory_allocated()``. Times are the
median of ``--steps`` (>= 10) steps after warm-up, each ended by a device sync; compile time is reported apart
(jax: lower + compile; torch.compile: the first call minus a median step). Model FLOPs are
:func:`jaxsora.flops.wan_forward_flops` (x3 for a training step) for both sides; it equals
:func:`jaxsora.flops.dit_forward_flops` of our model at these shapes (checked in every run and in
tests/test_flops.py). MFU is against ``--peak-tflops`` (745, the measured bf16 matmul ceiling of the H100).
``vs best diffusers``: the fastest diffusers row of the same work and shape, time / jaxsora time (> 1:
jaxsora is faster); the VAE table gives jaxsora frames/s / diffusers frames/s.

Device runs (diffusers, and the few of its needs a stock torch image may lack, travel as wheels: .whl-bench
holds diffusers, .whl-bench/deps the fallbacks, which the torch cases only append to sys.path so that the
image's own packages win). The whole set takes about 20 minutes (estimate: compiles dominate), more than one
10-minute device command, so it runs as four (carry [".whl", ".whl-bench"]), then ``--report`` merges them::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      .whl/*.whl .whl-bench/*.whl && python3 -m pip install -q --no-index --no-deps --no-compile \
      --no-cache-dir --upgrade --target /tmp/deps .whl-bench/deps/*.whl \
      && export PYTHONPATH=/tmp/site:$PWD BENCH_EXTRA_SITE=/tmp/deps \
      && python3 experiments/bench/wan_compare.py --cases dit-fwd --out $OUT/wan_fwd.json
    (the same with --cases dit-b8 --out $OUT/wan_b8.json; --cases vae --out $OUT/wan_vae.json;
    --cases dit-remat --out $OUT/wan_remat.json)
    python3 experiments/bench/wan_compare.py --report wan_fwd.json wan_b8.json wan_vae.json wan_remat.json

``--cases`` takes case names, groups (``all``, ``dit``, ``dit-fwd``, ``dit-train``, ``dit-b8``, ``dit-remat``,
``vae``, ``jax``, ``torch``; ``extra``, not in ``all``) and shell globs, comma-separated (``--list``).
``--budget-s`` (default 560) skips cases that would start after it and bounds each case by what is left, so
one command stays inside the device's 10-minute limit; the JSON (and a .md of the tables) is rewritten after
every case. ``--report A.json B.json`` merges runs into one table.
``--tiny`` shrinks widths, depth and shapes to run end to end on a CPU (checks the script, not speed).
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import functools
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import traceback

REPO = pathlib.Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from jaxsora import flops  # noqa: E402  (pure Python: imports neither jax nor torch)

GIB = 2**30
BIG, SMALL = (21, 60, 104), (5, 32, 32)  # latent frames x height x width (480p x 81 frames; a small clip)
TINY_SHAPES = {BIG: (3, 8, 12), SMALL: (2, 4, 4)}
TEXT_TOKENS = 512
VAE_FRAMES = 17
VAE_SIZES = {"256": (256, 256), "720": (720, 1280)}  # (height, width)
TINY_VAE = {"256": (32, 32), "720": (40, 64)}

# Wan 2.1 T2V 1.3B (diffusers WanTransformer3DModel keyword arguments).
WAN_DIT = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=12,
    attention_head_dim=128,
    in_channels=16,
    out_channels=16,
    text_dim=4096,
    freq_dim=256,
    ffn_dim=8960,
    num_layers=30,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    image_dim=None,
    added_kv_proj_dim=None,
)
TINY_DIT = dict(num_attention_heads=2, attention_head_dim=32, text_dim=32, ffn_dim=128, num_layers=2)


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    side: str  # jax | torch
    work: str  # forward | train | train+remat | vae
    shape: tuple[int, ...] = ()  # latent (F, H, W), or the VAE size key
    batch: int = 1
    impl: str = ""  # jaxsora | jaxsora remat=... | diffusers eager | diffusers compile | ...
    remat: str = "none"  # jax
    params: str = "float32"  # jax training: dtype of params and Adam state (diffusers' run: bfloat16)
    scan: bool | None = None  # jax: dit.scan (None: the preset's, scanned); --jax-dit scan=... overrides both
    compile: str = ""  # torch: "" (eager) | regional | full
    checkpointing: bool = False  # torch
    groups: tuple[str, ...] = ()


def _cases() -> list[Case]:
    """In the order they run (most wanted first)."""
    out = []
    for shape, tag in ((BIG, "big"), (SMALL, "small")):
        g = ("dit", "dit-fwd")
        out.append(Case(f"jax-fwd-{tag}", "jax", "forward", shape, 1, "jaxsora", groups=g))
        out.append(Case(f"torch-eager-fwd-{tag}", "torch", "forward", shape, 1, "diffusers eager", groups=g))
        out.append(
            Case(
                f"torch-compile-fwd-{tag}",
                "torch",
                "forward",
                shape,
                1,
                "diffusers compile",
                compile="regional",
                groups=g,
            )
        )
        out.append(
            Case(
                f"torch-compilefull-fwd-{tag}",
                "torch",
                "forward",
                shape,
                1,
                "diffusers compile(full)",
                compile="full",
                groups=("extra",),
            )
        )
    g = ("dit", "dit-train", "dit-b8")
    out.append(Case("jax-train-small-b8", "jax", "train", SMALL, 8, "jaxsora", groups=g))
    out.append(
        Case(
            "jax-train-small-b8-bf16",
            "jax",
            "train",
            SMALL,
            8,
            "jaxsora, bf16 params+Adam",
            params="bfloat16",
            groups=g,
        )
    )
    # The 30 blocks as a Python loop: no per-layer stacking of residuals (NOTES.md item 8); ~70 s to compile.
    for params, suffix, impl in (
        ("float32", "", "jaxsora"),
        ("bfloat16", "-bf16", "jaxsora, bf16 params+Adam"),
    ):
        out.append(
            Case(
                f"jax-train-small-b8{suffix}-unrolled",
                "jax",
                "train",
                SMALL,
                8,
                f"{impl}, unrolled",
                params=params,
                scan=False,
                groups=g,
            )
        )
    for policy in ("dots", "save_attention"):
        out.append(
            Case(
                f"jax-train-small-b8-remat-{policy}",
                "jax",
                "train",
                SMALL,
                8,
                f"jaxsora remat={policy}",
                remat=policy,
                groups=("extra",),
            )
        )
    out.append(Case("torch-eager-train-small-b8", "torch", "train", SMALL, 8, "diffusers eager", groups=g))
    out.append(
        Case(
            "torch-compile-train-small-b8",
            "torch",
            "train",
            SMALL,
            8,
            "diffusers compile",
            compile="regional",
            groups=g,
        )
    )
    out.append(
        Case(
            "torch-compilefull-train-small-b8",
            "torch",
            "train",
            SMALL,
            8,
            "diffusers compile(full)",
            compile="full",
            groups=("extra",),
        )
    )
    g = ("dit", "dit-train", "dit-remat")
    for policy in ("save_attention", "dots_no_batch", "full"):
        out.append(
            Case(
                f"jax-train-big-remat-{policy}",
                "jax",
                "train+remat",
                BIG,
                1,
                f"jaxsora remat={policy}",
                remat=policy,
                groups=g,
            )
        )
    out.append(
        Case(
            "torch-eager-train-big-gc",
            "torch",
            "train+remat",
            BIG,
            1,
            "diffusers eager, checkpointing",
            checkpointing=True,
            groups=g,
        )
    )
    out.append(
        Case(
            "torch-eager-train-big-nogc",
            "torch",
            "train+remat",
            BIG,
            1,
            "diffusers eager, no checkpointing",
            groups=g,
        )
    )
    out.append(
        Case("jax-train-big-noremat", "jax", "train+remat", BIG, 1, "jaxsora remat=none", groups=("extra",))
    )
    out.append(
        Case(
            "torch-compile-train-big-gc",
            "torch",
            "train+remat",
            BIG,
            1,
            "diffusers compile, checkpointing",
            compile="regional",
            checkpointing=True,
            groups=("extra",),
        )
    )
    for size in VAE_SIZES:
        out.append(Case(f"jax-vae-{size}", "jax", "vae", (size,), 1, "jaxsora", groups=("vae",)))
        out.append(Case(f"torch-vae-{size}", "torch", "vae", (size,), 1, "diffusers", groups=("vae",)))
    return out


CASES = {c.name: c for c in _cases()}


def select(spec: str) -> list[Case]:
    chosen = set()
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item == "all":
            hit = {c.name for c in CASES.values() if "extra" not in c.groups}
        elif item in ("jax", "torch"):
            hit = {c.name for c in CASES.values() if c.side == item and "extra" not in c.groups}
        else:
            hit = {c.name for c in CASES.values() if item in c.groups or fnmatch.fnmatch(c.name, item)}
        if not hit:
            raise SystemExit(f"--cases: {item!r} names no case; cases: {', '.join(CASES)}")
        chosen |= hit
    return [c for c in CASES.values() if c.name in chosen]


def latent_shape(case: Case, tiny: bool) -> tuple[int, int, int]:
    return TINY_SHAPES[case.shape] if tiny else case.shape


def text_tokens(tiny: bool) -> int:
    return 16 if tiny else TEXT_TOKENS


def wan_kwargs(tiny: bool) -> dict:
    return {**WAN_DIT, **(TINY_DIT if tiny else {})}


def model_flops(case: Case, tiny: bool) -> float:
    """The one count both sides use: Wan's forward (x3 for a training step)."""
    kw = wan_kwargs(tiny)
    f = flops.wan_forward_flops(
        case.batch,
        latent_shape(case, tiny),
        text_tokens(tiny),
        patch_size=kw["patch_size"],
        in_channels=kw["in_channels"],
        out_channels=kw["out_channels"],
        num_layers=kw["num_layers"],
        num_heads=kw["num_attention_heads"],
        head_dim=kw["attention_head_dim"],
        ffn_dim=kw["ffn_dim"],
        text_dim=kw["text_dim"],
    )
    return f if case.work == "forward" else 3.0 * f


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def is_oom(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}"
    return any(
        s in text for s in ("RESOURCE_EXHAUSTED", "OutOfMemoryError", "out of memory", "Out of memory")
    )


# -- jaxsora ----------------------------------------------------------------------------------------------


def _jax_setup():
    import jax

    return jax


def random_like_tree(tree, seed: int, dtype=None):
    """Random values of ``tree``'s shapes (normal * 0.02; 'scale' leaves 1 + that), generated on device.

    One small jit per distinct (shape, dtype, scale) rather than one over the whole tree: an unrolled model
    (``--jax-dit scan=false``) has ~20 leaves per block, and a single jit of 600 random draws did not compile
    in 560 s on an H100 (XLA's "Very slow compile" warning for ``jit_make``)."""
    import jax
    import jax.numpy as jnp

    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    out = []
    for i, (path, leaf) in enumerate(leaves):
        key = jax.random.fold_in(jax.random.key(seed), i)
        scale = "scale" in jax.tree_util.keystr(path)
        out.append(_random_leaf_fn()(key, tuple(leaf.shape), jnp.dtype(dtype or leaf.dtype), scale))
    return jax.tree_util.tree_unflatten(treedef, out)


@functools.cache
def _random_leaf_fn():
    import jax
    import jax.numpy as jnp

    def make(key, shape, dtype, scale):
        x = 0.02 * jax.random.normal(key, shape, jnp.float32)
        return (1.0 + x if scale else x).astype(dtype)

    return jax.jit(make, static_argnums=(1, 2, 3))


def jax_device_info() -> dict:
    import jax

    d = jax.devices()[0]
    return {"device": d.device_kind, "jax": jax.__version__, "backend": jax.default_backend()}


def jax_peak_gib():
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return stats["peak_bytes_in_use"] / GIB if "peak_bytes_in_use" in stats else None


def jax_dit_config(args, remat: str, scan: bool | None = None):
    from jaxsora.config import load_config
    from jaxsora.models.dit import DiTConfig

    config = load_config(str(REPO / "configs" / "wan13b_shape.py"))
    section = dict(config.dit)
    section["remat"] = remat
    if scan is not None:
        section["scan"] = scan
    for item in args.jax_dit:
        key, _, value = item.partition("=")
        if key not in section:
            raise SystemExit(f"--jax-dit {item!r}: dit has no {key!r} (keys: {', '.join(section)})")
        default = section[key]
        section[key] = (
            (value.lower() in ("1", "true", "yes")) if isinstance(default, bool) else type(default)(value)
        )
    kw = wan_kwargs(args.tiny)
    if args.tiny:
        section.update(
            width=kw["num_attention_heads"] * kw["attention_head_dim"],
            depth=kw["num_layers"],
            num_heads=kw["num_attention_heads"],
            head_dim=kw["attention_head_dim"],
            mlp_dim=kw["ffn_dim"],
        )
    pt, ph, pw = kw["patch_size"]
    return DiTConfig(
        **section, patch_dim=pt * ph * pw * kw["in_channels"], text_dim=kw["text_dim"], max_segments=1
    )


def run_jax_dit(case: Case, args) -> dict:
    jax = _jax_setup()
    import flax.linen as nn
    import jax.numpy as jnp
    import numpy as np
    import optax

    from jaxsora.models.dit import DiT
    from jaxsora.patching import grid_positions
    from jaxsora.train.optim import make_unscaled_optimizer

    cfg = jax_dit_config(args, case.remat, case.scan)
    f, h, w = latent_shape(case, args.tiny)
    b, lt = case.batch, text_tokens(args.tiny)
    grid = (f, h // 2, w // 2)
    n = int(np.prod(grid))
    ours = flops.dit_forward_flops(cfg, [n] * b, [lt] * b) * (1 if case.work == "forward" else 3)
    theirs = model_flops(case, args.tiny)
    if abs(ours / theirs - 1) > 0.03:
        raise AssertionError(f"FLOP counts disagree: dit_forward_flops {ours:.4g} vs wan {theirs:.4g}")
    model = DiT(cfg)
    k = jax.random.split(jax.random.key(0), 5)
    tokens = jax.random.normal(k[0], (b, n, cfg.patch_dim), jnp.float32)
    t = jax.random.uniform(k[1], (b,), jnp.float32)
    positions = jnp.broadcast_to(jnp.asarray(grid_positions(grid)), (b, n, 3))
    text = jax.random.normal(k[2], (b, lt, cfg.text_dim), jnp.float32)
    shapes = jax.eval_shape(
        lambda: nn.meta.unbox(
            model.init(k[3], tokens[:1, :4], t[:1], positions[:1, :4], text[:1, :4])["params"]
        )
    )
    result = {"params": int(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes))), "flops_ours": ours}

    if case.work == "forward":
        params = random_like_tree(shapes, 1, jnp.dtype(args.jax_infer_params))
        fn = jax.jit(lambda p, x, t, pos, txt: model.apply({"params": p}, x, t, pos, txt))
        call_args = (params, tokens, t, positions, text)

        def call(compiled):
            return compiled(*call_args)

    else:
        target = jax.random.normal(k[4], (b, n, cfg.patch_dim), jnp.float32)
        from jaxsora.config import load_config

        opt_cfg = load_config(str(REPO / "configs" / "wan13b_shape.py")).train.optim
        tx = make_unscaled_optimizer(opt_cfg)
        lr = jnp.float32(1e-5)
        params = random_like_tree(shapes, 1, jnp.dtype(case.params))
        state = {"params": params, "opt": jax.jit(tx.init)(params)}
        if args.jax_ema:
            state["ema"] = jax.tree.map(jnp.copy, params)

        def loss_fn(p, x, t, pos, txt, y):
            v = model.apply({"params": p}, x, t, pos, txt)
            return jnp.mean(jnp.square(v - y))

        def step(state, x, t, pos, txt, y):
            loss, grads = jax.value_and_grad(loss_fn)(state["params"], x, t, pos, txt, y)
            updates, opt = tx.update(grads, state["opt"], state["params"])
            new_params = optax.apply_updates(state["params"], jax.tree.map(lambda u: -lr * u, updates))
            new = {"params": new_params, "opt": opt}
            if "ema" in state:
                new["ema"] = jax.tree.map(lambda e, p: e + 0.001 * (p - e), state["ema"], new_params)
            return new, loss

        fn = jax.jit(step, donate_argnums=0)
        holder = {"state": state}
        call_args = (state, tokens, t, positions, text, target)

        def call(compiled):
            holder["state"], loss = compiled(holder["state"], tokens, t, positions, text, target)
            return loss

    t0 = time.perf_counter()
    compiled = fn.lower(*call_args).compile()
    result["compile_s"] = time.perf_counter() - t0
    for _ in range(args.warmup):
        jax.block_until_ready(call(compiled))
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        jax.block_until_ready(call(compiled))
        times.append(time.perf_counter() - t0)
    result.update(step_s=median(times), times=times)
    if args.profile:
        import gpu_profile

        summary = gpu_profile.profile(
            lambda: jax.block_until_ready(call(compiled)),
            calls=3,
            log_dir=str(pathlib.Path(args.profile) / case.name),
            device_match="CPU" if args.tiny else "GPU",
            hlo_text=compiled.as_text(),  # kernels summed per source scope (block part, forward/backward)
        )
        result["profile"] = summary
        print(f"[{case.name}] profile\n{gpu_profile.format_summary(summary)}", flush=True)
    return result


def run_jax_vae(case: Case, args) -> dict:
    jax = _jax_setup()
    import flax.linen as nn
    import jax.numpy as jnp
    import numpy as np

    from jaxsora.config import load_config
    from jaxsora.models.vae import VAE, VAEConfig
    from jaxsora.models.vae_codec import VideoCodec

    config = load_config(str(REPO / "configs" / "vae_synthetic.py"))
    cfg = VAEConfig.from_config(config.vae)
    height, width = (TINY_VAE if args.tiny else VAE_SIZES)[case.shape[0]]
    frames = 5 if args.tiny else VAE_FRAMES
    tf, sf = cfg.temporal_factor, cfg.spatial_factor
    k = jax.random.split(jax.random.key(0), 3)
    sample = jnp.zeros((1, 1 + tf, 2 * sf, 2 * sf, 3), jnp.float32)
    shapes = jax.eval_shape(
        lambda: nn.meta.unbox(VAE(cfg).init({"params": k[0], "noise": k[1]}, sample)["params"])
    )
    params = random_like_tree(shapes, 2, jnp.dtype(args.jax_infer_params))
    codec = VideoCodec(cfg, params)
    video = jax.random.uniform(k[2], (1, frames, height, width, 3), jnp.float32, -1.0, 1.0)
    lat = (1, 1 + (frames - 1) // tf, height // sf, width // sf, cfg.latent_channels)
    z = jax.random.normal(k[2], lat, jnp.float32)
    result = {"params": int(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes))), "frames": frames}
    result["height"], result["width"] = height, width
    for op, fn, x in (("encode", codec.encode, video), ("decode", codec.decode, z)):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(x))
        first = time.perf_counter() - t0
        for _ in range(args.warmup - 1):
            jax.block_until_ready(fn(x))
        times = []
        for _ in range(args.vae_repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(x))
            times.append(time.perf_counter() - t0)
        result[f"{op}_s"] = median(times)
        result[f"{op}_fps"] = frames / median(times)
        result[f"{op}_compile_s"] = max(first - median(times), 0.0)
        # peak_bytes_in_use cannot be reset: after encode it is encode's peak; after decode it is the larger
        # of the two (decode's own peak is exact when it is the larger; otherwise it is at most that).
        result[f"{op}_peak_gib"] = jax_peak_gib()
    if result["decode_peak_gib"] is not None and result["decode_peak_gib"] <= result["encode_peak_gib"]:
        result["decode_peak_note"] = "<= (not above encode's peak)"
    return result


# -- diffusers --------------------------------------------------------------------------------------------


def _torch_setup():
    for p in os.environ.get("BENCH_EXTRA_SITE", "").split(os.pathsep):
        if p and p not in sys.path:
            sys.path.append(p)  # fallbacks only: the image's own packages come first
    import torch

    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch, dev


def torch_device_info() -> dict:
    import diffusers
    import torch

    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {"device": name, "torch": torch.__version__, "diffusers": diffusers.__version__}


def torch_sync(torch, dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def torch_peak_gib(torch, dev):
    return torch.cuda.max_memory_allocated() / GIB if dev.type == "cuda" else None


def cast_as_from_pretrained(module, dtype):
    """Params to ``dtype`` except those diffusers' ``from_pretrained(torch_dtype=...)`` keeps in float32
    (``_keep_in_fp32_modules``: for Wan's DiT the rotary table, time embedder, modulation tables and norms);
    buffers stay as built (float32), as they do there."""
    keep = getattr(module, "_keep_in_fp32_modules", None) or []
    for name, p in module.named_parameters():
        if not any(k in name.split(".") for k in keep):
            p.data = p.data.to(dtype)
    return module


def randomize_(torch, module):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.02 * torch.randn_like(p))


def run_torch_dit(case: Case, args) -> dict:
    torch, dev = _torch_setup()
    from diffusers import WanTransformer3DModel

    kw = wan_kwargs(args.tiny)
    f, h, w = latent_shape(case, args.tiny)
    b, lt = case.batch, text_tokens(args.tiny)
    dtype = torch.bfloat16
    with dev:  # built on the device: no 5.7 GB host init
        model = cast_as_from_pretrained(WanTransformer3DModel(**kw), dtype)
    randomize_(torch, model)
    result = {"params": int(sum(p.numel() for p in model.parameters()))}
    if case.checkpointing:
        model.enable_gradient_checkpointing()
    model.train(case.work != "forward")
    runner = model
    if case.compile == "regional":
        model.compile_repeated_blocks()
    elif case.compile == "full":
        runner = torch.compile(model)
    x = torch.randn(b, kw["in_channels"], f, h, w, device=dev, dtype=dtype)
    t = torch.rand(b, device=dev) * 1000.0
    text = torch.randn(b, lt, kw["text_dim"], device=dev, dtype=dtype)

    if case.work == "forward":

        def call():
            with torch.inference_mode():
                return runner(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0]

    else:
        target = torch.randn(b, kw["out_channels"], f, h, w, device=dev, dtype=torch.float32)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.0, fused=dev.type == "cuda")

        def call():
            out = runner(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0]
            loss = torch.nn.functional.mse_loss(out.float(), target)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss

    first = []
    for _ in range(max(args.warmup, 2 if case.compile else 1)):
        t0 = time.perf_counter()
        call()
        torch_sync(torch, dev)
        first.append(time.perf_counter() - t0)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        call()
        torch_sync(torch, dev)
        times.append(time.perf_counter() - t0)
    result.update(step_s=median(times), times=times, first_call_s=first[0])
    result["compile_s"] = max(first[0] - median(times), 0.0) if case.compile else None
    return result


def run_torch_vae(case: Case, args) -> dict:
    torch, dev = _torch_setup()
    from diffusers import AutoencoderKLWan

    height, width = (TINY_VAE if args.tiny else VAE_SIZES)[case.shape[0]]
    frames = 5 if args.tiny else VAE_FRAMES
    vae_kw = {"base_dim": 16} if args.tiny else {}
    with dev:
        vae = cast_as_from_pretrained(AutoencoderKLWan(**vae_kw), torch.bfloat16).eval()
    randomize_(torch, vae)
    zc = vae.config.z_dim
    video = torch.rand(1, 3, frames, height, width, device=dev, dtype=torch.bfloat16) * 2 - 1
    z = torch.randn(1, zc, 1 + (frames - 1) // 4, height // 8, width // 8, device=dev, dtype=torch.bfloat16)
    result = {"params": int(sum(p.numel() for p in vae.parameters())), "frames": frames}
    result["height"], result["width"] = height, width
    ops = (
        ("encode", lambda: vae.encode(video).latent_dist.mean),
        ("decode", lambda: vae.decode(z).sample),
    )
    for op, fn in ops:
        if dev.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        with torch.inference_mode():
            t0 = time.perf_counter()
            fn()
            torch_sync(torch, dev)
            first = time.perf_counter() - t0
            for _ in range(args.warmup - 1):
                fn()
            torch_sync(torch, dev)
            times = []
            for _ in range(args.vae_repeats):
                t0 = time.perf_counter()
                fn()
                torch_sync(torch, dev)
                times.append(time.perf_counter() - t0)
        result[f"{op}_s"] = median(times)
        result[f"{op}_fps"] = frames / median(times)
        result[f"{op}_compile_s"] = max(first - median(times), 0.0)
        result[f"{op}_peak_gib"] = torch_peak_gib(torch, dev)
    return result


# -- one case (child process) -----------------------------------------------------------------------------


def run_case(case: Case, args) -> dict:
    row = case_row(case, args.tiny)
    if case.side == "jax" and case.work != "vae" and args.jax_dit:
        row["impl"] += f" ({', '.join(args.jax_dit)})"
    t0 = time.perf_counter()
    try:
        if case.side == "jax":
            fn = run_jax_vae if case.work == "vae" else run_jax_dit
        else:
            fn = run_torch_vae if case.work == "vae" else run_torch_dit
        row.update(fn(case, args))
        row["status"] = "ok"
    except Exception as exc:  # noqa: BLE001  (a case's failure is a result: OOM, or the error)
        row["status"] = "OOM" if is_oom(exc) else "error"
        row["error"] = f"{type(exc).__name__}: {str(exc)[:2000]}"
        if row["status"] == "error":
            traceback.print_exc()
    try:
        row.update(jax_device_info() if case.side == "jax" else torch_device_info())
        if case.side == "jax":
            row.setdefault("peak_gib", jax_peak_gib())
        else:
            import torch

            dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            row.setdefault("peak_gib", torch_peak_gib(torch, dev))
    except Exception as exc:  # noqa: BLE001
        row["info_error"] = repr(exc)
    row["case_wall_s"] = time.perf_counter() - t0
    if row.get("step_s"):
        row["tflops"] = row["model_flops"] / row["step_s"] / 1e12
        row["mfu"] = row["tflops"] / args.peak_tflops
    return row


def case_row(case: Case, tiny: bool) -> dict:
    row = {"case": case.name, "side": case.side, "work": case.work, "impl": case.impl, "batch": case.batch}
    if case.work == "vae":
        h, w = (TINY_VAE if tiny else VAE_SIZES)[case.shape[0]]
        row["shape"] = f"{w}x{h}"
        row["frames"] = 5 if tiny else VAE_FRAMES
    else:
        f, h, w = latent_shape(case, tiny)
        row["shape"] = f"{f}x{h}x{w}"
        row["tokens"] = case.batch * f * (h // 2) * (w // 2)
        row["model_flops"] = model_flops(case, tiny)
    return row


# -- the parent: subprocess per case, tables ----------------------------------------------------------------


def child_env(case: Case) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    if case.side == "jax":
        # jax preallocates 75% of the GPU by default; give it what torch may use, for the same OOM line.
        env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.95")
    return env


def run_all(cases: list[Case], args, passthrough: list[str]) -> list[dict]:
    rows = []
    start = time.perf_counter()
    header = {"argv": sys.argv[1:], "peak_tflops": args.peak_tflops, "tiny": args.tiny}
    for case in cases:
        left = args.budget_s - (time.perf_counter() - start) if args.budget_s else None
        if left is not None and left < 20:
            row = case_row(case, args.tiny)
            row.update(status="skipped", error=f"time budget ({args.budget_s:.0f} s) spent")
            rows.append(row)
            print(f"[wan_compare] {case.name}: skipped (budget)", flush=True)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = pathlib.Path(tmp) / "row.json"
            cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--case", case.name]
            cmd += ["--result", str(out), *passthrough]
            print(f"[wan_compare] {case.name} ...", flush=True)
            t0 = time.perf_counter()
            try:
                proc = subprocess.run(cmd, env=child_env(case), timeout=left, check=False)
                rc = proc.returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
            if out.is_file():
                row = json.loads(out.read_text())
            else:
                row = case_row(case, args.tiny)
                row.update(status="error", error=f"child ended without a result (rc={rc})")
                if rc == "timeout":
                    row.update(status="timeout", error=f"killed after {left:.0f} s (budget)")
            row["subprocess_s"] = time.perf_counter() - t0
        rows.append(row)
        print(f"[wan_compare] {case.name}: {summary(row)}", flush=True)
        if args.out:
            write_json(args.out, header, rows)
    return rows


def write_json(path: str, header: dict, rows: list[dict]) -> None:
    """The rows as JSON and the tables as markdown beside it (``.md``)."""
    p = pathlib.Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({**header, "rows": rows}, indent=1))
    p.with_suffix(".md").write_text(tables(rows, header["peak_tflops"]) + "\n")


def summary(row: dict) -> str:
    if row.get("status") != "ok":
        return f"{row.get('status')}: {str(row.get('error', ''))[:300]}"
    if row["work"] == "vae":
        return f"encode {row['encode_fps']:.1f} fps, decode {row['decode_fps']:.1f} fps"
    peak = row.get("peak_gib")
    return f"{row['step_s']:.4f} s, {row['tflops']:.4g} TFLOP/s" + (f", {peak:.1f} GiB" if peak else "")


def _fmt(x, spec, missing="-"):
    return missing if x is None else format(x, spec)


def dit_table(rows: list[dict], peak_tflops: float) -> str:
    lines = [
        "| work | latent shape | B | implementation | step s (median) | compile s | model TFLOP/s | MFU | "
        "peak GiB | vs best diffusers |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    dit = [r for r in rows if r["work"] != "vae"]
    for r in dit:
        ratio = ""
        if r["side"] == "jax" and r.get("status") == "ok":
            peers = [
                p
                for p in dit
                if p["side"] == "torch"
                and p.get("status") == "ok"
                and (p["work"], p["shape"], p["batch"]) == (r["work"], r["shape"], r["batch"])
            ]
            if peers:
                best = min(peers, key=lambda p: p["step_s"])
                ratio = f"{best['step_s'] / r['step_s']:.2f}x ({best['impl'].replace('diffusers ', '')})"
        if r.get("status") == "ok":
            cells = [
                f"{r['step_s']:.4f}",
                _fmt(r.get("compile_s"), ".1f"),
                f"{r['tflops']:.1f}" if r["tflops"] >= 1 else f"{r['tflops']:.3g}",
                f"{100 * r['tflops'] / peak_tflops:.3g}%",
                _fmt(r.get("peak_gib"), ".1f"),
            ]
        else:
            cells = [r.get("status", "?").replace("|", "/"), "", "", "", ""]
        lines.append(
            f"| {r['work']} | {r['shape']} | {r['batch']} | {r['impl']} | "
            + " | ".join(cells)
            + f" | {ratio} |"
        )
    return "\n".join(lines)


def vae_table(rows: list[dict]) -> str:
    lines = [
        "| frames x size | implementation | encode frames/s | decode frames/s | encode peak GiB | "
        "decode peak GiB | first call - median s (enc/dec) | jaxsora / diffusers (enc, dec) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    vae = [r for r in rows if r["work"] == "vae"]
    for r in vae:
        label = f"{r.get('frames', VAE_FRAMES)} x {r['shape']}"
        if r.get("status") != "ok":
            lines.append(f"| {label} | {r['impl']} | {r.get('status')} | | | | | |")
            continue
        ratio = ""
        if r["side"] == "jax":
            peer = [
                p
                for p in vae
                if p["side"] == "torch" and p.get("status") == "ok" and p["shape"] == r["shape"]
            ]
            if peer:
                p = peer[0]
                ratio = f"{r['encode_fps'] / p['encode_fps']:.2f}x, {r['decode_fps'] / p['decode_fps']:.2f}x"
        dec_peak = _fmt(r.get("decode_peak_gib"), ".2f")
        if r.get("decode_peak_note") and dec_peak != "-":
            dec_peak = "<= " + dec_peak
        lines.append(
            f"| {label} | {r['impl']} | {r['encode_fps']:.1f} | {r['decode_fps']:.1f} | "
            f"{_fmt(r.get('encode_peak_gib'), '.2f')} | {dec_peak} | "
            f"{r['encode_compile_s']:.1f} / {r['decode_compile_s']:.1f} | {ratio} |"
        )
    return "\n".join(lines)


def tables(rows: list[dict], peak_tflops: float) -> str:
    parts = []
    devices = sorted(
        {f"{r.get('device')} ({r.get('jax') or r.get('torch')})" for r in rows if r.get("device")}
    )
    if devices:
        parts.append("devices: " + "; ".join(devices))
    if any(r["work"] != "vae" for r in rows):
        parts.append(dit_table(rows, peak_tflops))
    if any(r["work"] == "vae" for r in rows):
        parts.append(vae_table(rows))
    failed = [r for r in rows if r.get("status") not in ("ok", "OOM")]
    for r in failed:
        parts.append(f"- {r['case']}: {r.get('status')}: {str(r.get('error', ''))[:300]}")
    return "\n\n".join(parts)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default="all", help="names, groups, globs (comma-separated); see the docstring")
    p.add_argument("--out", default="", help="write the rows as JSON here (rewritten after every case)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per case (the median is reported)")
    p.add_argument(
        "--warmup", type=int, default=1, help="untimed calls after compiling (torch.compile: >= 2)"
    )
    p.add_argument("--vae-repeats", type=int, default=10)
    p.add_argument("--peak-tflops", type=float, default=745.0, help="MFU denominator (bf16 matmul ceiling)")
    p.add_argument(
        "--budget-s", type=float, default=560.0, help="skip cases past this many seconds (0: none)"
    )
    p.add_argument("--jax-infer-params", default="bfloat16", help="param dtype of jaxsora's inference cases")
    p.add_argument(
        "--jax-ema", action="store_true", help="keep an f32 EMA in jaxsora's step (as the trainer)"
    )
    p.add_argument(
        "--jax-dit",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override configs/wan13b_shape.py's dit section in jaxsora's DiT cases (e.g. scan=false)",
    )
    p.add_argument(
        "--profile",
        default="",
        help="jaxsora DiT cases: profile 3 steps into DIR/<case> and summarise kernels",
    )
    p.add_argument("--tiny", action="store_true", help="tiny widths and shapes (CPU check of the script)")
    p.add_argument("--list", action="store_true", help="list the cases and groups")
    p.add_argument("--report", nargs="+", metavar="JSON", help="merge these results into one table and exit")
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.case:  # child: one case, its row to --result
        row = run_case(CASES[args.case], args)
        pathlib.Path(args.result).write_text(json.dumps(row))
        return
    if args.list:
        for c in CASES.values():
            print(f"{c.name:36s} {c.work:12s} {c.impl:36s} groups: {', '.join(c.groups)}")
        return
    if args.report:
        rows, peak = [], args.peak_tflops
        for path in args.report:
            data = json.loads(pathlib.Path(path).read_text())
            rows += data["rows"]
            peak = data.get("peak_tflops", peak)
        order = {name: i for i, name in enumerate(CASES)}
        rows.sort(key=lambda r: order.get(r["case"], len(order)))
        print(tables(rows, peak))
        return
    if args.steps < 10 and not args.tiny:
        print("[wan_compare] note: fewer than 10 timed steps per case", flush=True)
    cases = select(args.cases)
    passthrough = [
        f"--steps={args.steps}",
        f"--warmup={args.warmup}",
        f"--vae-repeats={args.vae_repeats}",
        f"--peak-tflops={args.peak_tflops}",
        f"--jax-infer-params={args.jax_infer_params}",
    ]
    passthrough += ["--tiny"] * args.tiny + ["--jax-ema"] * args.jax_ema
    passthrough += [f"--profile={args.profile}"] * bool(args.profile)
    passthrough += [f"--jax-dit={item}" for item in args.jax_dit]
    rows = run_all(cases, args, passthrough)
    text = tables(rows, args.peak_tflops)
    print(text)
    if args.out:
        write_json(args.out, {"argv": sys.argv[1:], "peak_tflops": args.peak_tflops, "tiny": args.tiny}, rows)


if __name__ == "__main__":
    main()
