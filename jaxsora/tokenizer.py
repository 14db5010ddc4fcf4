"""Byte-level tokenizer: UTF-8 bytes shifted past three special ids. No vocabulary file to ship or download."""

from __future__ import annotations

import numpy as np

PAD, BOS, EOS = 0, 1, 2
OFFSET = 3
VOCAB_SIZE = 256 + OFFSET


def encode(text: str, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """``text`` -> (ids int32 [max_len], mask bool [max_len]); long texts are cut, keeping BOS and EOS."""
    if max_len < 2:
        raise ValueError(f"max_len must be >= 2 (BOS and EOS), got {max_len}")
    body = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)[: max_len - 2] + OFFSET
    ids = np.full((max_len,), PAD, dtype=np.int32)
    ids[0] = BOS
    ids[1 : 1 + len(body)] = body
    ids[1 + len(body)] = EOS
    return ids, ids != PAD


def decode(ids: np.ndarray) -> str:
    """Inverse of :func:`encode` (special ids dropped; a cut multi-byte character is replaced)."""
    ids = np.asarray(ids)
    body = ids[ids >= OFFSET] - OFFSET
    return bytes(body.astype(np.uint8).tolist()).decode("utf-8", errors="replace")
