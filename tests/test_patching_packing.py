"""Spacetime patches (jaxsora/patching.py) and NaViT-style packing (jaxsora/data/packing.py)."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsora import patching, tokenizer
from jaxsora.config import load_config
from jaxsora.data import packing

REPO = pathlib.Path(__file__).resolve().parents[1]

C = 4


def _config(**packing_overrides):
    config = load_config("configs/tiny.py")
    config.text.max_len = 16
    config.data.num_threads = 1
    settings = dict(seq_len=96, max_clips_per_pack=12, num_bins=3, batch_size=0)
    config.packing.update({**settings, **packing_overrides})
    return config


def _records(n: int, seed: int = 0, grids=((1, 2, 3), (3, 3, 3), (2, 4, 2), (5, 3, 5), (1, 1, 1), (4, 2, 4))):
    """Latent records of mixed shapes (patch (1, 2, 2)); record i's caption is 'clip i'."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t, h, w = grids[int(rng.integers(len(grids)))]
        tokens, mask = tokenizer.encode(f"clip {i}", 16)
        out.append(
            {"mean": rng.standard_normal((t, 2 * h, 2 * w, C), np.float32), "tokens": tokens, "mask": mask}
        )
    return out


def _packs(records, config, count=None, **kwargs):
    ds = packing.packed_dataset(
        grain.MapDataset.source(records), config, shard_index=0, shard_count=1, **kwargs
    )
    it = iter(ds)
    return list(it) if count is None else [next(it) for _ in range(count)]


# -- patching ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape,patch",
    [
        ((1, 8, 8, 3), (1, 2, 2)),
        ((5, 6, 10, 16), (1, 2, 2)),
        ((3, 5, 7, 2), (1, 1, 1)),
        ((4, 6, 9, 1), (2, 3, 3)),
    ],
)
def test_patchify_round_trip(shape, patch):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    tokens, positions = patching.patchify(x, patch)
    grid = patching.grid_shape(shape, patch)
    assert tokens.shape == (np.prod(grid), np.prod(patch) * shape[-1])
    assert positions.dtype == np.int32 and positions.shape == (np.prod(grid), 3)
    np.testing.assert_array_equal(positions, patching.grid_positions(grid))
    np.testing.assert_array_equal(patching.unpatchify(tokens, grid, patch, shape[-1]), x)
    # token j is the patch at its position: t-major, then h, then w
    pt, ph, pw = patch
    for j in (0, len(tokens) // 2, len(tokens) - 1):
        t, h, w = positions[j]
        block = x[t * pt : (t + 1) * pt, h * ph : (h + 1) * ph, w * pw : (w + 1) * pw]
        np.testing.assert_array_equal(tokens[j], block.reshape(-1))
    # the same under jit
    jt, _ = jax.jit(lambda a: patching.patchify(a, patch))(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(jt), tokens)
    back = jax.jit(lambda a: patching.unpatchify(a, grid, patch, shape[-1]))(jt)
    np.testing.assert_array_equal(np.asarray(back), x)


def test_grid_positions_order():
    pos = patching.grid_positions((2, 1, 3))
    assert pos.tolist() == [[0, 0, 0], [0, 0, 1], [0, 0, 2], [1, 0, 0], [1, 0, 1], [1, 0, 2]]


def test_bad_shapes_give_clear_errors():
    with pytest.raises(ValueError, match=r"\(1, 7, 8, 3\) is not divisible by the patch \(1, 2, 2\)"):
        patching.patchify(np.zeros((1, 7, 8, 3)), (1, 2, 2))
    with pytest.raises(ValueError, match=r"must be \[t, h, w, C\]"):
        patching.patchify(np.zeros((8, 8, 3)), (1, 2, 2))
    with pytest.raises(ValueError, match="patch must be three positive"):
        patching.patchify(np.zeros((1, 8, 8, 3)), (2, 2))
    with pytest.raises(ValueError, match="none dropped"):
        patching.unpatchify(np.zeros((5, 12)), (1, 2, 3), (1, 2, 2), 3)
    with pytest.raises(ValueError, match="grid must be three positive"):
        patching.grid_positions((0, 2, 2))


# -- packing -------------------------------------------------------------------------------------------------
def test_pack_round_trip_exact_and_consistent():
    config = _config()
    records = _records(40)
    packs = _packs(records, config, num_epochs=1)
    seen = []
    for pack in packs:
        seg = pack["segment_ids"]
        assert pack["tokens"].shape == (96, 4 * C) and pack["positions"].shape == (96, 3)
        assert pack["text_tokens"].shape == (12, 16)
        used = pack["text_segment_ids"] > 0
        k = int(used.sum())
        assert pack["text_segment_ids"][:k].tolist() == list(range(1, k + 1)) and not used[k:].any()
        # each segment is one contiguous run; padding is at the end and zero
        changes = np.flatnonzero(np.diff(np.concatenate([[0], seg])) != 0)
        assert len(changes[seg[changes] > 0]) == k  # one run per segment
        real = int(pack["num_tokens"].sum())
        assert seg[:real].all() and not seg[real:].any()
        assert not pack["tokens"][seg == 0].any() and not pack["positions"][seg == 0].any()
        for j in range(k):
            np.testing.assert_array_equal(
                pack["positions"][seg == j + 1], patching.grid_positions(pack["grid"][j])
            )
        for clip in packing.unpack(pack):
            assert clip["complete"]
            rec = records[clip["index"]]
            latents = patching.unpatchify(clip["tokens"], clip["grid"], (1, 2, 2), C)
            np.testing.assert_array_equal(latents, rec["mean"])
            assert tokenizer.decode(clip["text_tokens"][clip["text_mask"]]) == f"clip {clip['index']}"
            seen.append(clip["index"])
    # every clip exactly once, none split across packs
    assert sorted(seen) == list(range(40))
    assert packing.efficiency(packs) > 0.5


def test_batched_packs_and_cross_attention_mask():
    config = _config(batch_size=2)
    batch = _packs(_records(30), config, count=1)[0]
    assert batch["tokens"].shape == (2, 96, 4 * C) and batch["segment_ids"].shape == (2, 96)
    assert len(packing.unpack(batch)) == int((batch["text_segment_ids"] > 0).sum())
    mask = packing.cross_attention_mask(batch["segment_ids"], batch["text_segment_ids"], batch["text_mask"])
    assert mask.shape == (2, 96, 12 * 16)
    b, q = 1, 0
    j = batch["segment_ids"][b, q] - 1
    expect = np.zeros((12, 16), bool)
    expect[j] = batch["text_mask"][b, j]
    np.testing.assert_array_equal(mask[b, q].reshape(12, 16), expect)
    assert not mask[batch["segment_ids"] == 0].any()
    jmask = packing.cross_attention_mask(
        jnp.asarray(batch["segment_ids"]),
        jnp.asarray(batch["text_segment_ids"]),
        jnp.asarray(batch["text_mask"]),
    )
    np.testing.assert_array_equal(np.asarray(jmask), mask)


def test_token_dropping_keeps_positions():
    config = _config(drop_rate=0.5)
    records = _records(40, grids=((3, 3, 3), (2, 4, 4), (4, 3, 2)))
    kept = full = 0
    for pack in _packs(records, config, num_epochs=1):
        for clip in packing.unpack(pack):
            grid_tokens, _ = patching.patchify(records[clip["index"]]["mean"], (1, 2, 2))
            n = int(np.prod(clip["grid"]))
            assert not clip["complete"] and len(clip["tokens"]) == round(n * 0.5)
            # each kept token is the original token at its (kept) position
            flat = np.ravel_multi_index(clip["positions"].T, clip["grid"])
            assert len(np.unique(flat)) == len(flat)
            np.testing.assert_array_equal(clip["tokens"], grid_tokens[flat])
            kept, full = kept + len(flat), full + n
    assert abs(kept / full - 0.5) < 0.02


def test_overflow_error_and_drop():
    config = _config(seq_len=16)
    big = _records(1, grids=((5, 3, 5),))  # 75 tokens
    with pytest.raises(ValueError, match="more than packing.seq_len 16"):
        _packs(big, config, num_epochs=1)
    config = _config(seq_len=16, overflow="drop")
    (pack,) = _packs(big, config, num_epochs=1)
    (clip,) = packing.unpack(pack)
    assert len(clip["tokens"]) == 16 and pack["segment_ids"].all()
    with pytest.raises(ValueError, match="drop_rate must be in"):
        packing.PatchClip((1, 2, 2), seq_len=8, text_len=8, drop_rate=1.0)


def test_iterator_state_restores_exactly():
    config = _config(drop_rate=0.25, batch_size=2)
    ds = packing.packed_dataset(grain.MapDataset.source(_records(50)), config, shard_index=0, shard_count=1)
    it = iter(ds)
    for _ in range(4):  # mid-round: 3 bins a round, batches of 2
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(5)]
    it2 = iter(ds)
    it2.set_state(state)
    for a, b in zip(expected, [next(it2) for _ in range(5)], strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_efficiency_on_mixture():
    """Tiny-config-like mixture: 1 or 5 latent frames, ~8x8 latents at several aspects (12-80 tokens)."""
    config = _config(seq_len=1024, max_clips_per_pack=64, num_bins=16)
    config.text.max_len = 16
    grids = ((5, 3, 5), (5, 5, 3), (5, 2, 6), (5, 4, 4), (1, 3, 5), (1, 4, 4), (3, 3, 5), (4, 2, 7))
    records = _records(300, grids=grids)
    packs = _packs(records, config, count=5 * 16)
    assert packing.efficiency(packs) >= 0.95


def test_worker_processes_start_without_parsed_absl_flags():
    """`packing.num_workers` > 0 from a plain script (no absl app, no jaxsora CLI): Grain's workers read absl
    flags, which such a program never parsed; packed_dataset marks them parsed (it failed with Grain's
    UnparsedFlagAccessError before)."""
    script = textwrap.dedent(
        """
        import grain, numpy as np
        from jaxsora import tokenizer
        from jaxsora.config import load_config
        from jaxsora.data import packing

        config = load_config("configs/tiny.py", ["text.max_len=16", "packing.seq_len=96",
                                                 "packing.batch_size=2", "packing.num_workers=1"])
        tokens, mask = tokenizer.encode("a clip", 16)
        rng = np.random.default_rng(0)
        records = [{"mean": rng.standard_normal((3, 4, 6, 16), np.float32), "tokens": tokens, "mask": mask}
                   for _ in range(8)]
        ds = packing.packed_dataset(grain.MapDataset.source(records), config, shard_index=0, shard_count=1)
        print("batch", next(iter(ds))["tokens"].shape)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "batch (2, 96, 64)" in out.stdout


def test_closing_an_iterator_with_worker_processes_leaves_no_shared_memory():
    """Grain's worker processes hand each element over in a shared-memory block that this process unlinks on
    a background thread; a program that exits right after its loop left blocks behind, and Python's resource
    tracker warned of "leaked shared_memory objects" (8 here, 20 after the GPU recipe's encode).
    `close_iterator` waits for those unlinks; a second iterator afterwards still works."""
    script = textwrap.dedent(
        """
        import grain, numpy as np
        from jaxsora import tokenizer
        from jaxsora.config import load_config
        from jaxsora.data import packing
        from jaxsora.data.pipeline import close_iterator

        def main():
            config = load_config("configs/tiny.py", ["text.max_len=16", "packing.seq_len=96",
                                                     "packing.batch_size=2", "packing.num_workers=2"])
            tokens, mask = tokenizer.encode("a clip", 16)
            rng = np.random.default_rng(0)
            records = [{"mean": rng.standard_normal((3, 4, 6, 16), np.float32), "tokens": tokens,
                        "mask": mask} for _ in range(64)]
            for run in range(2):
                it = iter(packing.packed_dataset(grain.MapDataset.source(records), config, shard_index=0,
                                                 shard_count=1))
                batches = [next(it) for _ in range(3)]
                close_iterator(it)
                print("run", run, batches[-1]["tokens"].shape, flush=True)

        if __name__ == "__main__":  # Grain's workers re-import this module
            main()
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "run 0 (2, 96, 64)" in out.stdout and "run 1 (2, 96, 64)" in out.stdout
    assert "leaked shared_memory" not in out.stderr, out.stderr[-3000:]
    assert "Exception ignored" not in out.stderr, out.stderr[-3000:]
