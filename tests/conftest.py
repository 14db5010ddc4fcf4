"""Test setup: 8 forced CPU devices so sharding is tested on a real 8-device mesh.

The flags must be set before jax is imported anywhere, which is why they live here at module import time.
A persistent compilation cache for the session lets tests that build the same model twice compile it once.
"""

import os
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="jaxsora-test-xla-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
