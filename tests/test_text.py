"""The jointly trained text encoders (jaxsora/models/text.py): the byte kind as it was, the hashed-word kind
(``text_encoder.kind=words``) from config to packed batches and a few DiT training steps."""

import pickle

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import pytest
from latent_factory import make_latent_dataset

from jaxsora import tokenizer
from jaxsora.config import ConfigError, load_config
from jaxsora.data.latents import LatentDataset
from jaxsora.data.packing import packed_dataset, unpack
from jaxsora.models.text import ByteText, WordText, make_text_encoder
from jaxsora.train import dit as dit_train

L = 16
CAPTIONS = ["A red circle moves right.", "a RED circle moves right", ""]


def _config(*overrides):
    return load_config(
        "configs/tiny.py", ["text_encoder.dtype=float32", "text_encoder.attention=xla", *overrides]
    )


def _embedding(params):
    return nn.meta.unbox(params)["embedding"]


def test_byte_kind_keeps_its_259_ids_and_ignores_vocab_size():
    config = _config()
    assert config.text_encoder.vocab_size == 16384  # for kind words only
    text = make_text_encoder(config)
    assert isinstance(text, ByteText) and text.kind == "byte" and text.caption_tokenizer() is None
    assert _embedding(jax.eval_shape(text.init, jax.random.key(0))).shape == (tokenizer.VOCAB_SIZE, 64)
    # a run's config.json from before text_encoder.vocab_size existed builds the same encoder
    old = ml_collections.ConfigDict(config.to_dict())
    del old.text_encoder["vocab_size"]
    assert make_text_encoder(old).cfg == text.cfg


def test_words_kind_builds_inits_and_encodes():
    text = make_text_encoder(_config("text_encoder.kind=words", f"text.max_len={L}"))
    assert isinstance(text, WordText) and text.kind == "words" and text.trainable
    assert text.width == 64 and text.max_len == L and text.cfg.vocab_size == 16384
    params = jax.jit(text.init)(jax.random.key(0))
    assert _embedding(params).shape == (16384, 64)

    ids, mask = text.tokenize(CAPTIONS)
    assert ids.shape == mask.shape == (3, L)
    for row, caption in enumerate(CAPTIONS):
        np.testing.assert_array_equal(ids[row], tokenizer.encode_words(caption, L, 16384)[0])
    np.testing.assert_array_equal(ids[0, :6], ids[1, :6])  # case; the full stop is one more token
    assert mask[0].sum() == mask[1].sum() + 1 == 8
    empty_ids, empty_mask = text.empty()
    assert empty_ids[:3].tolist() == [tokenizer.BOS, tokenizer.EOS, tokenizer.PAD] and empty_mask.sum() == 2

    states = np.asarray(jax.jit(text.apply)(params, ids, mask))
    assert states.shape == (3, L, 64) and np.isfinite(states).all()
    assert not states[~mask].any() and (np.abs(states[mask]).sum(-1) > 0).all()  # zeros exactly at padding

    tok = pickle.loads(pickle.dumps(text.caption_tokenizer()))  # Grain's workers get a copy
    assert isinstance(tok, tokenizer.WordTokenizer) and (tok.max_len, tok.vocab_size) == (L, 16384)
    np.testing.assert_array_equal(tok(CAPTIONS)[0], ids)


def test_text_encoder_settings_errors():
    with pytest.raises(ValueError, match="'byte', 'words' or 't5'"):
        make_text_encoder(_config("text_encoder.kind=bytes"))
    with pytest.raises(ValueError, match="vocab_size must be in"):
        make_text_encoder(_config("text_encoder.kind=words", "text_encoder.vocab_size=3"))
    with pytest.raises(ConfigError, match="unknown config key 'text_encoder.vocab'"):
        _config("text_encoder.vocab=100")


def test_packs_carry_each_clips_hashed_words(tmp_path):
    """The latent dataset holds byte tokens 48 long; the pipeline re-tokenizes each clip's caption into the
    word rows of its pack (text.max_len 16: the stored byte rows alone would not fit)."""
    make_latent_dataset(tmp_path, num_clips=12, text_len=48)
    config = _config(
        "text_encoder.kind=words", f"text.max_len={L}", "packing.seq_len=96", "data.num_threads=1"
    )
    records = LatentDataset(str(tmp_path))
    captions = [str(records[i]["caption"]) for i in range(len(records))]
    tok = make_text_encoder(config).caption_tokenizer()
    packs = list(
        packed_dataset(
            records, config, shard_index=0, shard_count=1, num_epochs=1, batch_size=0, tokenize=tok
        )
    )
    clips = [clip for pack in packs for clip in unpack(pack)]
    assert sorted(clip["index"] for clip in clips) == list(range(12))
    for clip in clips:
        want_ids, want_mask = tokenizer.encode_words(captions[clip["index"]], L, 16384)
        np.testing.assert_array_equal(clip["text_tokens"], want_ids)
        np.testing.assert_array_equal(clip["text_mask"], want_mask)
    with pytest.raises(ValueError, match="text.max_len"):  # without the re-tokenizing
        next(iter(packed_dataset(records, config, shard_index=0, shard_count=1, batch_size=0)))


def test_dit_trains_on_hashed_words(tmp_path):
    make_latent_dataset(tmp_path / "latents", num_clips=16)
    config = _config(
        "text_encoder.kind=words",
        f"text.max_len={L}",
        "packing.seq_len=64",
        "packing.max_clips_per_pack=4",
        "packing.batch_size=8",
        "dit.dtype=float32",
        "dit.attention=xla",
        "train.steps=4",  # step 0 has lr 0, then the zero-initialised head and gates open: the text learns last
        "train.optim.warmup_steps=1",
        "train.log_every=1",
        f"train.latents={tmp_path / 'latents'}",
    )
    trainer = dit_train.DiTTrainer(config, tmp_path / "run")
    records = LatentDataset(str(tmp_path / "latents"))
    words = {
        tuple(tokenizer.encode_words(str(records[i]["caption"]), L, 16384)[0]) for i in range(len(records))
    }
    batch = next(trainer.data())
    rows = batch["text_tokens"].reshape(-1, L)[batch["text_mask"].reshape(-1, L).any(-1)]
    assert len(rows) and all(tuple(row) in words for row in rows)
    before = np.asarray(_embedding(trainer.init_state().params["text"]))
    result = trainer.run(progress=False)
    assert result["steps"] == 4 and np.isfinite(result["loss"])
    after = np.asarray(_embedding(trainer.state.params["text"]))
    changed = set(np.flatnonzero((after != before).any(-1)).tolist())
    used = {i for row in words for i in row} - {tokenizer.PAD}
    assert changed and changed <= used  # the rows of the captions' words (and BOS/EOS) only
