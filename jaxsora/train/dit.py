"""Training the diffusion transformer on a latent dataset: ``jaxsora train --config ... --workdir runs/dit``.

Packed batches (:mod:`jaxsora.data.packing`) of VAE latents from ``jaxsora encode`` are normalised per latent
channel (statistics of the clips read, from the dataset's meta.json, passed to the step with each batch, so that
the step can compile before they are known: ``train.wait_for_latents_s`` starts the trainer beside the encode
that writes them, and ``train.start_with_parts`` trains on its first finished parts, with theirs:
:mod:`jaxsora.train.latent_feed`), noised along the rectified-flow path with per-clip times and given-frame conditioning
(:mod:`jaxsora.diffusion`), and the DiT (plus the jointly trained text encoder, over byte or hashed-word tokens)
learns the velocity. One jit-compiled train step with explicit in/out shardings over the mesh (data, fsdp,
tensor, sequence) from the config; AdamW with warm-up + cosine, clipping, EMA; Orbax async checkpoints with the
data iterator; SIGTERM saves and stops; TensorBoard scalars and periodic sample videos.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import pathlib
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxsora import diffusion, parallel
from jaxsora.data.latents import LatentDataset, LatentView, finished_view, read_meta, wait_for_meta
from jaxsora.data.packing import packed_dataset
from jaxsora.models.dit import DiT, DiTConfig
from jaxsora.models.text import drop_captions, make_text_encoder, pack_states
from jaxsora.train import metrics as metrics_lib
from jaxsora.train.checkpoint import Checkpointer, abstract_with_shardings, save_config
from jaxsora.train.latent_feed import LatentFeed
from jaxsora.train.loop import (
    AheadCompiledStep,
    DispatchWindow,
    PreemptionGuard,
    Progress,
    TrainStateLayout,
    signature,
)
from jaxsora.train.optim import ema_update, lr_at, make_unscaled_optimizer

log = logging.getLogger(__name__)

# The fields of a packed batch the train step reads (the rest stay on the host).
BATCH_KEYS = ("tokens", "segment_ids", "positions", "text_tokens", "text_mask", "text_segment_ids", "grid")
# Beside them, the latent channels' statistics ([C] float32, replicated): inputs of the step, not constants in it.
STATS_KEYS = ("latent_mean", "latent_std")


@flax.struct.dataclass
class DiTTrainState:
    step: jax.Array
    params: Any  # {"dit": ..., "text": ...}
    opt_state: Any
    ema_params: Any


def read_latent_meta(folder: str | pathlib.Path, *, allow_incomplete: bool = False) -> dict:
    if not (pathlib.Path(folder) / "meta.json").is_file():
        raise FileNotFoundError(
            f"{pathlib.Path(folder) / 'meta.json'} not found: --config.train.latents must name a latent dataset "
            "made by `jaxsora encode` (or set --config.train.wait_for_latents_s to wait for one being made)"
        )
    return read_meta(folder, allow_incomplete=allow_incomplete)


class DiTParts:
    """The text encoder, DiT, flow settings and optimiser a config + latent meta describe."""

    def __init__(self, config: ml_collections.ConfigDict, meta: dict):
        self.config = config
        self.meta = meta
        self.channels = int(meta["latent_channels"])
        self.patch = tuple(int(p) for p in config.patch)
        patch_voxels = int(np.prod(self.patch))
        self.text = make_text_encoder(config)
        self.cfg = DiTConfig.from_config(
            config.dit,
            patch_dim=patch_voxels * self.channels,
            text_dim=self.text.width,
            max_segments=config.packing.max_clips_per_pack,
        )
        self.model = DiT(self.cfg)
        self.flow = diffusion.FlowConfig.from_config(config.diffusion)
        # AdamW (or Muon) without its rate: the step scales updates by the host's rate (lr_at), so the cosine decay
        # can follow the steps or, for time-boxed runs (train.schedule="time"), the fraction of time_limit_s used.
        opt = config.train.optim
        # Muon reads which leaves are matrices from their logical axis names: the parameters' shapes, boxed
        boxed = jax.eval_shape(self.init_params, jax.random.key(0)) if opt.get("kind") == "muon" else None
        self.tx = make_unscaled_optimizer(opt, boxed)
        if not self.text.trainable:  # a pretrained encoder stays frozen (no optimiser state either)
            self.tx = optax.multi_transform(
                {"train": self.tx, "frozen": optax.set_to_zero()},
                lambda params: {
                    "dit": jax.tree.map(lambda _: "train", params["dit"]),
                    "text": jax.tree.map(lambda _: "frozen", params["text"]),
                },
            )
        self.set_stats(meta)
        self.empty = self.text.empty()

    def set_stats(self, meta: dict) -> None:
        """The latent channels' mean and std from a dataset's meta (0 and 1 where it has none yet)."""
        self.latent_mean = np.asarray(meta.get("latent_mean", np.zeros(self.channels)), np.float32)
        self.latent_std = np.asarray(meta.get("latent_std", np.ones(self.channels)), np.float32)

    # -- latents <-> model tokens -------------------------------------------------------------------------
    def normalize(self, tokens, mean=None, std=None):
        """Latent tokens -> normalised ones, by ``mean``/``std`` ([C] arrays, e.g. traced inputs of a step)
        or this dataset's statistics."""
        shape = tokens.shape
        mean = self.latent_mean if mean is None else mean
        std = self.latent_std if std is None else std
        x = tokens.reshape(*shape[:-1], -1, self.channels)
        return ((x - mean) / std).reshape(shape)

    def denormalize(self, tokens):
        shape = tokens.shape
        x = tokens.reshape(*shape[:-1], -1, self.channels)
        return (x * self.latent_std + self.latent_mean).reshape(shape)

    # -- params -------------------------------------------------------------------------------------------
    def init_params(self, rng):
        k_text, k_dit = jax.random.split(rng)
        text_params = self.text.init(k_text)
        states = jnp.zeros((1, 2, self.text.width), jnp.float32)
        tokens = jnp.zeros((1, 4, self.cfg.patch_dim), jnp.float32)
        dit_params = self.model.init(k_dit, tokens, jnp.zeros((1,)), jnp.zeros((1, 4, 3), jnp.int32), states)[
            "params"
        ]
        return {"dit": dit_params, "text": text_params}

    def init(self, rng) -> DiTTrainState:
        params = self.init_params(rng)
        return DiTTrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=self.tx.init(params),
            ema_params=jax.tree.map(lambda p: p, params),
        )

    # -- forward ------------------------------------------------------------------------------------------
    def text_states(self, text_params, ids, mask, text_segment_ids):
        """Caption rows ``[B, K, L]`` -> packed text states ``[B, K*L, D]`` and their segment ids."""
        b, k, length = ids.shape
        states = self.text.apply(text_params, ids.reshape(b * k, length), mask.reshape(b * k, length))
        return pack_states(states.reshape(b, k, length, -1), mask, text_segment_ids)

    def velocity(self, params, x_t, t, batch, text_ids, text_mask, t_index=None):
        text, text_seg = self.text_states(params["text"], text_ids, text_mask, batch["text_segment_ids"])
        return self.model.apply(
            {"params": params["dit"]},
            x_t,
            t,
            batch["positions"],
            text,
            segment_ids=batch["segment_ids"],
            text_segment_ids=text_seg,
            t_index=t_index,
        )

    def loss(self, params, batch, rng):
        k_drop, k_flow = jax.random.split(rng)
        ids, mask = drop_captions(
            k_drop,
            batch["text_tokens"],
            batch["text_mask"],
            self.empty,
            self.config.diffusion.caption_dropout,
        )
        x0 = self.normalize(
            batch["tokens"].astype(jnp.float32), batch.get("latent_mean"), batch.get("latent_std")
        )
        inputs = diffusion.training_inputs(
            k_flow, x0, batch["segment_ids"], batch["positions"], batch["grid"], self.flow
        )
        if self.config.diffusion.get("time_table", False):  # one modulation per clip and time, not per token
            v = self.velocity(params, inputs.x_t, inputs.t_table, batch, ids, mask, inputs.t_index)
        else:
            v = self.velocity(params, inputs.x_t, inputs.t, batch, ids, mask)
        loss = diffusion.masked_mse(v, inputs.target, inputs.loss_mask)
        return loss, {"loss": loss, "loss_tokens": jnp.sum(inputs.loss_mask)}


def train_step(state: DiTTrainState, batch, rng, lr, *, parts: DiTParts, ema_decay: float):
    (_, aux), grads = jax.value_and_grad(parts.loss, has_aux=True)(state.params, batch, rng)
    updates, opt_state = parts.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, jax.tree.map(lambda u: -lr * u, updates))
    aux["grad_norm"] = optax.tree.norm(grads)
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        opt_state=opt_state,
        ema_params=ema_update(state.ema_params, params, ema_decay),
    )
    return new_state, aux


def loss_and_grads(params, batch, rng, *, parts: DiTParts):
    """(loss, grads) of one batch: what the mesh-equivalence test compares."""
    (loss, _), grads = jax.value_and_grad(parts.loss, has_aux=True)(params, batch, rng)
    return loss, grads


class DiTTrainer(TrainStateLayout):
    """Builds mesh, sharded state, data and the jitted step from a config; ``run()`` trains."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str | pathlib.Path):
        self.config = config
        self.tc = config.train
        self.workdir = pathlib.Path(workdir)
        if not self.tc.latents:
            raise ValueError("set --config.train.latents=<latent dataset folder from `jaxsora encode`>")
        self.t_start = (
            time.perf_counter()
        )  # with waiting, train.time_limit_s counts from here (waiting included)
        self.wait_s = float(self.tc.get("wait_for_latents_s", 0.0))
        if self.wait_s > 0:  # the encode may not have started: wait for its meta.json (VAE and channels)
            log.info("waiting up to %.0f s for the latent dataset %s", self.wait_s, self.tc.latents)
            self.meta = wait_for_meta(self.tc.latents, self.wait_s)
        else:
            self.meta = read_latent_meta(self.tc.latents)
        self.mesh = parallel.make_mesh(config.mesh.to_dict())
        dp = self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        if config.packing.batch_size % dp:
            raise ValueError(
                f"packing.batch_size={config.packing.batch_size} must be a multiple of the {dp} data-parallel "
                f"devices (data x fsdp)"
            )
        if config.packing.seq_len % self.mesh.shape["sequence"]:
            raise ValueError(
                f"packing.seq_len={config.packing.seq_len} must divide over mesh.sequence={self.mesh.shape['sequence']}"
            )
        self.parts = DiTParts(config, self.meta)
        self._step = None
        self._stats = None  # the latent statistics on the devices (put)

    def learning_rate(self, step: int, progress: float) -> float:
        """The rate for ``step``: cosine over ``train.steps``, or, when ``train.schedule == "time"``, over the
        ``progress`` fraction of the training time (from the first step to the end of ``train.time_limit_s``;
        a time-boxed run ends its decay when its time is up)."""
        tc = self.tc
        if tc.schedule not in ("steps", "time"):
            raise ValueError(f"train.schedule must be 'steps' or 'time', got {tc.schedule!r}")
        if tc.schedule == "time" and not tc.time_limit_s:
            raise ValueError("train.schedule=time needs train.time_limit_s > 0")
        return lr_at(tc.optim, step, tc.steps, progress if tc.schedule == "time" else None)

    def batch_shardings(self) -> dict:
        ndims = {"tokens": 3, "positions": 3, "text_tokens": 3, "text_mask": 3, "grid": 3}
        shardings = {k: parallel.batch_sharding(self.mesh, ndims.get(k, 2)) for k in BATCH_KEYS}
        return shardings | {k: parallel.replicated(self.mesh) for k in STATS_KEYS}

    def step_fn(self):
        """``(state, batch, rng, lr) -> (state, metrics)``: the jitted step, or the executable compiled ahead."""
        return self.ahead_step()

    def ahead_step(self) -> AheadCompiledStep:
        if self._step is None:
            self.abstract_state()  # sets self.shardings
            fn = functools.partial(train_step, parts=self.parts, ema_decay=self.tc.ema_decay)
            self._step = AheadCompiledStep(
                jax.jit(
                    fn,
                    in_shardings=(self.shardings, self.batch_shardings(), None, None),
                    out_shardings=(self.shardings, None),
                    donate_argnums=0,
                    compiler_options=parallel.compiler_options(self.config),
                )
            )
        return self._step

    def batch_spec(self) -> dict[str, jax.ShapeDtypeStruct]:
        """The shapes, dtypes and shardings of the device batch the packed pipeline emits
        (:class:`jaxsora.data.packing.FinishPack`'s fields, batched), known before the first batch is."""
        pk = self.config.packing
        b, s, k, text_len = pk.batch_size, pk.seq_len, pk.max_clips_per_pack, self.config.text.max_len
        fields = {
            "tokens": ((b, s, self.parts.cfg.patch_dim), np.float32),
            "segment_ids": ((b, s), np.int32),
            "positions": ((b, s, 3), np.int32),
            "text_tokens": ((b, k, text_len), np.int32),
            "text_mask": ((b, k, text_len), np.bool_),
            "text_segment_ids": ((b, k), np.int32),
            "grid": ((b, k, 3), np.int32),
            **{key: ((self.parts.channels,), np.float32) for key in STATS_KEYS},
        }
        shardings = self.batch_shardings()
        return {
            key: jax.ShapeDtypeStruct(shape, dtype, sharding=shardings[key])
            for key, (shape, dtype) in fields.items()
        }

    def put(self, batch: dict) -> dict:
        if self._stats is None:  # the dataset's statistics, on the devices once
            stats = {"latent_mean": self.parts.latent_mean, "latent_std": self.parts.latent_std}
            self._stats = {
                k: jax.make_array_from_process_local_data(parallel.replicated(self.mesh), v)
                for k, v in stats.items()
            }
        return {k: parallel.put_batch(self.mesh, np.asarray(batch[k])) for k in BATCH_KEYS} | self._stats

    def wait_for_latents(self) -> LatentView:
        """With ``train.wait_for_latents_s``: blocks until the encode has ended, or, with
        ``train.start_with_parts`` = N > 0, until N of its parts are finished; returns what to train on."""
        start_parts = int(self.tc.get("start_with_parts", 0))
        if start_parts < 0:
            raise ValueError(f"train.start_with_parts must be >= 0, got {start_parts}")
        if start_parts and jax.process_count() > 1:  # the hosts would take in new parts at different steps
            log.warning("train.start_with_parts works on one host: waiting for the whole latent dataset")
            start_parts = 0
        deadline = self.t_start + self.wait_s
        what = f"{start_parts} finished parts" if start_parts else "the encode to finish"
        log.info(
            "waiting up to %.0f s for %s (the step compiles meanwhile)", deadline - time.perf_counter(), what
        )
        while True:
            view = finished_view(self.tc.latents)
            if view is not None and (view.complete or (start_parts and len(view.files) >= start_parts)):
                break
            if time.perf_counter() > deadline:
                raise TimeoutError(
                    f"the latent dataset {self.tc.latents} was not complete after waiting {self.wait_s:.0f} s"
                    + (f" (nor had {start_parts} finished parts)" if start_parts else "")
                )
            time.sleep(0.5)
        log.info(
            "latent dataset %s at %.1f s: %d clips in %d parts",
            "complete" if view.complete else "started",
            time.perf_counter() - self.t_start,
            view.clips,
            len(view.files),
        )
        return view

    def use_view(self, view: LatentView) -> None:
        """Train on ``view``'s clips, normalised by their statistics."""
        meta = read_latent_meta(self.tc.latents, allow_incomplete=not view.complete)
        if int(meta["latent_channels"]) != self.parts.channels:
            raise ValueError(
                f"{self.tc.latents} has {meta['latent_channels']} latent channels, "
                f"its encode began with {self.parts.channels}"
            )
        self.meta = meta | view.stats()
        self.parts.set_stats(self.meta)
        self._stats = None

    def open_feed(self, view: LatentView | dict) -> LatentFeed:
        """The batches of ``view`` (a :class:`LatentView` or a checkpoint's record of one), growing with an
        encode still running, normalised by its statistics."""
        view = LatentView.from_record(view) if isinstance(view, dict) else view
        self.use_view(view)
        self.feed = LatentFeed(self.tc.latents, view, self.data)
        return self.feed

    def data(self, view: LatentView | None = None):
        """The packed batches of ``view``'s clips (default: the whole dataset)."""
        dataset = LatentDataset(self.tc.latents, None if view is None else view.files)
        return iter(packed_dataset(dataset, self.config, tokenize=self.parts.text.caption_tokenizer()))

    def run(self, *, progress: bool = True) -> dict[str, float]:
        tc, config = self.tc, self.config
        waiting = self.wait_s > 0
        # train.time_limit_s counts from here (init and compile included), or, for a trainer that waited for its
        # latents, from its construction (the wait included)
        t_start = self.t_start if waiting else time.perf_counter()
        save_config(self.workdir, config)
        ckpt = Checkpointer(self.workdir / "checkpoints", save_every=tc.ckpt_every, keep=tc.keep)
        latest = ckpt.latest_step()
        # a resumed run reads the clips its checkpoint's data state belongs to (an encode's first parts, maybe)
        saved_view = None if latest is None else ckpt.saved_data_view(latest)
        if not waiting:  # its data workers start while the step compiles
            feed = self.open_feed(saved_view or finished_view(self.tc.latents))
        rng = jax.random.key(config.seed + 1)
        # The step compiles (for the one batch shape the packer emits, from the state's layout) while the state
        # is initialised and the data workers start, or, with train.wait_for_latents_s, while the encode still
        # writes the latents (the step takes their statistics as inputs, so it needs only their channel count).
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        if (latest or 0) < tc.steps:
            abstract = self.abstract_state()
            self.ahead_step().precompile(pool, self.mesh, abstract, {"pack": self.batch_spec()}, rng)
        state = self.init_state()
        if waiting:
            try:
                view = self.wait_for_latents()
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            feed = self.open_feed(saved_view or view)
        if latest is not None:
            state = ckpt.restore(abstract_with_shardings(state), feed.iterator)
            log.info("resumed from step %d", int(state.step))
        step = int(state.step)
        writer = metrics_lib.MetricWriter(self.workdir, enabled=jax.process_index() == 0)
        bar = Progress(tc.steps, step, "train") if progress else None
        last: dict[str, float] = {}
        self.losses: list[float] = []
        aux = None
        first_step_s = None
        # Throughput over the whole run after the first step (whose time is the compile's): the progress bar's
        # rates cover only the last logging window.
        counted = {"steps": 0, "clips": 0, "tokens": 0}
        t_end_limit = t_start + tc.time_limit_s if tc.time_limit_s else None
        t_first = None  # when the first step (and so the compile) had run: the time schedule's origin
        window = DispatchWindow()
        with PreemptionGuard() as guard:
            while step < tc.steps:
                if feed.take_new_parts():
                    self.use_view(feed.view)
                    log.info(
                        "step %d: training on %d clips in %d parts%s",
                        step,
                        feed.view.clips,
                        len(feed.view.files),
                        " (the whole dataset)" if feed.view.complete else "",
                    )
                host = next(feed)
                if first_step_s is None:
                    log.info("first batch at %.1f s", time.perf_counter() - t_start)
                now = time.perf_counter()
                if t_first is None or t_end_limit is None:
                    frac = 0.0
                else:
                    frac = (now - t_first) / max(t_end_limit - t_first, 1e-9)
                lr = self.learning_rate(step, frac)
                batch = self.put(host)
                ahead = self.ahead_step()
                if first_step_s is None and ahead.futures and ahead.ahead_for(batch) is None:
                    log.warning(
                        "the first batch %s is not the one the step was compiled ahead for %s: compiling again",
                        signature(batch)[1],
                        signature(self.batch_spec())[1],
                    )
                with parallel.mesh_context(self.mesh):
                    state, aux = self.step_fn()(state, batch, jax.random.fold_in(rng, step), np.float32(lr))
                window.push(aux)  # the time limit below is checked against steps that have run
                step += 1
                compiled_here = first_step_s is None
                if compiled_here:  # the compile (and the first batch) are in this one
                    jax.block_until_ready(aux)
                    t_first = time.perf_counter()
                    first_step_s = t_first - t_start
                    log.info("first step at %.1f s (data and compiled step ready)", first_step_s)
                clips = int(np.count_nonzero(np.asarray(host["text_segment_ids"])))
                tokens = int(np.count_nonzero(np.asarray(host["segment_ids"])))
                if not compiled_here:
                    counted["steps"] += 1
                    counted["clips"] += clips
                    counted["tokens"] += tokens
                if bar:
                    bar.update(clips, tokens)
                if step % tc.log_every == 0 or step == tc.steps:
                    last = {k: float(v) for k, v in jax.device_get(aux).items()}
                    last["lr"] = lr
                    if bar:
                        rates = bar.rates()
                        last["clips_per_s"], last["tokens_per_s"] = (
                            rates["clips_per_s"],
                            rates["frames_per_s"],
                        )
                        bar.bar.set_postfix({"loss": f"{last['loss']:.4g}"}, refresh=False)
                    writer.scalars(step, last)
                if tc.sample_every and step % tc.sample_every == 0:
                    self.write_samples(state, writer, step)
                save = functools.partial(ckpt.save, step, state, feed.iterator, data_view=feed.view.record())
                save(force=step == tc.steps)
                if guard.requested or ckpt.reached_preemption(step):
                    log.warning("preemption requested: saving step %d and stopping", step)
                    save(force=True)
                    break
                if tc.time_limit_s and time.perf_counter() - t_start > tc.time_limit_s:
                    log.warning(
                        "time limit of %.0f s reached: saving step %d and stopping", tc.time_limit_s, step
                    )
                    save(force=True)
                    break
        jax.block_until_ready(state)
        t_end = time.perf_counter()
        if aux is not None and "loss" not in last:
            last = {k: float(v) for k, v in jax.device_get(aux).items()}
        if counted["steps"] and first_step_s is not None:
            elapsed = max(t_end - t_start - first_step_s, 1e-9)
            last.update({f"{k}_per_s": v / elapsed for k, v in counted.items()})
        last["train_seconds"] = t_end - t_start
        last["steps"] = step
        last["data_views"] = (
            feed.views_taken
        )  # 1, or more where the run took in parts an encode finished later
        if first_step_s is not None:
            last["first_step_s"] = first_step_s
        for label, seconds in self.ahead_step().compile_seconds.items():
            last[f"compile_s_{label}"] = seconds
        pool.shutdown(wait=False, cancel_futures=True)
        ckpt.close()
        feed.close()
        writer.close()
        if bar:
            bar.close()
        self.state = state
        return last

    def write_samples(self, state: DiTTrainState, writer: metrics_lib.MetricWriter, step: int) -> None:
        """Sample videos of ``train.sample_prompts`` (EMA weights) as gifs + a frame strip in TensorBoard."""
        from jaxsora.sample import Generator, parse_size

        vae = self.tc.vae or self.meta.get("vae_workdir", "")
        if not vae:
            log.warning("no VAE workdir (train.vae) to decode samples with: skipping samples")
            return
        if not hasattr(self, "_generator"):
            from jaxsora.train.vae import load_codec

            codec, _ = load_codec(vae)
            self._generator = Generator(self.parts, codec)
        width, height = parse_size(self.tc.sample_size)
        params = jax.device_get(state.ema_params)
        videos = self._generator.text_to_video(
            params,
            list(self.tc.sample_prompts),
            frames=self.tc.sample_frames,
            height=height,
            width=width,
            seed=0,
            steps=self.config.diffusion.sample_steps,
            guidance=self.config.diffusion.guidance,
        )
        from jaxsora.data.video_io import write_video

        for i, video in enumerate(videos):
            frames = metrics_lib.to_uint8(video)
            path = self.workdir / "samples" / f"sample{i}_{step:07d}.gif"
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                write_video(path, frames, fps=8.0)
            except ImportError as e:  # PyAV missing: the strip below still goes out
                log.warning("cannot write %s: %s", path, e)
            writer.image(step, f"sample{i}", metrics_lib.comparison_strip(video, video)[: video.shape[1]])
