"""Training the causal video VAE: reconstruction (L1/L2) + KL + optional 3D patch-GAN term.

``jaxsora train-vae --config configs/vae_synthetic.py --workdir runs/vae``. Image and video batches come
mixed from the shape-bucketed clip pipeline; the train step is jit-compiled once per bucket shape, with the
state sharded over the mesh by the logical-axis rules and the batch over (data, fsdp).
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import pathlib
import time
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxsora import parallel
from jaxsora.data import geometry
from jaxsora.data.buckets import batch_size_for
from jaxsora.data.pipeline import batched_dataset, close_iterator, make_source
from jaxsora.data.pixels import to_signed_unit
from jaxsora.models.vae import VAE, VAEConfig
from jaxsora.train import metrics as metrics_lib
from jaxsora.train.checkpoint import Checkpointer, abstract_with_shardings, save_config
from jaxsora.train.loop import AheadCompiledStep, DispatchWindow, PreemptionGuard, Progress, TrainStateLayout
from jaxsora.train.optim import ema_update, lr_at, make_unscaled_optimizer

log = logging.getLogger(__name__)


class PatchDiscriminator(nn.Module):
    """A 3D convolutional patch discriminator: one logit per spatio-temporal patch."""

    channels: int = 32
    dtype: Any = jnp.bfloat16

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = x.astype(self.dtype)
        for i, mult in enumerate((1, 2, 4)):
            h = nn.Conv(
                self.channels * mult,
                (3, 4, 4),
                strides=(1, 2, 2),
                dtype=self.dtype,
                kernel_init=nn.with_logical_partitioning(
                    nn.initializers.lecun_normal(), ("conv_t", "conv_h", "conv_w", "conv_in", "conv_out")
                ),
                name=f"conv{i}",
            )(h)
            h = nn.leaky_relu(h, 0.2)
        return nn.Conv(1, (3, 3, 3), dtype=jnp.float32, name="logits")(h).astype(jnp.float32)


@flax.struct.dataclass
class VAETrainState:
    step: jax.Array
    params: Any
    opt_state: Any
    ema_params: Any
    disc_params: Any
    disc_opt_state: Any


def vae_config(config: ml_collections.ConfigDict) -> VAEConfig:
    return VAEConfig.from_config(config.vae)


def check_data_matches_vae(config: ml_collections.ConfigDict) -> None:
    cfg = vae_config(config)
    d = config.data
    if d.spatial_multiple % cfg.spatial_factor:
        raise ValueError(
            f"data.spatial_multiple={d.spatial_multiple} must be a multiple of the VAE's spatial factor "
            f"{cfg.spatial_factor}"
        )
    if d.temporal_factor != cfg.temporal_factor:
        raise ValueError(
            f"data.temporal_factor={d.temporal_factor} must equal the VAE's temporal factor {cfg.temporal_factor}"
        )


def losses(
    params,
    disc_params,
    video,
    rng,
    *,
    model: VAE,
    disc: PatchDiscriminator,
    tc: ml_collections.ConfigDict,
    use_gan: bool,
):
    recon, mean, logvar = model.apply(
        {"params": params},
        video,
        sample=tc.sample_posterior,
        latent_noise=tc.get("latent_noise", 0.0),
        rngs={"noise": rng},
    )
    diff = recon - video
    w0 = tc.get("first_frame_weight", 1.0)
    if w0 != 1.0 and video.shape[1] > 1:  # the first frame is coded alone, as an image is: weight it apart
        t = video.shape[1]
        w = jnp.ones((t,), jnp.float32).at[0].set(w0) * (t / (t - 1 + w0))
        diff = diff * jnp.sqrt(w)[None, :, None, None, None]
    parts = {
        "l1": jnp.mean(jnp.abs(diff)),
        "l2": jnp.mean(jnp.square(diff)),
        "kl": 0.5 * jnp.mean(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar),
    }
    loss = tc.l1_weight * parts["l1"] + tc.l2_weight * parts["l2"] + tc.kl_weight * parts["kl"]
    if use_gan:
        parts["g_adv"] = -jnp.mean(disc.apply({"params": disc_params}, recon))
        loss = loss + tc.adv_weight * parts["g_adv"]
    parts["loss"] = loss
    return loss, (recon, parts)


def _scaled(updates, lr):
    return jax.tree.map(lambda u: (-lr * u).astype(u.dtype), updates)


def train_step(state: VAETrainState, video, rng, lr, *, model, disc, tx, dtx, tc, use_gan: bool):
    """One step at learning rate ``lr`` (a traced scalar: the schedule is evaluated on the host) on ``video``:
    uint8 pixels (converted here, on the device) or float32 in [-1, 1]."""
    video = to_signed_unit(video)
    loss_fn = functools.partial(losses, model=model, disc=disc, tc=tc, use_gan=use_gan)
    (_, (recon, parts)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.disc_params, video, rng
    )
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, _scaled(updates, lr))
    disc_params, disc_opt_state = state.disc_params, state.disc_opt_state
    if use_gan:
        fake = jax.lax.stop_gradient(recon)

        def d_loss_fn(dp):
            real_logits = disc.apply({"params": dp}, video)
            fake_logits = disc.apply({"params": dp}, fake)
            return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))

        d_loss, d_grads = jax.value_and_grad(d_loss_fn)(disc_params)
        d_updates, disc_opt_state = dtx.update(d_grads, disc_opt_state, disc_params)
        disc_params = optax.apply_updates(disc_params, _scaled(d_updates, lr))
        parts["d_loss"] = d_loss
    parts["psnr"] = jnp.mean(metrics_lib.psnr(recon, video))
    parts["grad_norm"] = optax.tree.norm(grads)
    decay = tc.ema_decay
    if tc.get("ema_warmup", False):  # average over the steps so far while they are fewer than 1/(1-decay)
        decay = jnp.minimum(decay, (1.0 + state.step) / (10.0 + state.step))
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        opt_state=opt_state,
        ema_params=ema_update(state.ema_params, params, decay),
        disc_params=disc_params,
        disc_opt_state=disc_opt_state,
    )
    return new_state, parts, recon


class VAEParts:
    """The model, discriminator and optimisers a config describes, and the (boxed) initial train state."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.cfg = vae_config(config)
        self.model = VAE(self.cfg)
        tc = config.vae_train
        self.disc = PatchDiscriminator(tc.disc_channels, dtype=jnp.dtype(self.cfg.dtype))
        self.tx = make_unscaled_optimizer(tc.optim)
        self.dtx = make_unscaled_optimizer(tc.optim)

    def init(self, rng) -> VAETrainState:
        k1, k2, k3 = jax.random.split(rng, 3)
        f, s = self.cfg.temporal_factor, self.cfg.spatial_factor
        sample = jnp.zeros((1, 1 + f, 2 * s, 2 * s, 3))
        params = self.model.init({"params": k1, "noise": k2}, sample)["params"]
        disc_params = self.disc.init(k3, sample)["params"]
        return VAETrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=self.tx.init(params),
            ema_params=jax.tree.map(lambda p: p.astype(jnp.float32), params),
            disc_params=disc_params,
            disc_opt_state=self.dtx.init(disc_params),
        )


def expected_batch_shapes(config: ml_collections.ConfigDict) -> list[tuple[int, ...]]:
    """The batch shapes the pipeline will emit, where the config fixes them (square crops and a fixed list
    of frame counts); [] where it cannot tell."""
    d = config.data
    if d.crop != "square" or not d.frame_choices:
        return []
    images = config.vae_train.get("image_batches", True)
    side, _ = geometry.plan_size(1 << 14, 1 << 14, max_pixels=d.max_pixels, multiple=d.spatial_multiple)
    counts = list(d.frame_choices)
    if d.source == "synthetic":
        if d.synthetic.image_fraction <= 0:
            counts = [c for c in counts if c > 1] or counts
        if d.synthetic.min_frames >= max(counts):
            counts = [c for c in counts if c == 1 or c == max(counts)]
    shapes = []
    for t in counts:
        if t == 1 and not images:
            continue
        b = batch_size_for(
            (t, side, side),
            max_batch_pixels=d.max_batch_pixels,
            max_batch_size=d.max_batch_size,
            multiple=d.batch_multiple,
        )
        shapes.append((b, t, side, side, 3))
    return shapes


class VAETrainer(TrainStateLayout):
    """Builds the model, mesh, sharded state, data and jitted steps from a config; ``run()`` trains.

    With ``vae_train.time_limit_s`` the learning rate's cosine decay follows the fraction of the time budget
    used since the first step (a resumed run anneals the rest of the schedule over its own budget), so a
    time-bounded run ends annealed however many steps the machine manages.
    """

    def __init__(self, config: ml_collections.ConfigDict, workdir: str | pathlib.Path):
        check_data_matches_vae(config)
        if not config.vae_train.get("latent_noise", 0.0) >= 0:
            raise ValueError(f"vae_train.latent_noise must be >= 0, got {config.vae_train.latent_noise}")
        self.config = config
        self.tc = config.vae_train
        self.workdir = pathlib.Path(workdir)
        self.mesh = parallel.make_mesh(config.mesh.to_dict())
        dp = self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        if config.data.batch_multiple % dp:
            raise ValueError(
                f"data.batch_multiple={config.data.batch_multiple} must be a multiple of the {dp} data-parallel "
                f"devices (set --config.data.batch_multiple={dp})"
            )
        self.parts = VAEParts(config)
        self.cfg, self.model, self.disc = self.parts.cfg, self.parts.model, self.parts.disc
        self.tx, self.dtx = self.parts.tx, self.parts.dtx
        self._steps: dict[bool, Any] = {}

    # -- step ------------------------------------------------------------------------------------------
    def step_fn(self, use_gan: bool):
        """``(state, video, rng, lr) -> (state, metrics, reconstruction)``."""
        if use_gan not in self._steps:
            self.abstract_state()  # sets self.shardings
            fn = functools.partial(
                train_step,
                model=self.model,
                disc=self.disc,
                tx=self.tx,
                dtx=self.dtx,
                tc=self.tc,
                use_gan=use_gan,
            )
            batch = parallel.batch_sharding(self.mesh, 5)
            level = self.tc.get("xla_autotune_level", -1)
            self._steps[use_gan] = AheadCompiledStep(
                jax.jit(
                    fn,
                    in_shardings=(self.shardings, batch, None, None),
                    out_shardings=(self.shardings, None, batch),
                    donate_argnums=0,
                ),
                compiler_options={"xla_gpu_autotune_level": level} if level >= 0 else None,
            )
        return self._steps[use_gan]

    def learning_rate(self, step: int, progress: float | None) -> float:
        return lr_at(self.tc.optim, step, self.tc.steps, progress)

    # -- loop ------------------------------------------------------------------------------------------
    def run(self, *, progress: bool = True) -> dict[str, float]:
        tc, config = self.tc, self.config
        t_start = time.perf_counter()
        save_config(self.workdir, config)
        source = make_source(config.data)
        # uint8 batches: a quarter of the host work and transfer; the step converts them on the device.
        data_iter = iter(batched_dataset(source, config, video_dtype="uint8"))
        ckpt = Checkpointer(self.workdir / "checkpoints", save_every=tc.ckpt_every, keep=tc.keep)
        start = ckpt.latest_step()
        rng = jax.random.key(config.seed + 1)
        # Compile the train step for the batch shapes to come (from the state's layout) while the state is
        # initialised and the data workers start.
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)
        use_gan0 = tc.disc_start >= 0 and (start or 0) >= tc.disc_start
        shapes = expected_batch_shapes(config)
        if shapes and (start or 0) < tc.steps:
            abstract = self.abstract_state()  # outside the mesh context: unboxing there would constrain
            with parallel.mesh_context(self.mesh):
                sharding = parallel.batch_sharding(self.mesh, 5)
                batches = {
                    sh: jax.ShapeDtypeStruct(sh, jnp.uint8, sharding=sharding) for sh in map(tuple, shapes)
                }
                self.step_fn(use_gan0).precompile(
                    pool, self.mesh, abstract, batches, jax.random.fold_in(rng, 0)
                )
        state = self.init_state()
        if start is not None:
            state = ckpt.restore(abstract_with_shardings(state), data_iter)
            log.info("resumed from step %d", start)
        step = first_step = int(state.step)
        writer = metrics_lib.MetricWriter(self.workdir, enabled=jax.process_index() == 0)
        bar = Progress(tc.steps, step, "train-vae") if progress else None
        last: dict[str, float] = {}
        parts = None
        t_train0 = None  # when the first step starts (data and compiled step ready)
        data_wait = 0.0  # seconds the loop waited for data after the first step
        skipped = 0
        image_batches = tc.get("image_batches", True)
        deadline = t_start + tc.time_limit_s if tc.time_limit_s else None
        start_frac = step / max(tc.steps, 1)
        window = DispatchWindow()
        with PreemptionGuard() as guard, parallel.mesh_context(self.mesh):
            while step < tc.steps:
                t0 = time.perf_counter()
                batch = next(data_iter)
                if t_train0 is not None:
                    data_wait += time.perf_counter() - t0
                if not image_batches and batch["video"].shape[1] == 1:
                    skipped += 1  # images are coded as a video's first frame: trained as such
                    continue
                video = parallel.put_batch(self.mesh, batch["video"])
                use_gan = tc.disc_start >= 0 and step >= tc.disc_start
                fn = self.step_fn(use_gan)
                if t_train0 is None:
                    future = fn.ahead_for(video) if isinstance(fn, AheadCompiledStep) else None
                    if future is not None:
                        future.result()
                    t_train0 = time.perf_counter()
                    log.info("first step at %.1f s (data and compiled step ready)", t_train0 - t_start)
                frac = None
                if deadline is not None:
                    used = (time.perf_counter() - t_train0) / max(deadline - t_train0, 1e-9)
                    frac = max(step / max(tc.steps, 1), start_frac + (1 - start_frac) * used)
                lr = self.learning_rate(step, frac)
                state, parts, recon = fn(state, video, jax.random.fold_in(rng, step), np.float32(lr))
                window.push(parts)  # the time limit below is checked against steps that have run
                step += 1
                b, t = batch["video"].shape[:2]
                if bar:
                    bar.update(b, b * t)
                if step % tc.log_every == 0 or step == tc.steps:
                    last = {k: float(v) for k, v in jax.device_get(parts).items()}
                    last["lr"] = lr
                    if bar:
                        last.update(bar.rates())
                        bar.bar.set_postfix({k: f"{last[k]:.4g}" for k in ("loss", "psnr")}, refresh=False)
                    writer.scalars(step, last)
                if tc.sample_every and step % tc.sample_every == 0:
                    clip = to_signed_unit(np.asarray(jax.device_get(video))[0])
                    writer.image(
                        step, "reconstruction", metrics_lib.comparison_strip(clip, np.asarray(recon)[0])
                    )
                saved = False
                if (tc.ckpt_every and step % tc.ckpt_every == 0) or step == tc.steps:
                    saved = ckpt.save(step, state, data_iter, force=step == tc.steps)
                if guard.requested or ckpt.reached_preemption(step):
                    log.warning("preemption requested: saving step %d and stopping", step)
                    if not saved:
                        ckpt.save(step, state, data_iter, force=True)
                    break
                if deadline is not None and time.perf_counter() > deadline:
                    log.warning(
                        "time limit of %.0f s reached: saving step %d and stopping", tc.time_limit_s, step
                    )
                    if not saved:
                        ckpt.save(step, state, data_iter, force=True)
                    break
        jax.block_until_ready(state)
        t_end = time.perf_counter()
        pool.shutdown(wait=False, cancel_futures=True)
        if parts is not None and "loss" not in last:
            last = {k: float(v) for k, v in jax.device_get(parts).items()}
        last["train_seconds"] = t_end - t_start
        last["first_step_s"] = (t_train0 or t_end) - t_start
        last["steps"] = step
        if step > first_step and t_train0 is not None:
            last["steps_per_s"] = (step - first_step) / max(t_end - t_train0, 1e-9)
            last["data_wait_s"] = data_wait
        if isinstance(self._steps.get(use_gan0), AheadCompiledStep):
            for shape, seconds in self._steps[use_gan0].compile_seconds.items():
                last[f"compile_s_{'x'.join(map(str, shape[:2]))}"] = seconds
        if skipped:
            last["skipped_image_batches"] = skipped
        ckpt.close()
        close_iterator(data_iter)
        writer.close()
        if bar:
            bar.close()
        self.state = state
        return last


def load_codec(workdir: str | pathlib.Path, *, ema: bool = True, step: int | None = None):
    """The trained VAE of a ``train-vae`` workdir as a :class:`VideoCodec` (EMA weights by default),
    with the run's config."""
    from jaxsora.models.vae_codec import VideoCodec
    from jaxsora.train.checkpoint import load_run_config

    config = load_run_config(workdir)
    parts = VAEParts(config)
    abstract = nn.meta.unbox(jax.eval_shape(parts.init, jax.random.key(0)))
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), abstract)
    ckpt = Checkpointer(pathlib.Path(workdir) / "checkpoints", save_every=1, keep=1000)
    try:
        state = ckpt.restore(abstract, step=step)
    finally:
        ckpt.close()
    return VideoCodec(parts.cfg, state.ema_params if ema else state.params), config
