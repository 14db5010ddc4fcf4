"""Text conditioning: captions -> token ids -> text states the diffusion transformer cross-attends.

Three encoders behind one interface (:class:`TextEncoder`):

- ``byte`` (default): a small bidirectional transformer over byte-level tokens (:mod:`jaxsora.tokenizer`: no
  vocabulary file), trained jointly with the diffusion transformer. Its params live in the train state.
- ``words``: the same transformer over hashed word tokens (:func:`jaxsora.tokenizer.encode_words`: lowercased
  words and punctuation marks, each hashed to one of ``text_encoder.vocab_size`` ids; still no vocabulary
  file). A caption is about a quarter as many positions as in bytes, and the encoder need not learn to spell.
  The latent dataset stores byte tokens, so the data pipeline re-tokenizes captions for it
  (:meth:`TextEncoder.caption_tokenizer`).
- ``t5``: a frozen T5 / UMT5 encoder (:mod:`jaxsora.models.t5`) loaded from a local Hugging Face folder
  (``text_encoder.t5_path``); its weights are not trained and its tokenizer comes from that folder.

Packed batches hold one caption row per clip (``text_tokens [B, K, L]``); :func:`pack_states` flattens the
encoded rows to ``[B, K*L, D]`` with segment ids ``[B, K*L]`` (row j's real tokens carry segment j + 1), the form
:class:`jaxsora.models.dit.DiT` takes.

Classifier-free guidance: :func:`drop_captions` replaces a random fraction of the caption rows with the empty
caption during training; sampling runs the model once with the prompt and once with the empty caption.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxsora import tokenizer
from jaxsora.models import layers
from jaxsora.models.rope import Rotary


@dataclasses.dataclass(frozen=True)
class ByteTextConfig:
    """The jointly trained encoder (kinds ``byte`` and ``words``); ``vocab_size`` is the embedding table's rows:
    the byte vocabulary unless the tokens are hashed words."""

    width: int = 256
    depth: int = 2
    num_heads: int = 4
    head_dim: int = 64
    mlp_dim: int = 1024
    dtype: str = "bfloat16"
    attention: str = "auto"
    vocab_size: int = tokenizer.VOCAB_SIZE


class _EncoderLayer(nn.Module):
    cfg: ByteTextConfig

    @nn.compact
    def __call__(self, x, rope, segment_ids):
        cfg, dtype = self.cfg, jnp.dtype(self.cfg.dtype)
        h = layers.RMSNorm("embed", dtype=dtype, name="attn_norm")(x)
        h = layers.SelfAttention(
            cfg.num_heads, cfg.head_dim, True, dtype, cfg.attention, 1, name="self_attention"
        )(h, rope, segment_ids)
        x = x + h.astype(jnp.float32)
        h = layers.RMSNorm("embed", dtype=dtype, name="mlp_norm")(x)
        x = x + layers.MLP(cfg.mlp_dim, "gelu", dtype, name="mlp")(h).astype(jnp.float32)
        return nn.with_logical_constraint(x, ("batch", "length", "act_embed")), None


class ByteTextEncoder(nn.Module):
    """Token ids ``[N, L]`` (bytes or hashed words, below ``cfg.vocab_size``) + mask -> states ``[N, L, width]``
    (float32); padding positions are zero."""

    cfg: ByteTextConfig

    @nn.compact
    def __call__(self, tokens: jax.Array, mask: jax.Array) -> jax.Array:
        cfg = self.cfg
        embed = self.param(
            "embedding",
            nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed")),
            (cfg.vocab_size, cfg.width),
        )
        # The table is small (259 bytes, or e.g. 16384 hashed words x 256 = 16 MB in float32): gather it whole
        # before the lookup, rather than leave XLA to find a way from its fsdp-sharded columns to batch-sharded
        # rows (it falls back to full rematerialization). A table of hundreds of MB would want another plan.
        embed = nn.with_logical_constraint(embed, ("vocab", None))
        x = jnp.take(embed, tokens, axis=0)
        x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
        positions = jnp.broadcast_to(jnp.arange(tokens.shape[1])[None, :, None], (*tokens.shape, 1))
        rope = Rotary.from_positions(positions, cfg.head_dim)
        segment_ids = mask.astype(jnp.int32)
        block, _ = layers.repeat(_EncoderLayer, depth=cfg.depth, scan=True, remat="none", num_broadcast=2)
        x, _ = block(cfg, name="layers")(x, rope, segment_ids)
        x = layers.RMSNorm("embed", dtype=jnp.float32, name="final_norm")(x)
        return jnp.where(mask[..., None], x, 0.0)


class TextEncoder:
    """What the trainer and sampler need from a text encoder, whichever it is.

    ``tokenize(captions) -> (ids [N, L], mask [N, L])``, ``empty`` (the empty caption's row, for guidance),
    ``init(rng) -> params``, ``apply(params, ids, mask) -> [N, L, D]``; ``trainable`` False means the
    optimiser leaves the params as they are (a pretrained T5).
    """

    kind: str
    width: int
    max_len: int
    trainable: bool

    def tokenize(self, captions) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def caption_tokenizer(self):
        """A picklable ``captions -> (ids, mask)`` for the data pipeline when the latent dataset's tokens
        (byte tokens, written by ``jaxsora encode``) are not this encoder's: None when they are."""
        return None

    def empty(self) -> tuple[np.ndarray, np.ndarray]:
        ids, mask = self.tokenize([""])
        return ids[0], mask[0]


class _JointText(TextEncoder):
    """A :class:`ByteTextEncoder` trained with the DiT; subclasses choose the tokens."""

    trainable = True

    def __init__(self, cfg: ByteTextConfig, max_len: int):
        self.cfg, self.width, self.max_len = cfg, cfg.width, max_len
        self.module = ByteTextEncoder(cfg)

    def init(self, rng):
        ids = jnp.zeros((1, self.max_len), jnp.int32)
        return self.module.init(rng, ids, ids > 0)["params"]

    def apply(self, params, ids, mask):
        return self.module.apply({"params": params}, ids, mask)


class ByteText(_JointText):
    kind = "byte"

    def __init__(self, cfg: ByteTextConfig, max_len: int):
        if cfg.vocab_size != tokenizer.VOCAB_SIZE:
            raise ValueError(f"byte tokens need vocab_size {tokenizer.VOCAB_SIZE}, got {cfg.vocab_size}")
        super().__init__(cfg, max_len)

    def tokenize(self, captions):
        rows = [tokenizer.encode(c, self.max_len) for c in captions]
        return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])


class WordText(_JointText):
    """The jointly trained encoder over hashed word tokens (:func:`jaxsora.tokenizer.encode_words`)."""

    kind = "words"

    def __init__(self, cfg: ByteTextConfig, max_len: int):
        super().__init__(cfg, max_len)
        self._tokenizer = tokenizer.WordTokenizer(max_len, cfg.vocab_size)

    def tokenize(self, captions):
        return self._tokenizer(list(captions))

    def caption_tokenizer(self):
        return self._tokenizer  # the latent dataset holds byte tokens: the pipeline re-tokenizes with this


class T5Text(TextEncoder):
    """A frozen T5/UMT5 encoder from a local Hugging Face folder (weights are never downloaded)."""

    kind, trainable = "t5", False

    def __init__(self, path: str, max_len: int, dtype: str = "bfloat16"):
        from jaxsora.models import t5

        self.path = str(path)
        self.module, self.params = t5.load_hf_t5(path, dtype=jnp.dtype(dtype))
        self.width = self.module.cfg.d_model
        self.max_len = max_len
        self._tokenizer = t5.load_hf_tokenizer(path)

    def tokenize(self, captions):
        from jaxsora.models import t5

        return t5.tokenize(self._tokenizer, list(captions), self.max_len)

    def caption_tokenizer(self):
        return HFCaptionTokenizer(self.path, self.max_len)

    def init(self, rng):
        return jax.tree.map(jnp.asarray, self.params)  # carried in the train state, never updated

    def apply(self, params, ids, mask):
        states = self.module.apply({"params": params}, ids, mask)
        return jax.lax.stop_gradient(jnp.where(mask[..., None], states, 0.0))


class HFCaptionTokenizer:
    """``captions -> (ids, mask)`` with a local Hugging Face tokenizer, loaded on first use: it pickles as
    just the folder and length, so Grain's worker processes each load their own."""

    def __init__(self, path: str, max_len: int):
        self.path, self.max_len, self._tokenizer = path, max_len, None

    def __getstate__(self):
        return {"path": self.path, "max_len": self.max_len}

    def __setstate__(self, state):
        self.__init__(state["path"], state["max_len"])

    def __call__(self, captions) -> tuple[np.ndarray, np.ndarray]:
        from jaxsora.models import t5

        if self._tokenizer is None:
            self._tokenizer = t5.load_hf_tokenizer(self.path)
        return t5.tokenize(self._tokenizer, list(captions), self.max_len)


def _joint_config(section) -> ByteTextConfig:
    """``ByteTextConfig`` from the ``text_encoder`` section's fields, without ``vocab_size`` (the kind sets it;
    the section may lack it: configs written before it existed)."""
    fields = {f.name for f in dataclasses.fields(ByteTextConfig)} - {"vocab_size"}
    return ByteTextConfig(**{k: v for k, v in section.items() if k in fields})


def make_text_encoder(config) -> TextEncoder:
    """The text encoder ``config.text_encoder`` describes (``kind``: byte | words | t5)."""
    section = config.text_encoder
    if section.kind == "byte":  # always the 259 byte ids: text_encoder.vocab_size is for kind words
        return ByteText(_joint_config(section), config.text.max_len)
    if section.kind == "words":
        vocab_size = section.get("vocab_size")
        if not vocab_size:
            raise ValueError("text_encoder.kind=words needs text_encoder.vocab_size (e.g. 16384)")
        cfg = dataclasses.replace(_joint_config(section), vocab_size=int(vocab_size))
        return WordText(cfg, config.text.max_len)
    if section.kind == "t5":
        if not section.t5_path:
            raise ValueError("text_encoder.kind=t5 needs --config.text_encoder.t5_path=<local HF T5 folder>")
        return T5Text(section.t5_path, config.text.max_len, section.dtype)
    raise ValueError(f"text_encoder.kind must be 'byte', 'words' or 't5', got {section.kind!r}")


def pack_states(states: jax.Array, text_mask: jax.Array, text_segment_ids: jax.Array):
    """Encoded caption rows ``[B, K, L, D]`` -> (``[B, K*L, D]``, segment ids ``[B, K*L]``)."""
    b, k, length, d = states.shape
    seg = (text_segment_ids[:, :, None] * text_mask).astype(jnp.int32)
    return states.reshape(b, k * length, d), seg.reshape(b, k * length)


def drop_captions(rng, ids: jax.Array, mask: jax.Array, empty: tuple[Any, Any], rate: float):
    """Each caption row (``[..., L]``) replaced by the empty caption with probability ``rate``."""
    if rate <= 0:
        return ids, mask
    drop = jax.random.bernoulli(rng, rate, ids.shape[:-1])[..., None]
    return jnp.where(drop, jnp.asarray(empty[0]), ids), jnp.where(drop, jnp.asarray(empty[1]), mask)
