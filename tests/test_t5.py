"""The T5 / UMT5 encoder against transformers' PyTorch encoders (tiny, random, CPU, float32)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsora import parallel
from jaxsora.models import t5

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TINY = dict(
    vocab_size=96,
    d_model=32,
    d_kv=8,
    d_ff=64,
    num_layers=3,
    num_heads=4,
    relative_attention_num_buckets=8,  # 4 per direction: 2 exact, 2 log-spaced ...
    relative_attention_max_distance=12,  # ... and positions 12+ apart share the last bucket (L = 24)
)
BATCH, LENGTH = 3, 24


def _hf_model(kind: str, feed_forward_proj: str):
    torch.manual_seed({"relu": 0, "gated-gelu": 1}[feed_forward_proj] + (10 if kind == "umt5" else 0))
    if kind == "umt5":
        config = transformers.UMT5Config(**TINY, feed_forward_proj=feed_forward_proj)
        model = transformers.UMT5EncoderModel(config)
    else:
        config = transformers.T5Config(**TINY, feed_forward_proj=feed_forward_proj)
        model = transformers.T5EncoderModel(config)
    with torch.no_grad():  # HF's init makes near-zero layer-norm outputs irrelevant; perturb every tensor
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _inputs(seed: int = 0, lengths=(LENGTH, 17, 5)):
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths)
    tokens = rng.integers(0, TINY["vocab_size"], (len(lengths), LENGTH)).astype(np.int32)
    mask = np.arange(LENGTH)[None, :] < lengths[:, None]
    return tokens, mask


def _hf_output(model, tokens, mask) -> np.ndarray:
    with torch.no_grad():
        out = model(
            input_ids=torch.from_numpy(tokens.astype(np.int64)),
            attention_mask=torch.from_numpy(mask.astype(np.int64)),
        )
    return out.last_hidden_state.numpy()


@pytest.mark.parametrize(
    "kind, feed_forward_proj, sharded",
    [("t5", "relu", False), ("t5", "gated-gelu", True), ("umt5", "gated-gelu", False)],
)
def test_parity_with_transformers(tmp_path, kind, feed_forward_proj, sharded):
    hf = _hf_model(kind, feed_forward_proj)
    save = {"max_shard_size": "20KB"} if sharded else {}
    hf.save_pretrained(tmp_path, safe_serialization=True, **save)
    assert os.path.isfile(tmp_path / "model.safetensors.index.json") == sharded
    tokens, mask = _inputs()
    expected = _hf_output(hf, tokens, mask)

    model, params = t5.load_hf_t5(tmp_path, dtype=jnp.float32)
    assert model.cfg.per_layer_relative_bias == (kind == "umt5")
    assert model.cfg.is_gated == (feed_forward_proj == "gated-gelu")
    assert params["layers"]["attn"]["query"].shape == (3, 32, 4, 8)  # stacked on a leading layers axis
    assert ("relative_attention_bias" in params) == (kind == "t5")
    out = jax.jit(model.apply)({"params": params}, tokens, mask)
    assert out.dtype == jnp.float32 and out.shape == (BATCH, LENGTH, TINY["d_model"])
    diff = float(np.max(np.abs(np.asarray(out) - expected)))
    assert diff <= 1e-4, diff
    # the mask matters: HF's output changes without it, and so must ours (in the same way)
    unmasked = jax.jit(model.apply)({"params": params}, tokens, None)
    assert float(np.max(np.abs(np.asarray(unmasked) - expected))) > 1e-2
    assert np.max(np.abs(np.asarray(unmasked) - _hf_output(hf, tokens, np.ones_like(mask)))) <= 1e-4

    # bfloat16 compute stays close to the float32 reference
    model16, params16 = t5.load_hf_t5(tmp_path)
    out16 = np.asarray(jax.jit(model16.apply)({"params": params16}, tokens, mask))
    assert out16.dtype == np.float32
    assert np.max(np.abs(out16 - expected)) < 0.1 * np.max(np.abs(expected))


def test_relative_position_buckets_match_transformers():
    from transformers.models.t5.modeling_t5 import T5Attention

    rel = np.arange(-600, 601)
    for num_buckets, max_distance in [(32, 128), (8, 12), (64, 256), (16, 20)]:
        ours = t5.relative_position_bucket(rel, num_buckets, max_distance)
        theirs = T5Attention._relative_position_bucket(
            torch.from_numpy(rel), bidirectional=True, num_buckets=num_buckets, max_distance=max_distance
        ).numpy()
        np.testing.assert_array_equal(ours, theirs)
        assert ours.min() == 0 and ours.max() == num_buckets - 1


def test_sharded_encoder_matches_single_device(tmp_path):
    hf = _hf_model("umt5", "gated-gelu")
    hf.save_pretrained(tmp_path, safe_serialization=True)
    model, params = t5.load_hf_t5(tmp_path, dtype=jnp.float32, remat=True)
    tokens, mask = _inputs(1, lengths=(LENGTH, 9, 1, 20))  # batch divisible by data x fsdp
    expected = np.asarray(jax.jit(model.apply)({"params": params}, tokens, mask))

    mesh = parallel.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    placed = t5.shard_params(params, model, mesh)
    # [layers, embed, heads, kv]: embed over fsdp, heads over tensor
    q = placed["layers"]["attn"]["query"]
    assert q.sharding.spec[:3] == (None, "fsdp", "tensor")
    assert q.addressable_shards[0].data.shape == (3, 16, 2, 8)
    batch = parallel.batch_sharding(mesh, 2)
    with parallel.mesh_context(mesh):
        out = jax.jit(model.apply)(
            {"params": placed}, jax.device_put(tokens, batch), jax.device_put(mask, batch)
        )
    assert len(out.sharding.device_set) == 8
    np.testing.assert_allclose(np.asarray(out), expected, atol=1e-5, rtol=0)


def test_from_hf_config_reads_model_types():
    base = {k: v for k, v in TINY.items()}
    cfg = t5.T5Config.from_hf_config({**base, "model_type": "t5"}, dtype="float32")
    assert not cfg.per_layer_relative_bias and cfg.feed_forward_proj == "relu" and cfg.dtype == "float32"
    cfg = t5.T5Config.from_hf_config({**base, "model_type": "mt5"})
    assert not cfg.per_layer_relative_bias and cfg.is_gated and cfg.activation == "gelu_new"
    cfg = t5.T5Config.from_hf_config({**base, "model_type": "umt5", "feed_forward_proj": "gated-silu"})
    assert cfg.per_layer_relative_bias and cfg.activation == "silu"
    with pytest.raises(ValueError, match="model_type"):
        t5.T5Config.from_hf_config({**base, "model_type": "bert"})
    with pytest.raises(ValueError, match="feed_forward_proj"):
        t5.T5Config(feed_forward_proj="gated-tanhh")


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        t5.load_hf_t5(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="config.json"):
        t5.load_hf_t5(tmp_path)

    hf = _hf_model("t5", "relu")
    hf.save_pretrained(tmp_path, safe_serialization=True)
    weights = tmp_path / "model.safetensors"
    os.rename(weights, tmp_path / "elsewhere.safetensors")
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        t5.load_hf_t5(tmp_path)
    os.rename(tmp_path / "elsewhere.safetensors", weights)

    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "d_ff": 48}))
    with pytest.raises(
        ValueError, match=r"DenseReluDense\.wi\.weight' has shape \(64, 32\), expected \(48, 32\)"
    ):
        t5.load_hf_t5(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_layers": 4}))
    with pytest.raises(KeyError, match=r"lacks encoder tensors \['encoder\.block\.3\."):
        t5.load_hf_t5(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_layers": 2}))
    with pytest.raises(KeyError, match=r"unexpected encoder tensors \['encoder\.block\.2\."):
        t5.load_hf_t5(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "feed_forward_proj": "gated-gelu"}))
    with pytest.raises(KeyError, match=r"wi_0\.weight"):
        t5.load_hf_t5(tmp_path)


def test_params_from_hf_ignores_decoder_and_reads_bfloat16():
    import ml_dtypes

    cfg = t5.T5Config(**TINY, dtype="float32")
    hf = _hf_model("t5", "relu")
    tensors = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
    tensors = {
        k: v.astype(ml_dtypes.bfloat16) for k, v in tensors.items() if k != "encoder.embed_tokens.weight"
    }
    tensors["decoder.block.0.layer.0.SelfAttention.q.weight"] = np.zeros((5, 5), np.float32)
    tensors["lm_head.weight"] = np.zeros((5, 5), np.float32)
    params = t5.params_from_hf(tensors, cfg)
    emb = params["embedding"]
    assert emb.dtype == np.float32
    np.testing.assert_array_equal(emb, tensors["shared.weight"].astype(np.float32))
    wo = params["layers"]["mlp"]["wo"][1]  # layer 1's [ff, d] = torch's [d, ff] transposed
    np.testing.assert_array_equal(
        wo, tensors["encoder.block.1.layer.1.DenseReluDense.wo.weight"].astype(np.float32).T
    )


def test_bfloat16_safetensors_file_loads(tmp_path):
    hf = _hf_model("umt5", "gated-gelu").to(torch.bfloat16)
    hf.save_pretrained(tmp_path, safe_serialization=True)
    model, params = t5.load_hf_t5(tmp_path, dtype=jnp.float32)
    ref = hf.state_dict()["encoder.block.2.layer.0.SelfAttention.o.weight"].float().numpy()  # [d, h*k]
    np.testing.assert_array_equal(params["layers"]["attn"]["out"][2].reshape(-1, TINY["d_model"]), ref.T)
    tokens, mask = _inputs()
    out = jax.jit(model.apply)({"params": params}, tokens, mask)
    assert np.isfinite(np.asarray(out)).all()


def test_tokenizer_helper(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "a": 3, "red": 4, "circle": 5, "moves": 6, "left": 7}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(tmp_path)
    loaded = t5.load_hf_tokenizer(tmp_path)
    tokens, mask = t5.tokenize(loaded, ["a red circle", "a red circle moves left now"], max_length=5)
    assert tokens.dtype == np.int32 and mask.dtype == bool
    np.testing.assert_array_equal(tokens, [[3, 4, 5, 1, 0], [3, 4, 5, 6, 1]])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])


def _word_tokenizer(words):
    tokenizers = pytest.importorskip("tokenizers")
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: 3 + i for i, w in enumerate(words)}}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_dit_trains_with_a_frozen_t5_on_its_own_tokens(tmp_path, optimizer):
    """`jaxsora train` with text_encoder.kind=t5: the packs carry the T5 tokenizer's ids for each clip's
    caption (not the byte tokens `jaxsora encode` stored), the loss is finite and T5 stays frozen (with
    Muon too, whose matrices T5's would otherwise be)."""
    from latent_factory import COLOURS, make_latent_dataset

    from jaxsora.config import load_config
    from jaxsora.data.latents import LatentDataset
    from jaxsora.train import dit as dit_train

    model = _hf_model("t5", "relu")
    model.save_pretrained(tmp_path / "t5", safe_serialization=True)
    _word_tokenizer(["a", *COLOURS, "wave", "moving", "right", "clip"]).save_pretrained(tmp_path / "t5")
    make_latent_dataset(tmp_path / "latents", num_clips=8)
    config = load_config(
        "configs/tiny.py",
        [
            "text_encoder.kind=t5",
            f"text_encoder.t5_path={tmp_path / 't5'}",
            "text_encoder.dtype=float32",
            "text.max_len=16",
            "packing.seq_len=64",
            "packing.max_clips_per_pack=4",
            "packing.batch_size=8",
            "dit.dtype=float32",
            "dit.attention=xla",
            "train.steps=2",
            "train.log_every=1",
            f"train.optim.kind={optimizer}",
            f"train.latents={tmp_path / 'latents'}",
        ],
    )
    trainer = dit_train.DiTTrainer(config, tmp_path / "run")
    batch = next(trainer.data())
    records = LatentDataset(str(tmp_path / "latents"))
    captions = [records[i]["caption"] for i in range(len(records))]
    ids, mask = trainer.parts.text.tokenize(captions)
    rows = batch["text_tokens"].reshape(-1, 16)[batch["text_mask"].reshape(-1, 16).any(-1)]
    assert len(rows) and all(any((row == ids[i]).all() for i in range(len(ids))) for row in rows)
    assert rows.max() < TINY["vocab_size"] and (rows == 1).any()  # T5 ids, with its end-of-sequence token
    state = trainer.init_state()
    t5_before = jax.tree.map(np.asarray, state.params["text"])
    result = trainer.run(progress=False)
    assert result["steps"] == 2 and np.isfinite(result["loss"])
    from jaxsora.train.checkpoint import Checkpointer, abstract_with_shardings

    restored = Checkpointer(tmp_path / "run" / "checkpoints", save_every=1, keep=1).restore(
        abstract_with_shardings(state)
    )
    for a, b in zip(jax.tree.leaves(t5_before), jax.tree.leaves(restored.params["text"]), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))
