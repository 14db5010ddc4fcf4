"""The causal VAE: shapes, causality, chunked == one-shot, tiling."""

import dataclasses

import jax
import jax.numpy as jnp
import model_params
import numpy as np
import pytest

from jaxsora.models.vae import VAE, VAEConfig, check_video_shape
from jaxsora.models.vae_codec import VideoCodec, _tiled

CFG = VAEConfig(channels=8, channel_mult=(1, 2, 2, 2), num_res_blocks=1, latent_channels=4, dtype="float32")
# A 2x2 pixel-patch stem, per-frame kernels at the highest level, per-level block counts, GroupNorm, the
# end-to-end colour shortcut.
CFG_PATCH = VAEConfig(
    channels=8,
    channel_mult=(1, 2, 2),
    temporal_down=(True, True),
    num_res_blocks=(1, 2, 1),
    latent_channels=4,
    patch_size=2,
    conv2d_levels=1,
    norm="group",
    pixel_shortcut=True,
    logvar_init=-4.0,
    dtype="float32",
)


@pytest.fixture(scope="module", params=[CFG, CFG_PATCH], ids=["plain", "patch"])
def codec(request):
    cfg = request.param
    x = jnp.zeros((1, 5, 16, 16, 3))
    params = model_params.init(VAE(cfg), {"params": jax.random.key(0), "noise": jax.random.key(1)}, x)
    # Perturb the zero-initialised convs so every path carries signal.
    return VideoCodec(cfg, model_params.perturbed(params, 0.05, seed=2))


def video(t, h, w, seed=0):
    return jax.random.uniform(jax.random.key(seed), (1, t, h, w, 3), minval=-1, maxval=1)


@pytest.mark.parametrize("t, h, w", [(1, 32, 32), (9, 32, 56), (5, 56, 32), (13, 24, 40)])
def test_shapes_images_and_videos_any_aspect(codec, t, h, w):
    z = codec.encode(video(t, h, w))
    assert z.shape == (1, 1 + (t - 1) // 4, h // 8, w // 8, 4)
    assert codec.decode(z).shape == (1, t, h, w, 3)


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match=r"1 \+ 4k frames; got 8 \(use 5\)"):
        check_video_shape((1, 8, 32, 32, 3), CFG)
    with pytest.raises(ValueError, match="multiples of 8; got 30x32"):
        check_video_shape((1, 5, 30, 32, 3), CFG)


def test_encoder_is_causal(codec):
    x = video(13, 16, 16)
    z = codec.encode(x)
    for j in (1, 4, 5, 8, 12):
        x2 = x.at[:, j].add(0.7)
        z2 = codec.encode(x2)
        first_affected = (j + 3) // 4  # latent frame i covers pixel frames 4i-3 .. 4i
        np.testing.assert_array_equal(np.asarray(z2[:, :first_affected]), np.asarray(z[:, :first_affected]))
        assert not np.allclose(z2[:, first_affected], z[:, first_affected])


def test_decoder_is_causal(codec):
    z = codec.encode(video(13, 16, 16))
    x = codec.decode(z)
    x2 = codec.decode(z.at[:, 2].add(1.0))
    np.testing.assert_array_equal(np.asarray(x2[:, :5]), np.asarray(x[:, :5]))
    assert not np.allclose(x2[:, 5:9], x[:, 5:9])


@pytest.mark.parametrize("chunk_latents", [1, 2])
def test_chunked_equals_one_shot(codec, chunk_latents):
    x = video(17, 24, 32, seed=3)
    z_full = codec.encode(x)
    z_chunk = codec.encode(x, chunk_latents=chunk_latents)
    assert float(jnp.max(jnp.abs(z_full - z_chunk))) <= 1e-5
    y_full = codec.decode(z_full)
    y_chunk = codec.decode(z_full, chunk_latents=chunk_latents)
    assert float(jnp.max(jnp.abs(y_full - y_chunk))) <= 1e-5


def test_tiling_blends_exactly_for_local_functions():
    x = video(5, 64, 96, seed=4)
    # A pointwise function is unchanged by tiling: the blend weights sum to one everywhere.
    out = _tiled(lambda t: 2.0 * t[:, :, ::8, ::8], x, tile=48, overlap=16, factor=8, down=True)
    np.testing.assert_allclose(np.asarray(out), np.asarray(2.0 * x[:, :, ::8, ::8]), atol=1e-6)
    out = _tiled(
        lambda t: jnp.repeat(jnp.repeat(t, 8, 2), 8, 3),
        x[:, :, :8, :12],
        tile=6,
        overlap=2,
        factor=8,
        down=False,
    )
    assert out.shape == (1, 5, 64, 96, 3)


def test_tiled_vae_matches_one_shot(codec):
    x = video(5, 64, 96, seed=4)
    z = codec.encode(x)
    assert codec.encode(x, tile=96, overlap=0).shape == z.shape
    np.testing.assert_allclose(np.asarray(codec.encode(x, tile=96)), np.asarray(z), atol=1e-5)  # one tile
    y = codec.decode(z)
    err = {
        o: float(jnp.mean(jnp.abs(codec.decode(z, tile=8, overlap=o, chunk_latents=1) - y))) for o in (0, 4)
    }
    assert err[4] < err[0]  # overlapping tiles with blending are closer to the one-shot decode


def test_pixel_shortcut_codes_flat_colour_clips_exactly_at_init():
    cfg = CFG_PATCH
    x = jnp.ones((2, 9, 16, 24, 3)) * jnp.array([0.3, -0.6, 0.9])
    params = model_params.init(
        VAE(cfg), {"params": jax.random.key(0), "noise": jax.random.key(1)}, x[:, :5, :16, :16]
    )
    codec = VideoCodec(cfg, params)
    z = codec.encode(x)
    np.testing.assert_allclose(
        np.asarray(z[..., :3]), np.broadcast_to([0.3, -0.6, 0.9], z[..., :3].shape), atol=1e-6
    )
    np.testing.assert_allclose(np.asarray(codec.decode(z)), np.asarray(x), atol=1e-6)


def test_synthetic_vae_decoder_remembers_31_latent_frames():
    """``configs/vae_synthetic.py``'s decoder (weights perturbed off their zero inits): a change to one latent
    frame reaches the pixels of exactly the next 31 latent frames and no further, the memory
    ``VideoCodec.decode_periodic``'s docstring counts on (a 4-frame loop period settles in about 9)."""
    from jaxsora.config import load_config
    from jaxsora.train.vae import vae_config

    cfg = vae_config(load_config("configs/vae_synthetic.py", ["vae.dtype=float32"]))
    x = jnp.zeros((1, 5, 16, 16, 3))
    params = model_params.init(VAE(cfg), {"params": jax.random.key(0), "noise": jax.random.key(1)}, x)
    codec = VideoCodec(cfg, model_params.perturbed(params, 0.05, seed=3))
    z = np.random.default_rng(0).normal(size=(1, 36, 2, 2, cfg.latent_channels)).astype(np.float32)
    moved = z.copy()
    moved[:, 1] += 1.0
    diff = (
        np.abs(np.asarray(codec.decode(z)) - np.asarray(codec.decode(moved))).reshape(1 + 35 * 4, -1).max(1)
    )
    latent_of_frame = 1 + (np.arange(len(diff)) - 1) // 4  # pixel frame -> its latent frame (frame 0: 0)
    reached = latent_of_frame[diff > 0]
    assert reached.min() == 1 and reached.max() == 1 + 31


def test_latent_noise_perturbs_each_clip_by_up_to_its_share_of_the_channel_spread():
    """``latent_noise`` (VAE training's decoder-robustness option): the decoder sees the latent means plus
    noise of ``u * latent_noise`` channel standard deviations, ``u`` drawn per clip; 0 leaves them alone."""
    import flax.linen as nn

    cfg = CFG_PATCH
    x = jax.random.uniform(jax.random.key(3), (6, 5, 16, 16, 3), minval=-1, maxval=1)
    model = VAE(cfg)
    params = model_params.perturbed(
        model_params.init(model, {"params": jax.random.key(0), "noise": jax.random.key(1)}, x), 0.05, seed=2
    )
    seen = []

    def record_decoder_input(next_fun, args, kwargs, context):
        if isinstance(context.module, VAE) and context.method_name == "decode":
            seen.append(args[0])
        return next_fun(*args, **kwargs)

    def run(noise):
        seen.clear()
        with nn.intercept_methods(record_decoder_input):
            recon, mean, _ = model.apply(
                {"params": params}, x, sample=False, latent_noise=noise, rngs={"noise": jax.random.key(4)}
            )
        return recon, mean, seen[0]

    recon0, mean, z0 = run(0.0)
    np.testing.assert_array_equal(np.asarray(z0), np.asarray(mean))
    recon, mean, z = run(0.5)
    assert not np.allclose(np.asarray(recon), np.asarray(recon0))
    channel_std = np.asarray(mean).reshape(-1, mean.shape[-1]).std(0)
    per_clip = (np.asarray(z - mean) / channel_std).reshape(x.shape[0], -1).std(1)
    assert np.all(per_clip < 0.5 * 1.2) and np.all(per_clip > 0)
    assert per_clip.max() - per_clip.min() > 0.05  # each clip draws its own share


def test_linear_pixel_shortcut_interpolates_block_colours_and_keeps_flat_regions_exact():
    from jaxsora.models.vae import block_upsample

    # One row of block colours 0, 1, 3 (blocks of 4): nearest repeats them; linear ramps between the block
    # centres (pixel i at block coordinate (i + 0.5) / 4 - 0.5) and holds the end blocks' colours outside them.
    z = jnp.asarray([0.0, 1.0, 3.0]).reshape(1, 1, 1, 3, 1) * jnp.ones((1, 1, 2, 1, 1))
    near = np.asarray(block_upsample(z, 4, 1, True))[0, 0, 0, :, 0]
    lin = np.asarray(block_upsample(z, 4, 1, True, "linear"))[0, 0, 0, :, 0]
    np.testing.assert_allclose(near, [0, 0, 0, 0, 1, 1, 1, 1, 3, 3, 3, 3])
    u = np.clip((np.arange(12) + 0.5) / 4 - 0.5, 0, 2)
    np.testing.assert_allclose(lin, np.interp(u, [0, 1, 2], [0, 1, 3]), atol=1e-6)
    assert np.asarray(block_upsample(z, 4, 1, True, "linear")).shape == (1, 1, 8, 12, 1)
    # Each block's mean is kept wherever the colours are flat; time is laid out as nearest does.
    flat = jnp.ones((1, 2, 3, 2, 3)) * jnp.array([0.3, -0.6, 0.9])
    np.testing.assert_allclose(
        np.asarray(block_upsample(flat, 8, 4, True, "linear")),
        np.asarray(block_upsample(flat, 8, 4, True)),
        atol=1e-6,
    )
    # A whole VAE with it codes flat clips exactly at init, as with nearest.
    cfg = dataclasses.replace(CFG_PATCH, pixel_shortcut_upsample="linear")
    x = jnp.ones((1, 5, 16, 24, 3)) * jnp.array([0.3, -0.6, 0.9])
    params = model_params.init(VAE(cfg), {"params": jax.random.key(0), "noise": jax.random.key(1)}, x)
    codec = VideoCodec(cfg, params)
    np.testing.assert_allclose(np.asarray(codec.decode(codec.encode(x))), np.asarray(x), atol=1e-6)
    # Streaming the decoder a latent frame at a time gives the one-shot decode (the change is per frame).
    codec = VideoCodec(cfg, model_params.perturbed(params, 0.05, seed=2))
    z = codec.encode(video(9, 16, 24, seed=5))
    full, chunked = codec.decode(z), codec.decode(z, chunk_latents=1)
    assert float(jnp.max(jnp.abs(full - chunked))) <= 1e-5
    with pytest.raises(ValueError, match="pixel_shortcut_upsample"):
        dataclasses.replace(CFG_PATCH, pixel_shortcut_upsample="cubic")
