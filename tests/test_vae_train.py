"""VAE training on the 8-device CPU mesh: the loss falls, checkpoints restore exactly, runs resume."""

import os
import signal

import jax
import numpy as np
import pytest
from checkpoint_checks import assert_latest_restores_exactly
from fakes import FakeSource

import jaxsora.train.vae as vae_train
from jaxsora.config import load_config
from jaxsora.train.checkpoint import Checkpointer
from jaxsora.train.optim import lr_at, schedule

SMALL = [
    "data.crop=square",
    "data.max_pixels=1024",
    "data.max_frames=5",
    "data.batch_multiple=8",
    "data.max_batch_size=8",
    "data.max_batch_pixels=100000",
    "vae.dtype=float32",
    "vae_train.log_every=1",
    "vae_train.sample_every=0",
    "mesh.data=4",
    "mesh.fsdp=2",
]


@pytest.fixture(autouse=True)
def fake_data(monkeypatch):
    monkeypatch.setattr(vae_train, "make_source", lambda data: FakeSource(64))


# One uninterrupted run serves three tests: its losses must fall, its last checkpoint must restore exactly, and
# a run preempted part-way must resume into exactly its final state. It saves every 3 steps (periodic async
# saves while training goes on: 3, 6) and at its last step (8).
# The decoder-robustness noise is on, so resuming also checks that its draws are reproducible.
RUN = [
    *SMALL,
    "vae_train.steps=8",
    "vae_train.optim.warmup_steps=2",
    "vae_train.ckpt_every=3",
    "vae_train.latent_noise=0.3",
]


def recording_steps(trainer, preempt_at=None):
    """Wraps the trainer's step to record losses (and send SIGTERM during call ``preempt_at``)."""
    losses = []
    original = trainer.step_fn

    def step_fn(use_gan):
        step = original(use_gan)

        def wrapped(*args):
            if len(losses) + 1 == preempt_at:
                os.kill(os.getpid(), signal.SIGTERM)  # as a cluster scheduler would
            out = step(*args)
            losses.append(float(out[1]["loss"]))
            return out

        return wrapped

    trainer.step_fn = step_fn
    return losses


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vae_train, "make_source", lambda data: FakeSource(64))
        trainer = vae_train.VAETrainer(load_config("configs/tiny.py", RUN), workdir)
        losses = recording_steps(trainer)
        trainer.run(progress=False)
    return trainer, losses


def test_a_few_steps_lower_the_loss(straight):
    _, losses = straight
    assert len(losses) == 8
    first = np.mean(losses[:3])
    assert np.mean(losses[-3:]) < 0.7 * first, losses


def test_checkpoint_round_trip_is_exact(straight):
    trainer, _ = straight
    fresh = vae_train.VAETrainer(trainer.config, trainer.workdir).init_state()
    assert_latest_restores_exactly(trainer.workdir, trainer.state, fresh, [3, 6, 8])


def test_sigterm_saves_and_resume_matches_an_uninterrupted_run(straight, tmp_path):
    reference, reference_losses = straight
    config = load_config("configs/tiny.py", RUN)
    interrupted = vae_train.VAETrainer(config, tmp_path)
    losses = recording_steps(interrupted, preempt_at=4)  # after the periodic save at 3: saved on SIGTERM
    interrupted.run(progress=False)
    assert int(interrupted.state.step) == 4 and losses == reference_losses[:4]
    assert Checkpointer(tmp_path / "checkpoints", save_every=1, keep=1).latest_step() == 4

    resumed = vae_train.VAETrainer(config, tmp_path)
    losses = recording_steps(resumed)
    resumed.run(progress=False)
    assert int(resumed.state.step) == 8 and losses == reference_losses[4:]
    for a, b in zip(jax.tree.leaves(reference.state), jax.tree.leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_precompiled_steps_equal_jitted_ones(tmp_path, monkeypatch):
    overrides = [*SMALL, "data.frame_choices=(1,5)", "vae_train.steps=3", "vae_train.ckpt_every=100"]
    config = load_config("configs/tiny.py", overrides)
    assert vae_train.expected_batch_shapes(config) == [(8, 1, 32, 32, 3), (8, 5, 32, 32, 3)]
    ahead = vae_train.VAETrainer(config, tmp_path / "a")
    ahead.run(progress=False)
    assert all(f.done() and f.exception() is None for f in ahead.step_fn(False).futures.values())

    monkeypatch.setattr(vae_train, "expected_batch_shapes", lambda config: [])
    lazy = vae_train.VAETrainer(config, tmp_path / "b")
    lazy.run(progress=False)
    assert not lazy.step_fn(False).futures
    for a, b in zip(jax.tree.leaves(ahead.state), jax.tree.leaves(lazy.state), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_learning_rate_schedule_matches_optax_and_follows_progress():
    config = load_config("configs/tiny.py", [])
    opt = config.vae_train.optim
    sched = schedule(opt, 200)
    for step in (0, 5, 20, 21, 100, 199, 200, 250):
        assert abs(lr_at(opt, step, 200) - float(sched(step))) < 1e-9
    assert lr_at(opt, 100, 200, progress=1.0) == pytest.approx(opt.lr * opt.final_lr_fraction)
    assert lr_at(opt, 100, 200, progress=0.0) == pytest.approx(opt.lr)


def test_negative_latent_noise_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="latent_noise must be >= 0"):
        vae_train.VAETrainer(
            load_config("configs/tiny.py", [*SMALL, "vae_train.latent_noise=-0.1"]), tmp_path
        )
