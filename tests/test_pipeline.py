import itertools
import logging

import numpy as np
import pytest
from fakes import FakeSource

from jaxsora.config import load_config
from jaxsora.data.pipeline import batched_dataset, clip_dataset


def tiny_config(*overrides):
    return load_config("configs/tiny.py", ["data.max_batch_pixels=40000", *overrides])


def test_clips_keep_native_aspect_and_valid_durations():
    config = tiny_config()
    for element in itertools.islice(clip_dataset(FakeSource(12), config, shard_index=0, shard_count=1), 12):
        t, h, w, c = element["video"].shape
        info = FakeSource().info(int(element["index"]))
        assert c == 3 and h % 16 == 0 and w % 16 == 0 and h * w <= 64 * 64
        assert (t - 1) % 4 == 0 and t <= 17
        assert abs(np.log((w / h) / (info.width / info.height))) < 0.35  # one 16-px rounding step at 64 px
        if info.height > info.width:
            assert h > w  # 9:16 stays portrait
        assert element["text_tokens"].shape == (config.text.max_len,)


def test_square_crop_when_asked():
    config = tiny_config("data.crop=square")
    shapes = {
        e["video"].shape[1:3]
        for e in itertools.islice(clip_dataset(FakeSource(12), config, shard_index=0, shard_count=1), 12)
    }
    assert shapes == {(64, 64)}


def test_batches_have_one_shape_and_values_in_range():
    config = tiny_config()
    it = iter(batched_dataset(FakeSource(60), config, shard_index=0, shard_count=1))
    for batch in itertools.islice(it, 12):
        video = batch["video"]
        assert video.ndim == 5 and video.dtype == np.float32
        assert -1.0 <= video.min() and video.max() <= 1.0
        assert len(batch["caption"]) == video.shape[0] == batch["text_tokens"].shape[0]
        assert video.shape[0] * np.prod(video.shape[1:4]) <= 40000 or video.shape[0] == 1


def test_uint8_batches_are_the_same_pixels():
    """``video_dtype="uint8"`` (the VAE trainer's: a quarter of the host work and transfer) gives the float
    batches' pixels, converted on the consumer's side by ``to_signed_unit`` (numpy or jax)."""
    import jax.numpy as jnp

    from jaxsora.data.pixels import to_signed_unit

    config = tiny_config()
    floats = itertools.islice(batched_dataset(FakeSource(40), config, shard_index=0, shard_count=1), 4)
    ints = itertools.islice(
        batched_dataset(FakeSource(40), config, shard_index=0, shard_count=1, video_dtype="uint8"), 4
    )
    for f, i in zip(floats, ints, strict=True):
        assert i["video"].dtype == np.uint8 and i["index"].tolist() == f["index"].tolist()
        np.testing.assert_array_equal(to_signed_unit(i["video"]), f["video"])
        np.testing.assert_allclose(np.asarray(to_signed_unit(jnp.asarray(i["video"]))), f["video"], atol=1e-6)
    with pytest.raises(ValueError, match="video_dtype"):
        batched_dataset(FakeSource(4), config, shard_index=0, shard_count=1, video_dtype="float16")


def test_epoch_covers_every_clip_once():
    config = tiny_config()
    seen = []
    for batch in batched_dataset(FakeSource(30), config, shard_index=0, shard_count=1, num_epochs=1):
        seen += batch["index"].tolist()
    assert sorted(seen) == list(range(30))


@pytest.mark.parametrize("num_threads", [0, 2])
def test_iterator_state_restores_the_same_next_batches(num_threads):
    config = load_config("configs/tiny.py", [f"data.num_threads={num_threads}"])  # batches of several clips
    ds = batched_dataset(FakeSource(60), config, shard_index=0, shard_count=1)
    it = iter(ds)
    for _ in range(3):
        next(it)
    state = it.get_state()
    assert state["replay"] > len(state["emitted"])  # clips are waiting in partial buckets
    expected = [next(it) for _ in range(6)]
    fresh = iter(batched_dataset(FakeSource(60), config, shard_index=0, shard_count=1))
    fresh.set_state(state)
    for want in expected:
        got = next(fresh)
        np.testing.assert_array_equal(got["video"], want["video"])
        assert got["caption"] == want["caption"]


def test_shards_split_without_overlap():
    config = tiny_config()
    shards = [
        {
            int(e["index"])
            for e in clip_dataset(FakeSource(50), config, shard_index=k, shard_count=4, num_epochs=1)
        }
        for k in range(4)
    ]
    assert sum(len(s) for s in shards) == 50
    assert set().union(*shards) == set(range(50))


def test_unreadable_clip_skipped_counted_and_warned_once(caplog):
    config = tiny_config()
    it = iter(
        batched_dataset(FakeSource(24, broken=(3, 10)), config, shard_index=0, shard_count=1, num_epochs=2)
    )
    with caplog.at_level(logging.WARNING):
        seen = [i for batch in it for i in batch["index"].tolist()]
    assert 3 not in seen and 10 not in seen and len(seen) == 2 * 22
    assert it.skipped == {"fake/3": 2, "fake/10": 2}
    warnings = [r.message for r in caplog.records if "unreadable" in r.message]
    assert len(warnings) == 2 and any("fake/3" in w for w in warnings)


def test_epochs_reshuffle():
    config = tiny_config()
    order = [
        int(e["index"])
        for e in itertools.islice(clip_dataset(FakeSource(20), config, shard_index=0, shard_count=1), 40)
    ]
    assert sorted(order[:20]) == sorted(order[20:]) == list(range(20))
    assert order[:20] != order[20:]
