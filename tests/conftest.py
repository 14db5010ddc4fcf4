"""Test setup: 8 forced CPU devices so sharding is tested on a real 8-device mesh.

The flags must be set before jax is imported anywhere, which is why they live here at module import time.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
