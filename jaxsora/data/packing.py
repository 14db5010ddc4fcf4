"""NaViT-style packing: latent clips of any shape -> fixed-length sequences of spacetime patch tokens.

    latent records -> [index attached] -> [this process's shard] -> [shuffle] -> repeat
        -> PatchClip (patchify; optional random token dropping; text fitted to text_len)
        -> IterDataset -> Grain's FirstFitPackIterDataset (num_bins bins of seq_len tokens, at most
           max_clips_per_pack clips a bin) -> FinishPack (fixed-shape text and per-clip table) -> batch

One packed sequence (``[B, ...]`` in front once batched; ``K = max_clips_per_pack``, ``L = text_len``)::

    tokens        float32 [seq_len, D]   patch values, D = pt*ph*pw*C; zeros in padding
    segment_ids   int32   [seq_len]      1..k for the clips in the pack, 0 for padding
    positions     int32   [seq_len, 3]   each token's (t, h, w) on its clip's patch grid (0 in padding)
    text_tokens   int32   [K, L]         row j is the caption of segment j + 1 (byte tokens, or ``tokenize``'s)
    text_mask     bool    [K, L]         its real tokens
    text_segment_ids int32 [K]           j + 1 for a used row, 0 for an empty one
    grid          int32   [K, 3]         clip j's patch grid (T, H, W), to rebuild it or make its noise
    num_tokens    int32   [K]            tokens clip j has in the pack (T*H*W unless tokens were dropped)
    index         int64   [K]            clip j's record index in the latent dataset (-1: empty row)

Text: one fixed row per clip, not a second packed sequence. Each caption stays a separate ``[L]`` sequence,
so the (frozen) text encoder runs on ``[B*K, L]`` exactly as it would on unpacked captions, with no
segment-aware attention inside it, and per-clip masked cross-attention is one comparison
(:func:`cross_attention_mask`): video token q may attend text token (j, l) iff ``segment_ids[q] == j + 1``
and ``text_mask[j, l]``. The cost is K*L text slots a pack; K is small (clips are tens of tokens).

Packing is Grain's own first-fit (``grain.experimental.FirstFitPackIterDataset``): it fills ``num_bins``
bins, and the first clip that fits in none closes the round, which emits all bins (in a seeded shuffled
order). More bins = less padding (a closing round wastes less than one clip per bin) but clips from further
apart share packs. Our 3D ``positions`` ride along as a packed *meta* feature (padded, no segment ids of
their own); text, grid and index are per-clip meta features that Grain gathers per bin, and ``FinishPack``
turns those lists into the fixed arrays above. Grain's own 1D positions are not used (3D positions replace
them).

Checkpointing: the packer's state is its parent's state at the start of the current round plus how many of
the round's bins were emitted; restoring re-reads that round's clips (at most ``num_bins * K``) and re-packs
them, which gives the same packs because every step before it is deterministic in (seed, position): the
token-dropping rng comes from Grain's ``random_map``.

Clips with more than ``seq_len`` tokens (after dropping): ``overflow="error"`` (default) stops with a
ValueError naming the clip and the fix (raise ``packing.seq_len`` or lower ``data.max_pixels`` /
``data.max_frames``), since silently training on fragments of the largest clips biases the model;
``overflow="drop"`` keeps a random ``seq_len`` of its tokens with their positions (NaViT's token dropping,
applied to just the clips that need it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grain
import ml_collections
import numpy as np

from jaxsora import patching

# Keys the packer packs along the sequence (values) and the ones it carries per clip.
_SEQUENCE_KEYS = ("tokens", "positions")
_CLIP_KEYS = ("text_tokens", "text_mask", "grid", "index")


def _fit_text(tokens: np.ndarray, mask: np.ndarray, text_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Pads (or, when only padding would be cut, shortens) a record's fixed-length text to ``text_len``."""
    tokens = np.asarray(tokens, np.int32)
    mask = np.asarray(mask, bool)
    n = len(tokens)
    if n > text_len:
        if mask[text_len:].any():
            raise ValueError(
                f"a caption has {int(mask.sum())} text tokens, more than packing text_len {text_len}: "
                "set --config.text.max_len to at least the latent dataset's text length"
            )
        return tokens[:text_len], mask[:text_len]
    out_t, out_m = np.zeros(text_len, np.int32), np.zeros(text_len, bool)
    out_t[:n], out_m[:n] = tokens, mask
    return out_t, out_m


class PatchClip(grain.transforms.RandomMap):
    """Latent record -> one clip's tokens, positions, text, grid and index (see the module docstring)."""

    def __init__(
        self,
        patch: Sequence[int],
        *,
        seq_len: int,
        text_len: int,
        drop_rate: float = 0.0,
        overflow: str = "error",
    ):
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"packing.drop_rate must be in [0, 1), got {drop_rate}")
        if overflow not in ("error", "drop"):
            raise ValueError(f"packing.overflow must be 'error' or 'drop', got {overflow!r}")
        self.patch = tuple(patch)
        self.seq_len = seq_len
        self.text_len = text_len
        self.drop_rate = drop_rate
        self.overflow = overflow

    def random_map(self, record: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        latents = np.asarray(record["mean"], np.float32)
        grid = patching.grid_shape(latents.shape, self.patch)
        tokens, positions = patching.patchify(latents, self.patch)
        n = len(tokens)
        keep = max(1, int(round(n * (1.0 - self.drop_rate)))) if self.drop_rate > 0 else n
        if keep > self.seq_len:
            if self.overflow == "error":
                raise ValueError(
                    f"clip {record.get('source_id', record.get('index', '?'))!s} has {keep} tokens "
                    f"(latents {latents.shape}, grid {grid}, patch {self.patch}), more than packing.seq_len "
                    f"{self.seq_len}: raise packing.seq_len, lower data.max_pixels/max_frames, or set "
                    "packing.overflow=drop"
                )
            keep = self.seq_len
        if keep < n:  # a random subset, in token order, each keeping its position
            chosen = np.sort(rng.choice(n, size=keep, replace=False))
            tokens, positions = tokens[chosen], positions[chosen]
        text_tokens, text_mask = _fit_text(record["tokens"], record["mask"], self.text_len)
        return {
            "tokens": np.ascontiguousarray(tokens),
            "positions": positions,
            "text_tokens": text_tokens,
            "text_mask": text_mask,
            "grid": np.asarray(grid, np.int32),
            "index": np.int64(record.get("index", -1)),
        }


class FinishPack(grain.transforms.Map):
    """Grain's packed row (per-clip values as lists) -> the fixed-shape pack of the module docstring."""

    def __init__(self, max_clips_per_pack: int, text_len: int):
        self.k = max_clips_per_pack
        self.text_len = text_len

    def map(self, row: dict[str, Any]) -> dict[str, Any]:
        k, seg = self.k, row["tokens_segment_ids"].astype(np.int32)
        count = len(row["grid"])
        out = {
            "tokens": row["tokens"],
            "segment_ids": seg,
            "positions": row["positions"].astype(np.int32),
            "text_tokens": np.zeros((k, self.text_len), np.int32),
            "text_mask": np.zeros((k, self.text_len), bool),
            "text_segment_ids": np.zeros((k,), np.int32),
            "grid": np.zeros((k, 3), np.int32),
            "num_tokens": np.zeros((k,), np.int32),
            "index": np.full((k,), -1, np.int64),
        }
        for j in range(count):
            out["text_tokens"][j] = row["text_tokens"][j]
            out["text_mask"][j] = row["text_mask"][j]
            out["grid"][j] = row["grid"][j]
            out["index"][j] = row["index"][j]
        out["text_segment_ids"][:count] = np.arange(1, count + 1)
        out["num_tokens"][:count] = np.bincount(seg, minlength=count + 1)[1 : count + 1]
        return out


def pack_clips(
    clips: grain.IterDataset,
    *,
    seq_len: int,
    max_clips_per_pack: int,
    num_bins: int,
    text_len: int,
    seed: int = 0,
    shuffle_bins: bool = True,
) -> grain.IterDataset:
    """Packs :class:`PatchClip` outputs into fixed-length sequences with Grain's first-fit packer."""
    if seq_len < 1 or max_clips_per_pack < 1 or num_bins < 1:
        raise ValueError(
            f"need packing seq_len, max_clips_per_pack and num_bins >= 1, got {seq_len}, "
            f"{max_clips_per_pack}, {num_bins}"
        )
    packed = grain.experimental.FirstFitPackIterDataset(
        clips,
        length_struct={key: seq_len for key in _SEQUENCE_KEYS},
        num_packing_bins=num_bins,
        seed=seed,
        shuffle_bins=shuffle_bins,
        # "positions" is packed and padded like the tokens, without segment ids of its own; the per-clip
        # keys come back as one list per bin.
        meta_features=("positions", *_CLIP_KEYS),
        max_sequences_per_bin=max_clips_per_pack,
    )
    return packed.map(FinishPack(max_clips_per_pack, text_len))


def unpack(packed: dict[str, Any]) -> list[dict[str, Any]]:
    """A pack (or a batch of packs) -> its clips, in segment order: ``tokens``, ``positions``, ``grid``,
    ``text_tokens``, ``text_mask``, ``index`` and ``complete`` (no token dropped: ``patching.unpatchify``
    of ``tokens`` on ``grid`` gives the clip's latents back)."""
    seg_all = np.asarray(packed["segment_ids"])
    if seg_all.ndim == 2:
        return [c for b in range(len(seg_all)) for c in unpack({k: v[b] for k, v in packed.items()})]
    clips = []
    for j, sid in enumerate(np.asarray(packed["text_segment_ids"])):
        if sid == 0:
            continue
        sel = seg_all == sid
        grid = tuple(int(g) for g in packed["grid"][j])
        tokens = np.asarray(packed["tokens"])[sel]
        clips.append(
            {
                "tokens": tokens,
                "positions": np.asarray(packed["positions"])[sel],
                "grid": grid,
                "text_tokens": np.asarray(packed["text_tokens"][j]),
                "text_mask": np.asarray(packed["text_mask"][j]),
                "index": int(packed["index"][j]),
                "complete": len(tokens) == int(np.prod(grid)),
            }
        )
    return clips


def cross_attention_mask(segment_ids, text_segment_ids, text_mask):
    """bool ``[..., seq_len, K*L]``: video token q attends text token (j, l) of its own clip's caption.

    numpy or jax arrays; padding tokens (segment 0) attend nothing."""
    k, length = text_mask.shape[-2:]
    text_seg = (text_segment_ids[..., :, None] * text_mask).reshape(*text_mask.shape[:-2], k * length)
    return (segment_ids[..., :, None] == text_seg[..., None, :]) & (segment_ids[..., :, None] > 0)


def efficiency(packs: Sequence[dict[str, Any]]) -> float:
    """Real tokens / all token slots over some packs (or batches of packs)."""
    real = sum(int(np.count_nonzero(np.asarray(p["segment_ids"]))) for p in packs)
    total = sum(int(np.asarray(p["segment_ids"]).size) for p in packs)
    return real / max(total, 1)


def _with_index(index: int, record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "index": np.int64(index)}


class Retokenize(grain.transforms.Map):
    """Replace a latent record's caption tokens (byte tokens, from ``jaxsora encode``) with the text
    encoder's own tokenization of its caption (``tokenize: captions -> (ids [N, L], mask [N, L])``)."""

    def __init__(self, tokenize):
        self.tokenize = tokenize

    def map(self, record: dict[str, Any]) -> dict[str, Any]:
        caption = record["caption"]
        ids, mask = self.tokenize([caption.decode() if isinstance(caption, bytes) else str(caption)])
        return {**record, "tokens": np.asarray(ids[0], np.int32), "mask": np.asarray(mask[0], bool)}


def packed_dataset(
    source,
    config: ml_collections.ConfigDict,
    *,
    shard_index: int | None = None,
    shard_count: int | None = None,
    num_epochs: int | None = None,
    batch_size: int | None = None,
    drop_remainder: bool = True,
    tokenize=None,
) -> grain.IterDataset:
    """Batches of packs ``[B, seq_len, ...]`` from a latent dataset (a ``LatentDataset``, any random-access
    source of latent records, or a ``grain.MapDataset`` of them); ``num_epochs=None`` repeats.

    ``batch_size`` defaults to ``config.packing.batch_size``; 0 returns single packs, unbatched.
    ``tokenize`` (a picklable ``captions -> (ids, mask)``, e.g. ``TextEncoder.caption_tokenizer()``) re-tokenizes
    each caption for a text encoder whose tokens are not the dataset's byte tokens (hashed words, T5)."""
    pk = config.packing
    if shard_index is None or shard_count is None:
        import jax

        shard_index, shard_count = jax.process_index(), jax.process_count()
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} outside [0, {shard_count})")
    ds = source if isinstance(source, grain.MapDataset) else grain.MapDataset.source(source)
    if len(ds) < shard_count:
        raise ValueError(f"the latent dataset has {len(ds)} clips, fewer than the {shard_count} shards")
    ds = ds.map_with_index(_with_index)[shard_index::shard_count]  # index = record index, before sharding
    if config.data.shuffle:
        ds = ds.shuffle(seed=config.seed)
    ds = ds.repeat(num_epochs)
    if tokenize is not None:
        ds = ds.map(Retokenize(tokenize))
    ds = ds.random_map(
        PatchClip(
            tuple(config.patch),
            seq_len=pk.seq_len,
            text_len=config.text.max_len,
            drop_rate=pk.drop_rate,
            overflow=pk.overflow,
        ),
        seed=config.seed,
    )
    ds = ds.to_iter_dataset(
        grain.ReadOptions(num_threads=max(config.data.num_threads, 0), prefetch_buffer_size=16)
    )
    ds = pack_clips(
        ds,
        seq_len=pk.seq_len,
        max_clips_per_pack=pk.max_clips_per_pack,
        num_bins=pk.num_bins,
        text_len=config.text.max_len,
        seed=config.seed,
        shuffle_bins=pk.shuffle_bins,
    )
    batch_size = pk.batch_size if batch_size is None else batch_size
    if batch_size:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if pk.get("num_workers", 0) > 0:  # patchify + pack + batch in worker processes (checkpointable too)
        from jaxsora.data.pipeline import ensure_absl_flags

        ensure_absl_flags()  # Grain's workers read absl flags: a script or notebook may not have parsed them
        ds = ds.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=pk.num_workers, per_worker_buffer_size=4)
        )
    return ds
