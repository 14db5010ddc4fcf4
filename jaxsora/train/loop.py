"""What every training loop shares: preemption handling, the progress bar with throughput, the train state's
layout known before the state is made, a train step compiled ahead of time (from that layout) while the
state is initialised and the data workers start, and a bound on how far the host runs ahead of the device."""

from __future__ import annotations

import collections
import signal
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxsora import parallel
from jaxsora.progress import progress_bar


def state_layout(mesh, init) -> tuple:
    """What ``init(rng)`` (a train state with logically partitioned leaves) would make, without making it:
    ``(abstract, shardings)``, the unboxed leaves as ``jax.ShapeDtypeStruct`` with their shardings over ``mesh``
    (by the logical rules), and those shardings. Call it outside a mesh context (:func:`parallel.mesh_context`),
    whose rules would turn the unboxing into sharding constraints."""
    boxed = jax.eval_shape(init, jax.random.key(0))
    shardings = parallel.state_shardings(mesh, boxed)
    abstract = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), nn.meta.unbox(boxed), shardings
    )
    return abstract, shardings


def make_train_state(mesh, init, shardings, seed: int):
    """``init(PRNGKey(seed))`` jitted straight into ``shardings`` (each device makes only its shards)."""
    with parallel.mesh_context(mesh):
        return jax.jit(lambda r: nn.meta.unbox(init(r)), out_shardings=shardings)(jax.random.key(seed))


class TrainStateLayout:
    """The train state's layout and initialisation, shared by the trainers. The class using it sets
    ``self.mesh``, ``self.parts`` (whose ``init(rng)`` makes a logically partitioned train state) and
    ``self.config`` (its ``seed``)."""

    _abstract = None

    def abstract_state(self):
        """The train state's leaves as ``jax.ShapeDtypeStruct`` with their shardings (sets ``self.shardings``),
        known before the state is made: what the step compiles ahead from."""
        if self._abstract is None:
            self._abstract, self.shardings = state_layout(self.mesh, self.parts.init)
        return self._abstract

    def init_state(self):
        self.abstract_state()
        return make_train_state(self.mesh, self.parts.init, self.shardings, self.config.seed)


def signature(batch) -> tuple:
    """A batch's tree structure with each leaf's shape and dtype: what selects a compiled executable."""
    leaves, treedef = jax.tree.flatten(batch)
    return treedef, tuple((tuple(x.shape), np.dtype(x.dtype)) for x in leaves)


class AheadCompiledStep:
    """A jitted train step ``(state, batch, rng, lr) -> ...`` plus executables compiled ahead of time, in
    background threads, for the batches it is told to expect (:meth:`precompile`), so that compiling overlaps
    the data workers' start instead of following the first batch. A call whose batch matches one of them
    (tree, shapes and dtypes) runs that executable; any other batch goes through jit."""

    def __init__(self, jitted, compiler_options: dict | None = None):
        self.jitted = jitted
        self.compiler_options = compiler_options  # on top of the jit's own
        self.futures: dict = {}
        self.compile_seconds: dict = {}

    def precompile(self, pool, mesh, state, batches: dict, rng) -> None:
        """Start compiling, on ``pool``, for each of ``batches`` (label -> a pytree of ``jax.ShapeDtypeStruct``
        with shardings, as the batch will be put on the mesh); ``state`` and ``rng`` may be concrete."""
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state)
        lr = jax.ShapeDtypeStruct((), jnp.float32)

        def compile_for(label, batch):
            t0 = time.perf_counter()
            with parallel.mesh_context(mesh):  # contexts are per thread
                compiled = self.jitted.lower(abstract, batch, rng, lr).compile(self.compiler_options)
            self.compile_seconds[label] = time.perf_counter() - t0
            return compiled

        for label, batch in batches.items():
            self.futures[signature(batch)] = pool.submit(compile_for, label, batch)

    def ahead_for(self, batch):
        """The future of the executable compiled ahead for ``batch``'s signature, or None."""
        return self.futures.get(signature(batch))

    def __call__(self, state, batch, rng, lr):
        future = self.ahead_for(batch)
        if future is not None:
            return future.result()(state, batch, rng, lr)
        return self.jitted(state, batch, rng, lr)


class DispatchWindow:
    """Keeps at most ``depth`` train steps dispatched and not yet run. A jitted step returns before the device
    has run it, so a loop whose steps take longer on the device than their batches on the host (any CPU run)
    queues step after step, and a time limit or preemption checked on the host stops only after all of them
    have run: a 30 s VAE limit took 180 s on 2 CPU cores. :meth:`push` each step's outputs; it waits for the
    outputs ``depth`` steps back, so the device always has the next step queued while one runs."""

    def __init__(self, depth: int = 2):
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.depth = depth
        self._queue: collections.deque = collections.deque()

    def push(self, outputs) -> None:
        self._queue.append(outputs)
        if len(self._queue) > self.depth:
            jax.block_until_ready(self._queue.popleft())


class PreemptionGuard:
    """Turns SIGTERM (and SIGINT) into a flag the loop checks after each step, so it can save and exit."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


class Progress:
    """A progress bar over steps that also reports examples/s and frames/s."""

    def __init__(self, total: int, initial: int, desc: str):
        self.bar = progress_bar(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)
        self._t0 = time.perf_counter()
        self._clips = self._frames = 0

    def update(self, clips: int, frames: int, postfix: dict[str, float] | None = None) -> None:
        self._clips += clips
        self._frames += frames
        self.bar.update(1)
        if postfix:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def rates(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        rates = {"clips_per_s": self._clips / elapsed, "frames_per_s": self._frames / elapsed}
        self._t0, self._clips, self._frames = time.perf_counter(), 0, 0
        return rates

    def close(self) -> None:
        self.bar.close()
