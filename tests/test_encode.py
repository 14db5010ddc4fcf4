"""`jaxsora encode`: the latent dataset round-trips, resumes after interruption, and evaluation runs."""

import json

import jax
import numpy as np
import pytest
from fakes import FakeSource

import jaxsora.encode as encode_mod
import jaxsora.train.vae as vae_train
import jaxsora.train.vae_eval as vae_eval
from jaxsora.config import load_config
from jaxsora.data.latents import LatentDataset, finished_view, write_meta
from jaxsora.encode import encode_dataset

OVERRIDES = [
    "data.max_pixels=1024",
    "data.max_frames=9",
    "data.batch_multiple=8",
    "data.max_batch_size=8",
    "vae.dtype=float32",
    "vae_train.steps=1",  # a train-vae workdir to encode with: one step is enough
    "vae_train.sample_every=0",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("vae")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vae_train, "make_source", lambda data: FakeSource(24))
        vae_train.VAETrainer(load_config("configs/tiny.py", OVERRIDES), workdir).run(progress=False)
    return workdir


@pytest.fixture(autouse=True)
def fake_data(monkeypatch):
    monkeypatch.setattr(encode_mod, "make_source", lambda data: FakeSource(24))
    monkeypatch.setattr(vae_eval, "make_source", lambda data: FakeSource(24))


def test_encode_round_trip(trained, tmp_path, monkeypatch):
    codec, config = vae_train.load_codec(trained)
    early = []  # meta.json as the first batch is encoded: written at the start, for a trainer beside the encode
    encode = codec.encode

    def first_sees_meta(*args, **kwargs):
        if not early:
            early.append(json.loads((tmp_path / "latents" / "meta.json").read_text()))
        return encode(*args, **kwargs)

    monkeypatch.setattr(codec, "encode", first_sees_meta)
    meta = encode_dataset(codec, config, tmp_path / "latents", part_size=5, progress=False)
    assert early[0]["complete"] is False and early[0]["latent_channels"] == codec.cfg.latent_channels
    assert "latent_mean" not in early[0] and meta["complete"] is True
    assert json.loads((tmp_path / "latents" / "meta.json").read_text()) == json.loads(json.dumps(meta))
    ds = LatentDataset(tmp_path / "latents")
    assert len(ds) == meta["clips"] == 24
    assert len(meta["latent_std"]) == codec.cfg.latent_channels
    for i in range(len(ds)):
        r = ds[i]
        t, h, w = r["frames"], r["height"], r["width"]
        assert r["mean"].shape == (1 + (t - 1) // 4, h // 8, w // 8, codec.cfg.latent_channels)
        assert r["std"].shape == r["mean"].shape and (r["std"] > 0).all()
        index = int(r["source_id"].split("/")[1])
        assert r["caption"] == f"clip number {index}"
        decoded = codec.decode(jax.numpy.asarray(r["mean"][None]))
        assert decoded.shape == (1, t, h, w, 3)
    # What a trainer beside the encode reads: the whole dataset once complete; while the encode runs, the
    # parts its progress file lists as finished, with their clips' statistics (here all of the parts, each
    # closed at the first batch that reaches 5 clips).
    whole = finished_view(tmp_path / "latents")
    assert whole.complete and whole.clips == 24 and list(whole.latent_mean) == meta["latent_mean"]
    parts = json.loads((tmp_path / "latents" / "progress-p000.json").read_text())["parts"]
    assert parts >= 2 and whole.files == tuple(f"latents-p000-{k:05d}.array_record" for k in range(parts))
    write_meta(tmp_path / "latents", meta | {"complete": False})
    running = finished_view(tmp_path / "latents")
    assert not running.complete and running.files == whole.files and running.clips == 24
    np.testing.assert_allclose(running.latent_mean, whole.latent_mean, rtol=1e-9)
    np.testing.assert_allclose(running.latent_std, whole.latent_std, rtol=1e-9)
    assert 10 <= len(LatentDataset(tmp_path / "latents", running.files[:2])) < 24


def test_encode_resumes_where_it_stopped(trained, tmp_path):
    codec, config = vae_train.load_codec(trained)
    encode_dataset(codec, config, tmp_path / "full", part_size=5, progress=False)
    encode_dataset(codec, config, tmp_path / "resumed", part_size=5, max_clips=10, progress=False)
    progress = json.loads((tmp_path / "resumed" / "progress-p000.json").read_text())
    assert progress["clips"] >= 10 and progress["parts"] >= 1
    encode_dataset(codec, config, tmp_path / "resumed", part_size=5, progress=False)
    full, resumed = LatentDataset(tmp_path / "full"), LatentDataset(tmp_path / "resumed")
    assert len(full) == len(resumed) == 24
    assert sorted(full[i]["source_id"] for i in range(24)) == sorted(
        resumed[i]["source_id"] for i in range(24)
    )
    meta_full = json.loads((tmp_path / "full" / "meta.json").read_text())
    meta_resumed = json.loads((tmp_path / "resumed" / "meta.json").read_text())
    np.testing.assert_allclose(meta_full["latent_mean"], meta_resumed["latent_mean"], rtol=1e-9)


def test_eval_reports_psnr_ssim_and_throughput(trained):
    codec, config = vae_train.load_codec(trained)
    result = vae_eval.evaluate(codec, config, num_clips=6, seed=5)
    assert result["all"]["clips"] == 6 and np.isfinite(result["all"]["psnr"])
    # Coded in padded per-shape batches, the figure is the mean of the clips' own one-clip PSNRs.
    source = vae_eval.make_source(config.data)
    ds = vae_eval.clip_dataset(
        source, vae_eval.heldout_config(config, 5), shard_index=0, shard_count=1, num_epochs=1
    )
    psnrs = []
    for element in ds.to_iter_dataset():
        x = jax.numpy.asarray(element["video"][None], jax.numpy.float32) / 127.5 - 1.0
        y = jax.numpy.clip(codec.decode(codec.encode(x)), -1, 1)
        psnrs.append(float(vae_eval.metrics_lib.psnr(y, x)[0]))
        if len(psnrs) == 6:
            break
    np.testing.assert_allclose(result["all"]["psnr"], np.mean(psnrs), rtol=1e-5)
    assert -1 <= result["all"]["ssim"] <= 1
    rows = vae_eval.throughput(codec, [(32, 48)], frames=5, repeats=2)
    assert rows[0]["encode_frames_per_s"] > 0 and rows[0]["decode_frames_per_s"] > 0


def test_encode_pads_partial_batches_to_one_size_per_shape(trained, tmp_path):
    """Partial batches (bucket flushes, the last batch) are padded to the bucket's full size, so the encoder
    compiles once per clip shape; the padded rows are not written, and each clip's latents equal its own
    one-clip encoding."""
    codec, config = vae_train.load_codec(trained)
    config.data.max_buffered = 3  # flush partial buckets often
    seen = {}
    real_encode = codec.encode

    def recording_encode(video, **kw):
        seen.setdefault(tuple(video.shape[1:4]), set()).add(video.shape[0])
        return real_encode(video, **kw)

    codec.encode = recording_encode
    meta = encode_dataset(codec, config, tmp_path / "latents", part_size=100, progress=False)
    assert meta["clips"] == 24
    assert seen and all(sizes == {8} for sizes in seen.values()), seen
    ds = LatentDataset(tmp_path / "latents")
    assert len({ds[i]["source_id"] for i in range(len(ds))}) == 24
    r = ds[0]
    index = int(r["source_id"].split("/")[1])
    clip = FakeSource(24).load(index, list(range(r["frames"])), r["height"], r["width"]).frames
    alone, _ = real_encode(jax.numpy.asarray(clip[None], jax.numpy.float32) / 127.5 - 1.0, with_std=True)
    np.testing.assert_allclose(r["mean"], np.asarray(alone[0]), atol=1e-5)


def test_encode_runs_the_encoders_compiled_ahead(trained, tmp_path, monkeypatch):
    """The encoder is compiled ahead for every clip shape of the source (found from its clip descriptions),
    each batch runs one of those executables (jit never compiles), and the latents are those of a run
    without them."""
    codec, config = vae_train.load_codec(trained)
    meta = encode_dataset(codec, config, tmp_path / "ahead", part_size=100, progress=False)
    assert meta["clips"] == 24
    ahead = LatentDataset(tmp_path / "ahead")
    shapes = {(ahead[i]["frames"], ahead[i]["height"], ahead[i]["width"]) for i in range(len(ahead))}
    compiled = {key[0][1:4] for key in codec._encode_ahead}
    assert shapes and shapes <= compiled, (shapes, compiled)
    assert all(key[1] == np.uint8 and key[0][0] == 8 for key in codec._encode_ahead)
    assert codec._encode._cache_size() == 0  # every batch ran an executable compiled ahead

    monkeypatch.setattr(encode_mod, "precompile_shapes", lambda *a, **k: None)
    plain, _ = vae_train.load_codec(trained)
    encode_dataset(plain, config, tmp_path / "jit", part_size=100, progress=False)
    assert not plain._encode_ahead and plain._encode._cache_size() == len(shapes)
    jit = LatentDataset(tmp_path / "jit")
    by_id = {jit[i]["source_id"]: jit[i] for i in range(len(jit))}
    for i in range(len(ahead)):
        np.testing.assert_allclose(ahead[i]["mean"], by_id[ahead[i]["source_id"]]["mean"], atol=1e-6)
