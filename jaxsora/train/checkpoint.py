"""Orbax checkpoints of the train state together with the data iterator's state.

Async saves every ``save_every`` steps, the last ``keep`` kept, restore of the latest (or a given) step
onto the shardings of an abstract state, so a run resumes exactly where it stopped, on the same example.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp


class Checkpointer:
    def __init__(self, directory: str | pathlib.Path, *, save_every: int, keep: int, async_save: bool = True):
        self.directory = pathlib.Path(directory).resolve()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            save_interval_steps=max(1, save_every),
            enable_async_checkpointing=async_save,
            create=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        self._saved_step: int | None = None

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(
        self,
        step: int,
        state: Any,
        data_iterator: grain.DatasetIterator | None = None,
        force: bool = False,
        data_view: dict | None = None,
    ) -> bool:
        """Saves ``step`` when the interval says so (Orbax also saves a run's first step), or always with
        ``force``; True when it saved. A step already saved is not saved again, so a loop may force a save
        (time limit, preemption) right after its periodic one. ``data_view`` (JSON) says which data the
        iterator's state belongs to (:meth:`saved_data_view`)."""
        if step == self._saved_step:
            return False
        items = {"state": ocp.args.StandardSave(state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        if data_view is not None:
            items["data_view"] = ocp.args.JsonSave(data_view)
        saved = self.manager.save(step, args=ocp.args.Composite(**items), force=force)
        if saved:
            self._saved_step = step
        return saved

    def restore(
        self, abstract_state: Any, data_iterator: grain.DatasetIterator | None = None, step: int | None = None
    ):
        """Restores ``step`` (default: latest) onto ``abstract_state``'s shapes and shardings."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        return restored["state"]

    def saved_data_view(self, step: int) -> dict | None:
        """The ``data_view`` saved with ``step``, or None (saved without one)."""
        if not (self.directory / str(step) / "data_view").exists():
            return None
        restored = self.manager.restore(step, args=ocp.args.Composite(data_view=ocp.args.JsonRestore()))
        return restored["data_view"]

    def reached_preemption(self, step: int) -> bool:
        return self.manager.reached_preemption(step)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_with_shardings(state: Any) -> Any:
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state)


def save_config(workdir: pathlib.Path, config) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")


def load_run_config(workdir: str | pathlib.Path):
    """The config a run in ``workdir`` was trained with (written by the trainer at start)."""
    import ml_collections

    path = pathlib.Path(workdir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {workdir} a training run's workdir?")
    return ml_collections.ConfigDict(json.loads(path.read_text()))
