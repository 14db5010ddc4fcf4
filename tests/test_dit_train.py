"""`jaxsora train` on the 8-device CPU mesh: the loss falls, a sharded step equals the one-device step,
checkpoints restore exactly, a preempted run resumes into the uninterrupted run's losses."""

import json
import os
import pathlib
import shutil
import signal
import threading
import time

import flax.linen as nn
import jax
import model_params
import numpy as np
import pytest
from checkpoint_checks import assert_latest_restores_exactly
from latent_factory import make_latent_dataset

from jaxsora import parallel
from jaxsora.config import load_config
from jaxsora.data.latents import ChannelStats, LatentDataset, part_path, write_meta
from jaxsora.data.packing import packed_dataset
from jaxsora.sample import Generator
from jaxsora.train import dit as dit_train
from jaxsora.train import latent_feed
from jaxsora.train.checkpoint import Checkpointer
from jaxsora.train.dit_eval import load_trained

SMALL = [
    "packing.seq_len=64",
    "packing.max_clips_per_pack=4",
    "packing.num_bins=2",
    "packing.batch_size=8",
    "text.max_len=48",
    "dit.dtype=float32",
    "dit.attention=xla",
    "text_encoder.dtype=float32",
    "text_encoder.attention=xla",
    "train.log_every=1",
    "train.ckpt_every=100",
]


@pytest.fixture(scope="module")
def latents(tmp_path_factory):
    folder = tmp_path_factory.mktemp("latents")
    make_latent_dataset(folder, num_clips=32)
    return str(folder)


def config_for(latents, *extra):
    return load_config("configs/tiny.py", [*SMALL, f"train.latents={latents}", *extra])


class Recorder:
    """Wraps a trainer's jitted step to record losses (and optionally preempt at a call)."""

    def __init__(self, trainer, preempt_at=None):
        self.losses, self.calls = [], 0
        original = trainer.step_fn

        def step_fn():
            step = original()

            def wrapped(*args):
                self.calls += 1
                if self.calls == preempt_at:
                    os.kill(os.getpid(), signal.SIGTERM)  # as a cluster scheduler would
                state, aux = step(*args)
                self.losses.append(float(aux["loss"]))
                return state, aux

            return wrapped

        trainer.step_fn = step_fn


def test_a_few_steps_lower_the_loss(latents, tmp_path):
    config = config_for(
        latents,
        "train.steps=30",
        "train.optim.lr=3e-3",
        "train.optim.warmup_steps=3",
    )
    trainer = dit_train.DiTTrainer(config, tmp_path)
    rec = Recorder(trainer)
    result = trainer.run(progress=False)
    assert result["steps"] == 30 and len(rec.losses) == 30
    assert 0 < result["first_step_s"] < result["train_seconds"]  # the compile's share of a time budget
    assert np.mean(rec.losses[-5:]) < 0.8 * np.mean(rec.losses[:5]), rec.losses
    # The step was compiled ahead for the batch_spec the packer emits (while the data workers started), and
    # every step ran that executable: the jit itself never had to compile for a batch.
    assert result["compile_s_pack"] > 0
    assert trainer.ahead_step().jitted._cache_size() == 0
    # Whole-run throughput after the compiling first step (29 steps of 8 packs, each with >= 1 clip).
    span = result["train_seconds"] - result["first_step_s"]
    assert result["steps_per_s"] == pytest.approx(29 / span, rel=0.05)
    assert result["clips_per_s"] >= 8 * result["steps_per_s"]
    assert result["tokens_per_s"] >= result["clips_per_s"]


def test_a_few_muon_steps_lower_the_loss(latents, tmp_path):
    config = config_for(
        latents,
        "train.steps=30",
        "train.optim.lr=3e-3",
        "train.optim.warmup_steps=3",
        "train.optim.kind=muon",
    )
    trainer = dit_train.DiTTrainer(config, tmp_path)
    rec = Recorder(trainer)
    assert trainer.run(progress=False)["steps"] == 30
    assert np.mean(rec.losses[-5:]) < 0.8 * np.mean(rec.losses[:5]), rec.losses
    _, params, _ = load_trained(tmp_path, with_vae=False)  # the evaluations restore Muon's state too
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))


def test_a_muon_step_on_the_mesh_equals_the_one_device_step(latents):
    """One whole train step with Muon, (data, fsdp, tensor) = (2, 2, 2) against one device: the same
    parameter updates up to the Newton-Schulz iteration's bfloat16 rounding."""
    updates = []
    for mesh in ([], ["mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2"]):
        trainer = dit_train.DiTTrainer(config_for(latents, "train.optim.kind=muon", *mesh), "unused")
        state = trainer.init_state()
        before = jax.tree.map(np.asarray, state.params)
        with parallel.mesh_context(trainer.mesh):
            batch = trainer.put(next(trainer.data()))
            state, _ = trainer.step_fn()(state, batch, jax.random.key(3), np.float32(1e-3))
        updates.append(jax.tree.map(lambda a, b: np.asarray(a) - b, state.params, before))
    assert any(not x.sharding.is_fully_replicated for x in jax.tree.leaves(state.params))  # really sharded
    one, eight = (
        {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(u)} for u in updates
    )
    for key, a in one.items():
        assert np.linalg.norm(eight[key] - a) <= 2e-2 * np.linalg.norm(a) + 1e-9, key


def packed_batch_and_params(latents, config, parts):
    batch = next(iter(packed_dataset(LatentDataset(latents), config)))
    batch = {k: np.asarray(batch[k]) for k in dit_train.BATCH_KEYS}
    batch |= {
        "latent_mean": parts.latent_mean,
        "latent_std": parts.latent_std,
    }  # inputs, as the trainer gives
    params = jax.jit(lambda key: nn.meta.unbox(parts.init_params(key)))(jax.random.key(0))
    params = model_params.perturbed(params, 0.05, seed=1)  # zero-initialised gates would hide most gradients
    return batch, params


def loss_and_grads_on_mesh(trainer, params, batch):
    """``loss_and_grads`` jitted with the trainer's param and batch shardings over its mesh."""
    mesh, parts = trainer.mesh, trainer.parts
    fn = lambda p, b: dit_train.loss_and_grads(p, b, jax.random.key(2), parts=parts)  # noqa: E731
    shardings = parallel.state_shardings(mesh, jax.eval_shape(parts.init_params, jax.random.key(0)))
    batch_shardings = trainer.batch_shardings()
    with parallel.mesh_context(mesh):
        sharded = jax.jit(fn, in_shardings=(shardings, batch_shardings), out_shardings=(None, shardings))
        return sharded(jax.device_put(params, shardings), jax.device_put(batch, batch_shardings))


def assert_same_loss_and_grads(expected, actual):
    """Loss within 1e-5 relative; each gradient leaf within 1e-5 of its norm."""
    (loss1, grads1), (loss2, grads2) = expected, actual
    assert abs(float(loss2) - float(loss1)) <= 1e-5 * abs(float(loss1))
    for g1, g2 in zip(jax.tree.leaves(grads1), jax.tree.leaves(grads2), strict=True):
        g1, g2 = np.asarray(g1), np.asarray(g2)
        assert np.linalg.norm(g2 - g1) <= 1e-5 * max(np.linalg.norm(g1), 1e-12) + 1e-9


def test_sharded_step_equals_the_one_device_step(latents):
    config = config_for(latents, "mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2")
    trainer = dit_train.DiTTrainer(config, "unused")
    batch, params = packed_batch_and_params(latents, config, trainer.parts)
    fn = lambda p, b: dit_train.loss_and_grads(p, b, jax.random.key(2), parts=trainer.parts)  # noqa: E731
    one = jax.jit(fn)(jax.device_put(params, jax.devices()[0]), jax.device_put(batch, jax.devices()[0]))
    loss8, grads8 = loss_and_grads_on_mesh(trainer, params, batch)
    assert len(jax.tree.leaves(grads8)[0].sharding.device_set) == 8
    assert any(not g.sharding.is_fully_replicated for g in jax.tree.leaves(grads8))  # really sharded
    assert_same_loss_and_grads(one, (loss8, grads8))


def test_times_as_a_table_give_the_same_loss_and_grads_sharded_or_not(latents):
    """diffusion.time_table=true (the DiT modulated once per clip and time): the per-token path's loss and
    gradients on a real packed batch (given frames included), and the same again on the (2, 2, 2) mesh."""
    cond = "diffusion.cond_rates=(0.3,0.1,0.1,0.1,0.1)"
    ref = dit_train.DiTTrainer(config_for(latents, cond), "unused")
    mesh = ("mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2")
    trainer = dit_train.DiTTrainer(config_for(latents, cond, "diffusion.time_table=true", *mesh), "unused")
    batch, params = packed_batch_and_params(latents, trainer.config, ref.parts)
    per_token, table = (
        jax.jit(lambda p, b, parts=t.parts: dit_train.loss_and_grads(p, b, jax.random.key(2), parts=parts))(
            params, batch
        )
        for t in (ref, trainer)
    )
    assert_same_loss_and_grads(per_token, table)
    assert_same_loss_and_grads(table, loss_and_grads_on_mesh(trainer, params, batch))


RUN = ("train.steps=5", "train.ckpt_every=2")


@pytest.fixture(scope="module")
def straight(latents, tmp_path_factory, orbax_replica_parallel):
    """One uninterrupted run, the reference of the round-trip and resume tests: 5 steps, saved every 2 steps
    (periodic async saves while training goes on: 2, 4) and at the last (5). These tests save the way Orbax
    does by default (replica-parallel: each replica writes a slice), the rest of the suite whole shards."""
    trainer = dit_train.DiTTrainer(config_for(latents, *RUN), tmp_path_factory.mktemp("straight"))
    rec = Recorder(trainer)
    trainer.run(progress=False)
    return trainer, rec.losses


def test_checkpoint_round_trip_is_exact(straight):
    trainer, _ = straight
    fresh = dit_train.DiTTrainer(trainer.config, trainer.workdir).init_state()
    assert_latest_restores_exactly(trainer.workdir, trainer.state, fresh, [2, 4, 5])


def test_sigterm_saves_and_resume_reproduces_the_uninterrupted_losses(latents, straight, tmp_path):
    reference, reference_losses = straight
    config = config_for(latents, *RUN)
    interrupted = dit_train.DiTTrainer(config, tmp_path)
    rec_b = Recorder(interrupted, preempt_at=3)  # after the periodic save at 2: saved on SIGTERM
    interrupted.run(progress=False)
    assert int(interrupted.state.step) == 3 and rec_b.losses == reference_losses[:3]
    assert Checkpointer(tmp_path / "checkpoints", save_every=1, keep=1).latest_step() == 3

    resumed = dit_train.DiTTrainer(config, tmp_path)
    rec_c = Recorder(resumed)
    resumed.run(progress=False)
    assert int(resumed.state.step) == 5
    assert rec_c.losses == reference_losses[3:]  # exactly: same batches, same rngs, same state
    for a, b in zip(jax.tree.leaves(reference.state), jax.tree.leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_trainer_started_beside_the_encode_compiles_waits_and_trains_as_after_it(
    latents, straight, tmp_path
):
    """train.wait_for_latents_s: the trainer waits for the encode's first meta.json (channels, no statistics),
    compiles its step meanwhile, waits for the encode to end, and then trains exactly as a trainer started
    afterwards (the statistics are inputs of the step, not constants compiled into it)."""
    _, reference_losses = straight
    folder = tmp_path / "latents"
    folder.mkdir()
    meta = json.loads((pathlib.Path(latents) / "meta.json").read_text())
    header = {k: v for k, v in meta.items() if k not in ("latent_mean", "latent_std", "clips")}
    config = config_for(str(folder), *RUN, "train.wait_for_latents_s=300")
    box: dict = {}

    def train():
        box["trainer"] = trainer = dit_train.DiTTrainer(config, tmp_path / "dit")
        box["rec"] = Recorder(trainer)
        box["result"] = trainer.run(progress=False)

    thread = threading.Thread(target=train)
    thread.start()
    time.sleep(1.0)
    assert thread.is_alive() and "trainer" not in box  # no meta.json yet: waiting for the encode to start
    write_meta(folder, {**header, "complete": False})
    deadline = time.monotonic() + 120
    while not (box.get("trainer") and box["trainer"]._step and box["trainer"]._step.futures):
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.1)
    [future] = box["trainer"]._step.futures.values()
    future.result(timeout=120)  # compiled while the dataset is incomplete
    time.sleep(1.0)
    assert thread.is_alive() and "result" not in box and not box["rec"].losses
    for part in pathlib.Path(latents).glob("latents-*.array_record"):
        shutil.copy(part, folder)
    write_meta(folder, meta | {"complete": True})
    thread.join(timeout=300)
    assert box["result"]["steps"] == 5
    assert box["rec"].losses == reference_losses
    assert (
        box["trainer"].ahead_step().jitted._cache_size() == 0
    )  # every step ran the executable compiled ahead


def test_a_trainer_started_on_the_first_part_takes_in_the_rest_and_resumes_on_what_it_saved(
    tmp_path, monkeypatch
):
    """train.start_with_parts=1: the trainer trains on the encode's first finished part with that part's
    statistics, takes in the rest (and the whole dataset's statistics) once the encode has ended, and saves
    with each checkpoint the view its data state belongs to, so a run resumed from a step of the first part
    goes on exactly as the first run did."""
    source, progress = tmp_path / "source", []
    meta = make_latent_dataset(source, num_clips=32, part_size=16, progress=progress)
    folder = tmp_path / "latents"
    folder.mkdir()
    header = {k: v for k, v in meta.items() if k not in ("latent_mean", "latent_std", "clips")}
    write_meta(folder, {**header, "complete": False})
    shutil.copy(part_path(source, 0, 0), folder)
    (folder / "progress-p000.json").write_text(json.dumps(progress[0]))  # one part of two finished
    first = ChannelStats(16, progress[0]["stats"])
    monkeypatch.setattr(latent_feed, "POLL_S", 0.05)
    extra = (
        "train.wait_for_latents_s=300",
        "train.start_with_parts=1",
        "train.ckpt_every=1",
        "train.keep=20",
    )
    trainer = dit_train.DiTTrainer(config_for(str(folder), "train.steps=10", *extra), tmp_path / "dit")
    reached, released = threading.Event(), threading.Event()
    seen = []  # (latent_mean the step was given, views taken) per step
    original = trainer.step_fn

    def step_fn():
        step = original()

        def wrapped(state, batch, *args):
            seen.append((np.asarray(batch["latent_mean"]), trainer.feed.views_taken))
            if len(seen) == 4:  # the encode finishes while step 4 runs
                reached.set()
                assert released.wait(timeout=60)
            if len(seen) == 6:  # the pipeline over both parts (asked for at step 5) is built by step 7
                deadline = time.monotonic() + 60
                feed = trainer.feed
                while not (feed.views_taken == 2 or (feed._pending and feed._pending.done())):
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
            return step(state, batch, *args)

        return wrapped

    trainer.step_fn = step_fn
    rec = Recorder(trainer)
    box = {}
    thread = threading.Thread(target=lambda: box.update(result=trainer.run(progress=False)))
    thread.start()
    assert reached.wait(timeout=240)
    shutil.copy(part_path(source, 0, 1), folder)
    shutil.copy(source / "progress-p000.json", folder)
    write_meta(folder, meta | {"complete": True})
    released.set()
    thread.join(timeout=240)
    assert box["result"]["steps"] == 10 and box["result"]["data_views"] == 2
    # step 5 found the finished encode; step 6 or 7 took the pipeline over both parts
    assert [views for _, views in seen] in ([1] * 5 + [2] * 5, [1] * 6 + [2] * 4)
    np.testing.assert_allclose(seen[0][0], first.mean, rtol=1e-6)
    np.testing.assert_allclose(seen[-1][0], meta["latent_mean"], rtol=1e-6)
    assert not np.allclose(first.mean, meta["latent_mean"], rtol=1e-3)
    ckpt = Checkpointer(tmp_path / "dit" / "checkpoints", save_every=1, keep=20)
    early, last = ckpt.saved_data_view(3), ckpt.saved_data_view(10)
    assert early["files"] == [part_path(folder, 0, 0).name] and not early["complete"] and early["clips"] == 16
    assert last["complete"] and len(last["files"]) == 2 and last["latent_mean"] == meta["latent_mean"]
    # Resumed from step 3 (the encode long finished): steps 4-5 read the first part, as in the first run.
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "dit", resumed)
    for step_dir in (resumed / "checkpoints").iterdir():
        if step_dir.name.isdigit() and int(step_dir.name) > 3:
            shutil.rmtree(step_dir)
    monkeypatch.setattr(latent_feed, "POLL_S", 1e9)
    again = dit_train.DiTTrainer(config_for(str(folder), "train.steps=10", *extra), resumed)
    rec_again = Recorder(again)  # the same rate schedule (over 10 steps); no new parts looked for
    assert again.run(progress=False)["steps"] == 10
    assert rec_again.losses[:2] == rec.losses[3:5]
    np.testing.assert_allclose(again.parts.latent_mean, first.mean, rtol=1e-6)
    # Sampling denormalises with the statistics the weights were trained with, saved with the checkpoint.
    for workdir, mean in ((resumed, first.mean), (tmp_path / "dit", meta["latent_mean"])):
        generator, _, _ = load_trained(workdir, with_vae=False)
        np.testing.assert_allclose(generator.parts.latent_mean, mean, rtol=1e-6)


def test_an_incomplete_latent_dataset_is_refused_and_waiting_for_one_times_out(latents, tmp_path):
    meta = json.loads((pathlib.Path(latents) / "meta.json").read_text())
    folder = tmp_path / "latents"
    folder.mkdir()
    for part in pathlib.Path(latents).glob("latents-*.array_record"):
        shutil.copy(part, folder)
    write_meta(folder, meta | {"complete": False})  # an encode still running, or interrupted
    with pytest.raises(ValueError, match="incomplete: its encode is still running or was interrupted"):
        dit_train.DiTTrainer(config_for(str(folder)), tmp_path / "a")
    with pytest.raises(ValueError, match="incomplete"):
        LatentDataset(folder)
    trainer = dit_train.DiTTrainer(config_for(str(folder), "train.wait_for_latents_s=2"), tmp_path / "b")
    with pytest.raises(TimeoutError, match="was not complete after waiting"):
        trainer.run(progress=False)
    with pytest.raises(TimeoutError, match="was not started after waiting 1 s"):
        dit_train.DiTTrainer(config_for(str(tmp_path / "none"), "train.wait_for_latents_s=1"), tmp_path / "c")


def test_time_limit_on_a_step_just_saved_stops_cleanly(latents, tmp_path):
    """The time limit reached on a step the periodic save has just written (here the first step, which Orbax
    always saves) ends the run with that checkpoint, instead of failing on a second save of the step."""
    trainer = dit_train.DiTTrainer(config_for(latents, "train.steps=5", "train.time_limit_s=0.001"), tmp_path)
    result = trainer.run(progress=False)
    assert result["steps"] == 1
    assert Checkpointer(tmp_path / "checkpoints", save_every=1, keep=1).latest_step() == 1


def test_generator_is_deterministic_by_seed_and_checks_sizes(latents):
    config = config_for(latents)
    parts = dit_train.DiTParts(config, dit_train.read_latent_meta(latents))
    params = jax.jit(lambda key: nn.meta.unbox(parts.init_params(key)))(jax.random.key(0))
    gen = Generator(parts)
    grid = gen.latent_grid(frames=9, height=32, width=48)
    assert grid == (3, 2, 3)
    a = gen.sample_tokens(params, ["a red wave"], grid, seed=3, steps=2)
    b = gen.sample_tokens(params, ["a red wave"], grid, seed=3, steps=2)
    c = gen.sample_tokens(params, ["a red wave"], grid, seed=4, steps=2)
    assert a.shape == (1, 18, 64)
    np.testing.assert_array_equal(a, b)
    assert np.abs(np.asarray(a) - np.asarray(c)).max() > 0.1
    assert gen.tokens_to_latents(a, grid).shape == (1, 3, 4, 6, 16)
    # A fixed time-grid shift: the training rule's own value (18 tokens: shift_base) changes nothing, another
    # value does (weights perturbed: the zero-initialised head alone predicts no velocity at all).
    assert parts.flow.shift_base == 1.0 and parts.flow.shift_base_tokens >= 18
    moving = model_params.perturbed(params, 0.05, seed=1)
    by_rule, same, shifted = (
        gen.sample_tokens(moving, ["a red wave"], grid, seed=3, steps=2, shift=shift)
        for shift in (None, 1.0, 3.0)
    )
    np.testing.assert_array_equal(by_rule, same)
    assert np.abs(np.asarray(by_rule) - np.asarray(shifted)).max() > 1e-3
    with pytest.raises(ValueError, match="shift must be > 0"):
        gen.sample_tokens(params, ["a red wave"], grid, seed=3, steps=2, shift=0.0)
    with pytest.raises(ValueError, match="frames must be 1 \\+ k \\* 4"):
        gen.latent_grid(frames=8, height=32, width=48)
    with pytest.raises(ValueError, match="multiple of 16x16"):
        gen.latent_grid(frames=9, height=30, width=48)


def test_bad_settings_fail_with_a_clear_message(latents, tmp_path):
    with pytest.raises(ValueError, match="train.latents"):
        dit_train.DiTTrainer(load_config("configs/tiny.py", SMALL), tmp_path)
    with pytest.raises(FileNotFoundError, match="jaxsora encode"):
        dit_train.DiTTrainer(config_for(str(tmp_path)), tmp_path)
    with pytest.raises(ValueError, match="multiple of the 8 data-parallel"):
        dit_train.DiTTrainer(config_for(latents, "packing.batch_size=4"), tmp_path)
