"""Tokenizers that need no vocabulary file to ship or download.

- Bytes (:func:`encode`, :func:`decode`): UTF-8 bytes shifted past three special ids (``VOCAB_SIZE`` = 259).
- Hashed words (:func:`encode_words`, :class:`WordTokenizer`): the lowercased (NFKC) text split into words and single
  punctuation marks (:func:`words`), each mapped to ``OFFSET + crc32(utf-8) % (vocab_size - OFFSET)``. CRC-32
  is fixed (unlike Python's salted ``hash``), so an id is the same in every process, run and machine; distinct
  words may share an id (``tests/test_geometry_tokenizer.py`` checks that the synthetic world's do not at
  16384). A caption is a few times fewer word tokens than bytes.

Both give ``(ids int32 [max_len], mask bool [max_len])``: BOS, the body, EOS, then PAD; a long text is cut,
keeping BOS and EOS.
"""

from __future__ import annotations

import re
import unicodedata
import zlib

import numpy as np

PAD, BOS, EOS = 0, 1, 2
OFFSET = 3
VOCAB_SIZE = 256 + OFFSET

# A word is a run of letters, digits and underscores in any script (``\w`` on str patterns is Unicode);
# every other non-space character is a token of its own.
WORD_PATTERN = re.compile(r"\w+|[^\w\s]")


def _check_max_len(max_len: int) -> None:
    if max_len < 2:
        raise ValueError(f"max_len must be >= 2 (BOS and EOS), got {max_len}")


def _with_specials(body: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of the body -> BOS, the body (cut to ``max_len - 2``), EOS, PAD; and the mask of real ids."""
    body = body[: max_len - 2]
    ids = np.full((max_len,), PAD, dtype=np.int32)
    ids[0] = BOS
    ids[1 : 1 + len(body)] = body
    ids[1 + len(body)] = EOS
    return ids, ids != PAD


def encode(text: str, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """``text`` -> (ids int32 [max_len], mask bool [max_len]); long texts are cut, keeping BOS and EOS."""
    _check_max_len(max_len)
    body = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)[: max_len - 2] + OFFSET
    return _with_specials(body, max_len)


def decode(ids: np.ndarray) -> str:
    """Inverse of :func:`encode` (special ids dropped; a cut multi-byte character is replaced)."""
    ids = np.asarray(ids)
    body = ids[ids >= OFFSET] - OFFSET
    return bytes(body.astype(np.uint8).tolist()).decode("utf-8", errors="replace")


def words(text: str) -> list[str]:
    """The pieces :func:`encode_words` hashes: ``"Up-right, fast!"`` -> ``up - right , fast !``. The text is
    NFKC-normalised first, so a composed and a decomposed accent (or a full-width letter) give one word."""
    return WORD_PATTERN.findall(unicodedata.normalize("NFKC", text).lower())


def _check_vocab_size(vocab_size: int) -> None:
    if not OFFSET < vocab_size <= 2**31:
        raise ValueError(
            f"vocab_size must be in ({OFFSET}, 2**31] (ids {OFFSET}.. after PAD/BOS/EOS, int32), got {vocab_size}"
        )


def word_id(piece: str, vocab_size: int) -> int:
    """The id of one word or punctuation mark: ``OFFSET + crc32(utf-8) % (vocab_size - OFFSET)``."""
    return OFFSET + zlib.crc32(piece.encode("utf-8")) % (vocab_size - OFFSET)


def encode_words(text: str, max_len: int, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``text`` -> hashed word ids (int32 [max_len], mask bool [max_len]), cut like :func:`encode`.

    Not invertible (ids are hashes); :func:`words` gives the pieces."""
    _check_max_len(max_len)
    _check_vocab_size(vocab_size)
    pieces = words(text)[: max_len - 2]
    body = np.array([word_id(p, vocab_size) for p in pieces], dtype=np.int32)
    return _with_specials(body, max_len)


class WordTokenizer:
    """``captions -> (ids int32 [N, max_len], mask bool [N, max_len])`` with :func:`encode_words`: a plain
    picklable object (two ints), for Grain's worker processes."""

    def __init__(self, max_len: int, vocab_size: int):
        _check_max_len(max_len)
        _check_vocab_size(vocab_size)
        self.max_len, self.vocab_size = int(max_len), int(vocab_size)

    def __call__(self, captions) -> tuple[np.ndarray, np.ndarray]:
        rows = [encode_words(c, self.max_len, self.vocab_size) for c in captions]
        if not rows:
            return np.zeros((0, self.max_len), np.int32), np.zeros((0, self.max_len), bool)
        return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])

    def __repr__(self) -> str:
        return f"WordTokenizer(max_len={self.max_len}, vocab_size={self.vocab_size})"
