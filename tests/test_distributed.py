"""Multi-process (multi-host) start-up: when a process joins others, and two real CPU processes forming one
4-device mesh, each feeding its own slice of a global batch; two processes encoding one latent dataset."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import portpicker
import pytest

from jaxsora.data.latents import ChannelStats, LatentDataset
from jaxsora.parallel import distributed_settings

REPO = pathlib.Path(__file__).resolve().parents[1]

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
    print("RESULT", json.dumps({"process": jax.process_index(), "processes": jax.process_count(),
                                "devices": jax.device_count(), "shape": list(batch.shape), "sum": float(total)}),
          flush=True)
    """
)


ENCODE_SETTINGS = [
    "data.max_pixels=1024",
    "data.max_frames=9",
    "data.batch_multiple=1",
    "data.max_batch_size=4",
    "data.synthetic.num_clips=12",
    "data.synthetic.min_frames=9",
    "vae.dtype=float32",
]

ENCODER = textwrap.dedent(
    """
    import json, sys
    from jaxsora import parallel
    parallel.initialize_distributed()
    import flax.linen as nn
    import jax
    from jaxsora.config import load_config
    from jaxsora.encode import encode_dataset
    from jaxsora.models.vae_codec import VideoCodec
    from jaxsora.train.vae import VAEParts

    def codec_and_config(settings):  # an untrained VAE: the same weights in every process
        config = load_config("configs/tiny.py", settings)
        parts = VAEParts(config)
        state = nn.meta.unbox(jax.jit(parts.init)(jax.random.key(0)))
        return VideoCodec(parts.cfg, state.ema_params), config

    if __name__ == "__main__":
        codec, config = codec_and_config(json.loads(sys.argv[2]))
        meta = encode_dataset(codec, config, sys.argv[1], part_size=2, progress=False)
        print("RESULT", json.dumps(meta), flush=True)
    """
)


def run_two(script, *args) -> list[str]:
    """Runs ``script`` in two CPU processes joined by jax.distributed (2 devices each); the text each printed
    after ``RESULT `` (the collectives' C++ libraries write their own lines to stdout, at any time)."""
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
                [sys.executable, str(script), *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=REPO,
            )
        )
    lines = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
        results = [line[len("RESULT ") :] for line in out.decode().splitlines() if line.startswith("RESULT ")]
        assert len(results) == 1, out.decode()[-2000:]
        lines.append(results[0])
    return lines


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
    results = [json.loads(line) for line in run_two(script)]
    assert sorted(r["process"] for r in results) == [0, 1]
    for r in results:
        # 2 processes x 2 devices; each gave 4 rows of 3 (process 0 ones, process 1 twos): 12 + 24
        assert r["processes"] == 2 and r["devices"] == 4 and r["shape"] == [8, 3] and r["sum"] == 36.0


def test_two_processes_encode_one_dataset_marked_complete_with_every_shard(tmp_path):
    """Each process encodes its shard; the dataset's meta.json, written by process 0 after gathering every
    shard's statistics and clip count, holds the statistics of all the records both wrote."""
    script = tmp_path / "encoder.py"
    script.write_text(ENCODER)
    metas = [json.loads(line) for line in run_two(script, str(tmp_path / "two"), json.dumps(ENCODE_SETTINGS))]
    written = json.loads((tmp_path / "two" / "meta.json").read_text())
    dataset = LatentDataset(tmp_path / "two")
    assert len(dataset) == 12 and sorted(
        {r["source_id"] for r in map(dataset.__getitem__, range(12))}
    ) == sorted(f"synthetic/0/{i}" for i in range(12))
    stats = ChannelStats(16)
    for i in range(len(dataset)):
        stats.update(dataset[i]["mean"])
    for meta in (*metas, written):
        assert meta["complete"] is True and meta["clips"] == 12
        np.testing.assert_allclose(meta["latent_mean"], stats.mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(meta["latent_std"], stats.std, rtol=1e-9, atol=1e-12)
