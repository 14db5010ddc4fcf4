"""A T5 / mT5 / UMT5 text encoder (Flax Linen) that loads Hugging Face weights from a local folder.

The encoder is numerically the one of ``transformers``' ``T5EncoderModel`` / ``UMT5EncoderModel``: token
embedding (no scaling), pre-norm blocks of T5's RMS layer norm (no mean subtraction, no bias), self-attention
with bias-free projections, *no* ``1/sqrt(d)`` scaling and a learned relative position bias over
bidirectional log-spaced buckets, a bias-free feed-forward (``relu``, or gated ``gelu`` for T5 v1.1, mT5 and
UMT5), and a final layer norm. T5 and mT5 learn one bias table (in layer 0) shared by every layer; UMT5
learns one per layer (``per_layer_relative_bias``).

Layers are repeated with ``nn.scan`` (parameters stacked on a leading ``"layers"`` axis), optionally
rematerialised. Parameters are float32 (``param_dtype``) and carry logical axis names from
:data:`jaxsora.parallel.LOGICAL_RULES`; matmuls run in ``dtype`` (bfloat16 by default), softmax and the
residual stream in float32, and the output is float32.

Weights: :func:`load_hf_t5` reads ``config.json`` and ``model.safetensors`` (or the shards listed in
``model.safetensors.index.json``) from a local folder; nothing is downloaded and torch is not needed. Only
the encoder's tensors are read (memory-mapped), so a full encoder-decoder checkpoint costs no more than an
encoder-only one. ``transformers`` is needed only by :func:`load_hf_tokenizer`.

Typical use::

    model, params = load_hf_t5("/models/t5-v1_1-xxl")
    tokenizer = load_hf_tokenizer("/models/t5-v1_1-xxl")
    tokens, mask = tokenize(tokenizer, ["a red circle moves left"], max_length=64)
    emb = jax.jit(model.apply)({"params": params}, tokens, mask)  # [1, 64, d_model] float32
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Dtype = Any
ACT_AXES = ("batch", "length", "act_embed")
HEAD_AXES = ("batch", "length", "act_heads", None)
MLP_AXES = ("batch", "length", "act_mlp")

# Hugging Face's activation names (``feed_forward_proj`` is "ACT" or "gated-ACT"; "gated-gelu" means the
# tanh approximation, which transformers calls "gelu_new").
_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "gelu": lambda x: nn.gelu(x, approximate=False),
    "gelu_new": lambda x: nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: nn.gelu(x, approximate=True),
    "silu": nn.silu,
    "swish": nn.silu,
}


@dataclasses.dataclass(frozen=True)
class T5Config:
    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"  # "relu" (T5 v1.0) | "gated-gelu" (T5 v1.1, mT5, UMT5) | "[gated-]ACT"
    per_layer_relative_bias: bool = False  # False: T5/mT5 (layer 0's table, shared) | True: UMT5 (per layer)
    dtype: str = "bfloat16"  # compute dtype; the output is float32
    param_dtype: str = "float32"
    remat: bool = False  # rematerialise each layer in the backward pass

    def __post_init__(self):
        _ = self.activation  # validates feed_forward_proj
        for name in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"T5Config.{name} must be >= 1, got {getattr(self, name)}")
        if self.relative_attention_num_buckets < 4:
            raise ValueError(
                f"relative_attention_num_buckets must be >= 4, got {self.relative_attention_num_buckets}"
            )

    @property
    def is_gated(self) -> bool:
        return self.feed_forward_proj.startswith("gated-")

    @property
    def activation(self) -> str:
        parts = self.feed_forward_proj.split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated") or parts[-1] not in _ACTIVATIONS:
            raise ValueError(
                f"feed_forward_proj must be 'ACT' or 'gated-ACT' with ACT in {sorted(_ACTIVATIONS)}, "
                f"got {self.feed_forward_proj!r}"
            )
        return "gelu_new" if self.feed_forward_proj == "gated-gelu" else parts[-1]

    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any], **overrides) -> T5Config:
        """From a Hugging Face ``config.json`` (``model_type`` t5, mt5 or umt5); ``overrides`` (e.g.
        ``dtype="float32"``, ``remat=True``) replace fields."""
        model_type = config.get("model_type")
        if model_type not in ("t5", "mt5", "umt5"):
            raise ValueError(f"expected a config.json of model_type t5, mt5 or umt5, got {model_type!r}")
        default_ff = "relu" if model_type == "t5" else "gated-gelu"
        fields = dict(
            vocab_size=int(config["vocab_size"]),
            d_model=int(config["d_model"]),
            d_kv=int(config["d_kv"]),
            d_ff=int(config["d_ff"]),
            num_layers=int(config["num_layers"]),
            num_heads=int(config["num_heads"]),
            relative_attention_num_buckets=int(config.get("relative_attention_num_buckets", 32)),
            relative_attention_max_distance=int(config.get("relative_attention_max_distance", 128)),
            layer_norm_epsilon=float(config.get("layer_norm_epsilon", 1e-6)),
            feed_forward_proj=str(config.get("feed_forward_proj", default_ff)),
            per_layer_relative_bias=model_type == "umt5",
        )
        return cls(**{**fields, **overrides})


def relative_position_bucket(
    relative_position: np.ndarray, num_buckets: int, max_distance: int
) -> np.ndarray:
    """T5's bidirectional bucketing of ``key_pos - query_pos`` (the same float32 arithmetic as
    ``transformers``' ``T5Attention._relative_position_bucket(..., bidirectional=True)``)."""
    rel = np.asarray(relative_position, dtype=np.int64)
    num_buckets //= 2
    buckets = (rel > 0).astype(np.int64) * num_buckets
    rel = np.abs(rel)
    max_exact = num_buckets // 2
    is_small = rel < max_exact
    with np.errstate(divide="ignore"):  # log(0) on the small positions, which np.where discards
        scaled = (
            np.log(rel.astype(np.float32) / np.float32(max_exact))
            / np.float32(math.log(max_distance / max_exact))
            * np.float32(num_buckets - max_exact)
        )
    large = max_exact + np.where(is_small, 0, scaled).astype(np.int64)
    large = np.minimum(large, num_buckets - 1)
    return (buckets + np.where(is_small, rel, large)).astype(np.int32)


def _position_buckets(length: int, cfg: T5Config) -> np.ndarray:
    pos = np.arange(length)
    return relative_position_bucket(
        pos[None, :] - pos[:, None], cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance
    )


def _bias_table(module: nn.Module, cfg: T5Config) -> jax.Array:
    return module.param(
        "relative_attention_bias",
        nn.with_logical_partitioning(nn.initializers.normal(1.0), (None, "heads")),
        (cfg.relative_attention_num_buckets, cfg.num_heads),
        jnp.dtype(cfg.param_dtype),
    )


def _position_bias(table: jax.Array, buckets: jax.Array) -> jax.Array:
    """[buckets, heads] table, [Lq, Lk] bucket ids -> [heads, Lq, Lk] float32 bias."""
    return jnp.take(table.astype(jnp.float32), buckets, axis=0).transpose(2, 0, 1)


class T5LayerNorm(nn.Module):
    """T5's layer norm: RMS over features, a scale, no mean subtraction and no bias (float32)."""

    eps: float = 1e-6
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        init = nn.with_logical_partitioning(nn.initializers.ones, ("norm",))
        scale = self.param("scale", init, (x.shape[-1],), self.param_dtype)
        x32 = x.astype(jnp.float32)
        x32 = x32 * lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return x32 * scale.astype(jnp.float32)


def _dense(module: nn.Module, name: str, shape: tuple[int, ...], axes: tuple[str, ...], fan_in: int, dtype):
    init = nn.initializers.normal(fan_in**-0.5)
    return module.param(name, nn.with_logical_partitioning(init, axes), shape, dtype)


class T5Attention(nn.Module):
    cfg: T5Config

    @nn.compact
    def __call__(self, x: jax.Array, bias: jax.Array, mask: jax.Array) -> jax.Array:
        """``x`` [B, L, D]; ``bias`` [H, L, L] float32; ``mask`` [B, L] bool (keys to attend to)."""
        cfg, dtype, pdt = self.cfg, jnp.dtype(self.cfg.dtype), jnp.dtype(self.cfg.param_dtype)
        d, h, k = cfg.d_model, cfg.num_heads, cfg.d_kv
        x = x.astype(dtype)
        qkv = []
        for name in ("query", "key", "value"):
            w = _dense(self, name, (d, h, k), ("embed", "heads", "kv"), d, pdt)
            y = jnp.einsum("bld,dhk->blhk", x, w.astype(dtype))
            qkv.append(nn.with_logical_constraint(y, HEAD_AXES))
        q, kk, v = qkv
        # T5 folds the 1/sqrt(d_kv) scaling into its initialisation: logits are the plain dot products.
        logits = jnp.einsum("bqhk,bshk->bhqs", q, kk, preferred_element_type=jnp.float32)
        logits = logits + bias[None]
        logits = jnp.where(mask[:, None, None, :], logits, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(logits, axis=-1).astype(dtype)
        y = jnp.einsum("bhqs,bshk->bqhk", probs, v)
        y = nn.with_logical_constraint(y, HEAD_AXES)
        w_out = _dense(self, "out", (h, k, d), ("heads", "kv", "embed"), h * k, pdt)
        return jnp.einsum("blhk,hkd->bld", y, w_out.astype(dtype), preferred_element_type=jnp.float32)


class T5MLP(nn.Module):
    cfg: T5Config

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg, dtype, pdt = self.cfg, jnp.dtype(self.cfg.dtype), jnp.dtype(self.cfg.param_dtype)
        d, f = cfg.d_model, cfg.d_ff
        act = _ACTIVATIONS[cfg.activation]
        x = x.astype(dtype)

        def proj(name):
            w = _dense(self, name, (d, f), ("embed", "mlp"), d, pdt)
            return nn.with_logical_constraint(jnp.einsum("bld,df->blf", x, w.astype(dtype)), MLP_AXES)

        h = act(proj("wi_0")) * proj("wi_1") if cfg.is_gated else act(proj("wi"))
        w_out = _dense(self, "wo", (f, d), ("mlp", "embed"), f, pdt)
        return jnp.einsum(
            "blf,fd->bld", h.astype(dtype), w_out.astype(dtype), preferred_element_type=jnp.float32
        )


class T5Block(nn.Module):
    """One encoder layer; the scan's body (returns ``(x, None)``)."""

    cfg: T5Config

    @nn.compact
    def __call__(self, x, buckets, bias, mask):
        cfg = self.cfg
        if cfg.per_layer_relative_bias:  # UMT5: this layer's own table
            bias = _position_bias(_bias_table(self, cfg), buckets)
        pdt = jnp.dtype(cfg.param_dtype)
        h = T5LayerNorm(cfg.layer_norm_epsilon, pdt, name="attn_norm")(x)
        x = x + T5Attention(cfg, name="attn")(h, bias, mask)
        x = nn.with_logical_constraint(x, ACT_AXES)
        h = T5LayerNorm(cfg.layer_norm_epsilon, pdt, name="mlp_norm")(x)
        x = x + T5MLP(cfg, name="mlp")(h)
        return nn.with_logical_constraint(x, ACT_AXES), None


class T5Encoder(nn.Module):
    """``__call__(tokens int [B, L], mask bool [B, L] | None) -> [B, L, d_model]`` float32.

    ``mask`` marks real tokens; padded keys are never attended to. As in ``transformers``, outputs at padded
    positions are computed (from the real tokens) rather than zeroed: mask them downstream.
    """

    cfg: T5Config

    @nn.compact
    def __call__(self, tokens: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        cfg, pdt = self.cfg, jnp.dtype(self.cfg.param_dtype)
        tokens = jnp.asarray(tokens, jnp.int32)
        mask = jnp.ones(tokens.shape, bool) if mask is None else jnp.asarray(mask, bool)
        embedding = self.param(
            "embedding",
            nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed")),
            (cfg.vocab_size, cfg.d_model),
            pdt,
        )
        x = jnp.take(embedding, tokens, axis=0).astype(jnp.float32)
        x = nn.with_logical_constraint(x, ACT_AXES)
        buckets = jnp.asarray(_position_buckets(tokens.shape[1], cfg))
        bias = None if cfg.per_layer_relative_bias else _position_bias(_bias_table(self, cfg), buckets)
        block = nn.remat(T5Block, prevent_cse=False) if cfg.remat else T5Block
        layers = nn.scan(
            block,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=(nn.broadcast, nn.broadcast, nn.broadcast),
            length=cfg.num_layers,
            metadata_params={nn.PARTITION_NAME: "layers"},
        )
        x, _ = layers(cfg, name="layers")(x, buckets, bias, mask)
        return T5LayerNorm(cfg.layer_norm_epsilon, pdt, name="final_norm")(x)


def abstract_variables(model: T5Encoder, batch: int = 1, length: int = 8):
    """The model's variables as boxed (logically partitioned) shape structs, without allocating them."""
    tokens = jax.ShapeDtypeStruct((batch, length), jnp.int32)
    mask = jax.ShapeDtypeStruct((batch, length), jnp.bool_)
    return jax.eval_shape(model.init, jax.random.key(0), tokens, mask)


def shard_params(params, model: T5Encoder, mesh: jax.sharding.Mesh):
    """Places an (unboxed) parameter tree, e.g. from :func:`load_hf_t5`, on ``mesh`` by the logical rules.

    Call it outside :func:`jaxsora.parallel.mesh_context` (like :func:`jaxsora.parallel.state_shardings`)."""
    from jaxsora import parallel

    shardings = parallel.state_shardings(mesh, abstract_variables(model))["params"]
    return jax.device_put(params, shardings)


# ----------------------------------------------------------------------------------------------------------
# Hugging Face weights


_ST_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def _st_dtype(code: str, tensor: str, file: str):
    if code in _ST_DTYPES:
        return np.dtype(_ST_DTYPES[code])
    import ml_dtypes  # a dependency of jax; numpy has no bfloat16 of its own

    extra = {"BF16": ml_dtypes.bfloat16, "F8_E4M3": ml_dtypes.float8_e4m3fn, "F8_E5M2": ml_dtypes.float8_e5m2}
    if code not in extra:
        raise ValueError(f"tensor {tensor!r} in {file} has unsupported safetensors dtype {code}")
    return np.dtype(extra[code])


class _SafetensorsFile:
    """A memory-mapped ``.safetensors`` file: tensors are read only when asked for.

    The format (an 8-byte little-endian header length, a JSON header of name -> dtype/shape/offsets, then the
    raw bytes) is read directly: ``safetensors.numpy`` cannot return bfloat16, the dtype most large T5
    checkpoints are stored in.
    """

    def __init__(self, path: str):
        self.path = path
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise ValueError(f"{path} is not a safetensors file (shorter than its header)")
            n = int.from_bytes(raw, "little")
            try:
                header = json.loads(f.read(n))
            except (json.JSONDecodeError, UnicodeDecodeError, MemoryError, OverflowError) as e:
                raise ValueError(f"{path} is not a safetensors file (unreadable header: {e})") from e
        header.pop("__metadata__", None)
        self.header, self.data_start = header, 8 + n
        self._mmap = None

    def keys(self) -> list[str]:
        return list(self.header)

    def get(self, name: str) -> np.ndarray:
        info = self.header[name]
        dtype = _st_dtype(info["dtype"], name, self.path)
        begin, end = info["data_offsets"]
        if self._mmap is None:
            self._mmap = np.memmap(self.path, dtype=np.uint8, mode="r")
        raw = self._mmap[self.data_start + begin : self.data_start + end]
        return raw.view(dtype).reshape(info["shape"])


def _open_checkpoint(path: str) -> dict[str, _SafetensorsFile]:
    """tensor name -> the file holding it, from model.safetensors or model.safetensors.index.json."""
    single = os.path.join(path, "model.safetensors")
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            weight_map = json.load(f).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index} has no 'weight_map'")
        files = {}
        for shard in sorted(set(weight_map.values())):
            shard_path = os.path.join(path, shard)
            if not os.path.isfile(shard_path):
                raise FileNotFoundError(f"shard {shard!r} listed in {index} is missing from {path}")
            files[shard] = _SafetensorsFile(shard_path)
        out = {}
        for name, shard in weight_map.items():
            if name not in files[shard].header:
                raise ValueError(f"{index} maps {name!r} to {shard}, which does not hold it")
            out[name] = files[shard]
        return out
    if os.path.isfile(single):
        st = _SafetensorsFile(single)
        return {name: st for name in st.keys()}
    present = sorted(os.listdir(path))
    raise FileNotFoundError(
        f"no model.safetensors or model.safetensors.index.json in {path} (it holds {present}); "
        "a PyTorch .bin checkpoint can be converted with transformers' save_pretrained(..., "
        "safe_serialization=True)"
    )


def _hf_layout(cfg: T5Config) -> dict[str, tuple[tuple[int, ...], tuple[str | int, ...], str]]:
    """HF encoder tensor name -> (its HF shape, our param path, how to convert: "copy" | "linear" |
    "linear_in" (to [in, heads, kv]) | "linear_out" (to [heads, kv, out]))."""
    d, f, h, k, nb = cfg.d_model, cfg.d_ff, cfg.num_heads, cfg.d_kv, cfg.relative_attention_num_buckets
    out: dict[str, tuple[tuple[int, ...], tuple[str | int, ...], str]] = {
        "shared.weight": ((cfg.vocab_size, d), ("embedding",), "copy"),
        "encoder.final_layer_norm.weight": ((d,), ("final_norm", "scale"), "copy"),
    }
    if not cfg.per_layer_relative_bias:
        out["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = (
            (nb, h),
            ("relative_attention_bias",),
            "copy",
        )
    mlp = ("wi_0", "wi_1") if cfg.is_gated else ("wi",)
    for i in range(cfg.num_layers):
        p = f"encoder.block.{i}.layer."
        for hf, ours in (("q", "query"), ("k", "key"), ("v", "value")):
            out[f"{p}0.SelfAttention.{hf}.weight"] = ((h * k, d), ("layers", "attn", ours, i), "linear_in")
        out[f"{p}0.SelfAttention.o.weight"] = ((d, h * k), ("layers", "attn", "out", i), "linear_out")
        if cfg.per_layer_relative_bias:
            out[f"{p}0.SelfAttention.relative_attention_bias.weight"] = (
                (nb, h),
                ("layers", "relative_attention_bias", i),
                "copy",
            )
        out[f"{p}0.layer_norm.weight"] = ((d,), ("layers", "attn_norm", "scale", i), "copy")
        for name in mlp:
            out[f"{p}1.DenseReluDense.{name}.weight"] = ((f, d), ("layers", "mlp", name, i), "linear")
        out[f"{p}1.DenseReluDense.wo.weight"] = ((d, f), ("layers", "mlp", "wo", i), "linear")
        out[f"{p}1.layer_norm.weight"] = ((d,), ("layers", "mlp_norm", "scale", i), "copy")
    return out


def _convert(array: np.ndarray, how: str, cfg: T5Config) -> np.ndarray:
    if how == "copy":
        return array
    array = array.T  # torch's Linear stores [out, in]
    if how == "linear_in":
        return array.reshape(cfg.d_model, cfg.num_heads, cfg.d_kv)
    if how == "linear_out":
        return array.reshape(cfg.num_heads, cfg.d_kv, cfg.d_model)
    return array


def params_from_hf(tensors: Mapping[str, Callable[[], np.ndarray] | np.ndarray], cfg: T5Config) -> dict:
    """Our parameter tree (numpy, ``cfg.param_dtype``) from HF tensor names -> arrays (or thunks returning
    them). Decoder and LM-head tensors are ignored; a missing or unexpected encoder tensor, or one of the
    wrong shape, is an error naming it."""
    layout = _hf_layout(cfg)
    names = set(tensors)
    if "shared.weight" not in names and "encoder.embed_tokens.weight" in names:
        tensors = {**tensors, "shared.weight": tensors["encoder.embed_tokens.weight"]}
        names.add("shared.weight")
    missing = sorted(set(layout) - names)
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise KeyError(f"checkpoint lacks encoder tensors {missing[:5]}{more} for {cfg}")
    known = set(layout) | {"encoder.embed_tokens.weight"}
    unexpected = sorted(n for n in names if n.startswith("encoder.") and n not in known)
    if unexpected:
        more = f" (and {len(unexpected) - 5} more)" if len(unexpected) > 5 else ""
        raise KeyError(f"checkpoint has unexpected encoder tensors {unexpected[:5]}{more} for {cfg}")

    pdt = np.dtype(jnp.dtype(cfg.param_dtype))
    stacked: dict[tuple[str, ...], np.ndarray] = {}  # filled layer by layer (no second copy for np.stack)
    flat: dict[tuple[str, ...], np.ndarray] = {}
    for name, (shape, path, how) in layout.items():
        value = tensors[name]
        array = value() if callable(value) else value
        if tuple(array.shape) != shape:
            raise ValueError(f"tensor {name!r} has shape {tuple(array.shape)}, expected {shape} for {cfg}")
        array = _convert(array, how, cfg)
        if path[0] == "layers":
            if path[:-1] not in stacked:
                stacked[path[:-1]] = np.empty((cfg.num_layers, *array.shape), pdt)
            stacked[path[:-1]][path[-1]] = array
        else:
            flat[path] = np.asarray(array, dtype=pdt)
    flat.update(stacked)
    params: dict = {}
    for path, array in flat.items():
        node = params
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = array
    return params


def read_hf_config(path: str) -> dict:
    config_path = os.path.join(path, "config.json")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"T5 checkpoint folder {path} does not exist")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"no config.json in {path}")
    with open(config_path) as f:
        return json.load(f)


def load_hf_t5(
    path: str | os.PathLike,
    dtype: Dtype = jnp.bfloat16,
    param_dtype: Dtype = jnp.float32,
    remat: bool = False,
) -> tuple[T5Encoder, dict]:
    """``(model, params)`` from a local Hugging Face T5 / mT5 / UMT5 folder (``config.json`` and
    ``model.safetensors`` or a sharded ``model.safetensors.index.json``; a diffusers ``text_encoder/``
    folder is one). ``params`` are host numpy arrays (place them with :func:`shard_params` or
    ``jax.device_put``); use as ``model.apply({"params": params}, tokens, mask)``."""
    path = os.fspath(path)
    cfg = T5Config.from_hf_config(
        read_hf_config(path),
        dtype=jnp.dtype(dtype).name,
        param_dtype=jnp.dtype(param_dtype).name,
        remat=remat,
    )
    files = _open_checkpoint(path)
    params = params_from_hf({name: (lambda n=name, st=st: st.get(n)) for name, st in files.items()}, cfg)
    model = T5Encoder(cfg)
    spec = lambda tree: jax.tree.map(lambda a: (tuple(a.shape), np.dtype(a.dtype).name), tree)
    expected = spec(nn.meta.unbox(abstract_variables(model))["params"])
    if spec(params) != expected:  # a bug here, not in the checkpoint
        raise AssertionError(f"loaded parameters {spec(params)} do not match the model's {expected}")
    return model, params


def load_hf_tokenizer(path: str | os.PathLike):
    """The checkpoint's tokenizer (``transformers.AutoTokenizer``, local files only)."""
    try:
        from transformers import AutoTokenizer
    except ImportError as e:
        raise ImportError(
            "load_hf_tokenizer needs the 'transformers' package (pip install transformers sentencepiece)"
        ) from e
    return AutoTokenizer.from_pretrained(os.fspath(path), local_files_only=True)


def tokenize(tokenizer, texts: Sequence[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens int32 [B, max_length], mask bool [B, max_length])``: padded to ``max_length``, truncated to
    it (T5's end-of-sequence token kept)."""
    out = tokenizer(
        list(texts), padding="max_length", truncation=True, max_length=max_length, return_tensors="np"
    )
    return out["input_ids"].astype(np.int32), out["attention_mask"].astype(bool)
