"""Checks shared by the trainers' checkpoint tests."""

from __future__ import annotations

import pathlib

import jax
import numpy as np

from jaxsora.train.checkpoint import Checkpointer, abstract_with_shardings


def assert_latest_restores_exactly(workdir: pathlib.Path, state, fresh, saved_steps: list[int]) -> None:
    """The workdir's checkpoints are at ``saved_steps``; restoring the latest onto ``fresh``'s structure gives
    ``state`` bit for bit, with equivalent shardings."""
    ckpt = Checkpointer(pathlib.Path(workdir) / "checkpoints", save_every=1, keep=1)
    assert ckpt.manager.all_steps() == saved_steps
    restored = ckpt.restore(abstract_with_shardings(fresh))
    assert int(restored.step) == saved_steps[-1]
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert a.sharding.is_equivalent_to(b.sharding, a.ndim)
