"""Multi-process (multi-host) start-up: when a process joins others, and two real CPU processes forming one
4-device mesh, each feeding its own slice of a global batch."""

import json
import os
import subprocess
import sys
import textwrap

import portpicker
import pytest

from jaxsora.parallel import distributed_settings

WORKER = textwrap.dedent(
    """
    import json
    from jaxsora import parallel
    assert parallel.initialize_distributed() and not parallel.initialize_distributed()  # once
    import jax, jax.numpy as jnp, numpy as np
    mesh = parallel.make_mesh({"data": jax.device_count(), "fsdp": 1, "tensor": 1, "sequence": 1})
    local = np.full((2 * jax.local_device_count(), 3), 1.0 + jax.process_index(), np.float32)
    batch = parallel.put_batch(mesh, local)
    total = jax.jit(jnp.sum, out_shardings=parallel.replicated(mesh))(batch)
    print(json.dumps({"process": jax.process_index(), "processes": jax.process_count(),
                      "devices": jax.device_count(), "shape": list(batch.shape), "sum": float(total)}))
    """
)


def test_settings_from_the_environment():
    assert distributed_settings({}) is None
    assert distributed_settings({"SLURM_NTASKS": "1"}) is None
    assert distributed_settings({"SLURM_NTASKS": "4"}) == {}  # JAX detects the rest
    assert distributed_settings({"JAXSORA_DISTRIBUTED": "auto"}) == {}
    env = {"JAX_COORDINATOR_ADDRESS": "h0:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}
    assert distributed_settings(env) == {
        "coordinator_address": "h0:1234",
        "num_processes": 2,
        "process_id": 1,
    }
    assert distributed_settings({**env, "JAX_LOCAL_DEVICE_IDS": "0,1"})["local_device_ids"] == [0, 1]
    assert distributed_settings({**env, "JAX_NUM_PROCESSES": "1"}) is None
    with pytest.raises(ValueError, match="JAX_PROCESS_ID"):
        distributed_settings({"JAX_COORDINATOR_ADDRESS": "h0:1234", "JAX_NUM_PROCESSES": "2"})


def test_two_processes_make_one_mesh_and_one_batch(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = portpicker.pick_unused_port()
    procs = []
    for i in range(2):
        env = dict(
            os.environ,
            JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
            JAX_NUM_PROCESSES="2",
            JAX_PROCESS_ID=str(i),
            XLA_FLAGS="--xla_force_host_platform_device_count=2",
            JAX_PLATFORMS="cpu",
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        )
    results = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err.decode()[-2000:]
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    assert sorted(r["process"] for r in results) == [0, 1]
    for r in results:
        # 2 processes x 2 devices; each gave 4 rows of 3 (process 0 ones, process 1 twos): 12 + 24
        assert r["processes"] == 2 and r["devices"] == 4 and r["shape"] == [8, 3] and r["sum"] == 36.0
