"""Test setup: 8 forced CPU devices so sharding is tested on a real 8-device mesh, code generated unoptimised.

The flags must be set before jax is imported anywhere, which is why they live here at module import time.
A persistent compilation cache for the session lets tests that build the same model twice compile it once.
"""

import atexit
import logging
import os
import shutil
import tempfile

# The tests' models are tiny: they spend far more time compiling than running. LLVM at -O0 instead of XLA:CPU's
# default -O3 (XLA's own HLO optimisations are unchanged) compiles several times faster: the tiny VAE's
# threefry-heavy initialisation 35 s -> 4 s, the whole suite's CPU time about a third less.
flags = os.environ.get("XLA_FLAGS", "")
os.environ["XLA_FLAGS"] = (
    f"--xla_backend_optimization_level=0 {flags} --xla_force_host_platform_device_count=8"
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    # Made by the first process (pytest's controller); xdist workers and the tests' subprocesses inherit it.
    # The maker removes it at exit, after its workers.
    _cache_dir = tempfile.mkdtemp(prefix="jaxsora-test-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir
    atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import jax  # noqa: E402  (after the flags)
import orbax.checkpoint as ocp  # noqa: E402
import pytest  # noqa: E402

# Orbax saves an array replicated over n devices as n slices written by different replicas (replica-parallel,
# its default). On the 8 CPU devices that slices every parameter 8 ways with eager ops, each compiled on first
# use: ~10 s for the first save of a train state in each process. The tests save whole shards instead, except
# where `orbax_replica_parallel` is used (the DiT round-trip and resume tests keep orbax's default path).
REPLICA_PARALLEL = ocp.type_handlers.get_type_handler(jax.Array)
WHOLE_SHARDS = ocp.type_handlers.ArrayHandler(use_replica_parallel=False)


def use_array_handler(handler) -> None:
    """Registers ``handler`` for jax.Array, without Orbax's warning that it replaces the previous one."""
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        ocp.type_handlers.register_type_handler(jax.Array, handler, override=True)
    finally:
        absl_logger.setLevel(level)


use_array_handler(WHOLE_SHARDS)


@pytest.fixture(scope="module")
def orbax_replica_parallel():
    """Orbax's default, replica-parallel array saving, for the rest of the module's tests."""
    use_array_handler(REPLICA_PARALLEL)
    yield
    use_array_handler(WHOLE_SHARDS)


# The slowest files first: with `--dist loadfile` (pyproject.toml) each file goes to one worker in this order,
# so a long file does not start last while the other worker has nothing left to do.
SLOWEST_FIRST = (
    "test_vae_train.py",
    "test_dit_train.py",
    "test_encode.py",
    "test_dit.py",
    "test_notebook.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
