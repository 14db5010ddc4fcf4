"""Generation modes on CPU (random weights): given frames are really kept, shapes, seeds, loop, errors."""

import flax.linen as nn
import jax
import model_params
import numpy as np
import pytest

from jaxsora.config import load_config
from jaxsora.models.vae import VAE
from jaxsora.models.vae_codec import VideoCodec
from jaxsora.prompts import CallableExpander, SyntheticWorldExpander
from jaxsora.sample import Generator, smoothest_start
from jaxsora.train.dit import DiTParts
from jaxsora.train.vae import vae_config

STEPS = dict(steps=2, guidance=2.0)


@pytest.fixture(scope="module")
def setup():
    config = load_config(
        "configs/tiny.py",
        ["dit.dtype=float32", "text_encoder.dtype=float32", "vae.dtype=float32", "text.max_len=48"],
    )
    cfg = vae_config(config)
    vae_params = model_params.init(
        VAE(cfg),
        {"params": jax.random.key(0), "noise": jax.random.key(1)},
        np.zeros((1, 5, 16, 16, 3), np.float32),
    )
    meta = {"latent_channels": 16, "temporal_factor": 4, "spatial_factor": 8}
    parts = DiTParts(config, meta)
    params = jax.jit(lambda key: nn.meta.unbox(parts.init_params(key)))(jax.random.key(2))
    # Perturbed: a zero-initialised head would output 0 everywhere.
    params = model_params.perturbed(params, 0.05, seed=3)
    return Generator(parts, VideoCodec(cfg, vae_params)), params


def video(frames, seed=0, h=32, w=48):
    return np.random.default_rng(seed).integers(0, 256, (frames, h, w, 3), dtype=np.uint8)


def test_text_to_video_and_image_shapes_and_seeds(setup):
    gen, params = setup
    a = gen.text_to_video(
        params, ["a red circle", "a blue star"], frames=9, height=32, width=48, seed=1, **STEPS
    )
    assert a.shape == (2, 9, 32, 48, 3) and np.isfinite(a).all()
    b = gen.text_to_video(
        params, ["a red circle", "a blue star"], frames=9, height=32, width=48, seed=1, **STEPS
    )
    np.testing.assert_array_equal(a, b)
    c = gen.text_to_video(
        params, ["a red circle", "a blue star"], frames=9, height=32, width=48, seed=2, **STEPS
    )
    assert np.abs(a - c).max() > 1e-3
    image = gen.text_to_video(params, ["a red circle"], frames=1, height=48, width=32, **STEPS)
    assert image.shape == (1, 1, 48, 32, 3)
    heun = gen.text_to_video(params, ["a red circle"], frames=5, height=32, width=32, sampler="heun", **STEPS)
    assert heun.shape == (1, 5, 32, 32, 3)


def test_image_to_video_keeps_the_image_as_the_first_frame(setup):
    gen, params = setup
    image = video(1)[0]
    out = gen.image_to_video(params, ["a red circle"], image, frames=9, **STEPS)
    assert out.shape == (1, 9, 32, 48, 3)
    reconstruction = gen.decode(gen.encode(image)[None])[
        0, 0
    ]  # the causal decoder: frame 0 sees latent 0 only
    np.testing.assert_allclose(out[0, 0], reconstruction, atol=1e-4)


def test_extension_keeps_the_original_frames(setup):
    gen, params = setup
    clip = video(9, seed=1)
    reconstruction = gen.decode(gen.encode(clip)[None])[0]
    forward = gen.extend(params, ["x"], clip, new_frames=8, direction="forward", **STEPS)
    assert forward.shape == (1, 17, 32, 48, 3)
    np.testing.assert_allclose(forward[0, :9], reconstruction, atol=1e-4)
    backward = gen.extend(params, ["x"], clip, new_frames=4, direction="backward", **STEPS)
    assert backward.shape == (1, 13, 32, 48, 3)
    tokens, grid = gen.latents_to_tokens(gen.encode(clip))
    assert grid == (3, 2, 3)
    with pytest.raises(ValueError, match="multiple of 4"):
        gen.extend(params, ["x"], clip, new_frames=6, **STEPS)
    with pytest.raises(ValueError, match="direction"):
        gen.extend(params, ["x"], clip, new_frames=4, direction="sideways", **STEPS)


def test_connect_loop_and_edit(setup):
    gen, params = setup
    a, b = video(5, seed=2), video(5, seed=3)
    joined = gen.connect(params, ["x"], a, b, middle_frames=8, **STEPS)
    assert joined.shape == (
        1,
        17,
        32,
        48,
        3,
    )  # a's 5 frames, 8 new ones (the last in b's first's place), b's 4
    np.testing.assert_allclose(joined[0, :5], gen.decode(gen.encode(a)[None])[0], atol=1e-4)
    loop = gen.loop(params, ["x"], frames=12, height=32, width=48, **STEPS)
    assert loop.shape == (1, 12, 32, 48, 3) and np.isfinite(loop).all()
    with pytest.raises(ValueError, match="multiple of 4"):
        gen.loop(params, ["x"], frames=13, height=32, width=48, **STEPS)
    edited = gen.edit(params, ["x"], a, strength=0.5, **STEPS)
    assert edited.shape == (1, 5, 32, 48, 3)
    light = gen.edit(params, ["x"], a, strength=0.02, steps=2, guidance=1.0)
    recon = gen.decode(gen.encode(a)[None])
    assert np.abs(light - recon).mean() < np.abs(edited - recon).mean()  # less noise, closer to the input
    with pytest.raises(ValueError, match="strength"):
        gen.edit(params, ["x"], a, strength=1.5, **STEPS)
    with pytest.raises(ValueError, match="differ in size"):
        gen.connect(params, ["x"], a, video(5, h=48), middle_frames=4, **STEPS)


def test_connect_gives_four_frame_latents_only_after_the_start(setup, monkeypatch):
    """``connect`` holds ``first``'s latent frames at the start and ``second``'s from its latent frame 1 at the
    end: no one-frame (first-frame) latent in the middle of the clip, where training never puts one."""
    gen, params = setup
    seen = {}
    with_given = gen._with_given

    def record(params, prompts, grid, given, **kw):
        seen.update(grid=grid, given=given)
        return with_given(params, prompts, grid, given, **kw)

    monkeypatch.setattr(gen, "_with_given", record)
    a, b = video(5, seed=2), video(9, seed=3)
    joined = gen.connect(params, ["x"], a, b, middle_frames=4, **STEPS)
    assert joined.shape == (1, 5 + 4 + 8, 32, 48, 3)
    a_frames, b_frames = gen._split_frames(gen.encode(a)), gen._split_frames(gen.encode(b))
    assert seen["grid"][0] == 5 and sorted(seen["given"]) == [0, 1, 3, 4]  # a: 0-1, new: 2, b[1:]: 3-4
    for pos, want in ((0, a_frames[0]), (1, a_frames[1]), (3, b_frames[1]), (4, b_frames[2])):
        np.testing.assert_array_equal(seen["given"][pos], want)
    with pytest.raises(ValueError, match="at least 5 frames"):
        gen.connect(params, ["x"], a, b[:1], middle_frames=4, **STEPS)


def test_smoothest_start_puts_the_wrap_on_the_calmest_transition():
    """A cyclic video starts on the frame whose change from the one before it (cyclically) is smallest, so
    the loop's seam is the smallest of its transitions, below their mean unless all are equal."""
    rng = np.random.default_rng(0)
    for want in range(6):
        steps = rng.uniform(1.0, 2.0, size=6)
        steps[want] = 0.05  # the step into frame `want` (from frame 5 for want = 0: the cycle's wrap)
        angle = 2 * np.pi * np.cumsum(steps) / steps.sum()  # once around a circle: frame 5 runs into 0
        frames = np.stack([np.cos(angle), np.sin(angle)], axis=-1)[:, None, :].astype(np.float32)
        start = smoothest_start(frames)
        assert start == want
        rolled = np.roll(frames, -start, axis=0)
        seam = np.abs(rolled[-1] - rolled[0]).mean()
        assert seam < np.abs(np.diff(rolled, axis=0)).mean()


def test_decode_periodic_is_the_steady_state_of_the_repeated_latents(setup):
    """The streaming decoder fed the period until it settles gives the frames that one long decode of the
    repeated latents shows at its end: the loop's pixels are a stretch of an endless decode."""
    gen, _ = setup
    codec = gen.codec
    rng = np.random.default_rng(1)
    start = rng.normal(size=(1, 1, 4, 6, 16)).astype(np.float32)
    period = rng.normal(size=(1, 3, 4, 6, 16)).astype(np.float32)
    frames, settled = codec.decode_periodic(start, period)
    assert frames.shape == (1, 12, 32, 48, 3) and settled <= 1e-3
    long = codec.decode(np.concatenate([start, *[period] * 12], axis=1))
    np.testing.assert_allclose(np.asarray(frames), np.asarray(long[:, -12:]), atol=1e-4)
    # and not a trivial one: the decoder remembers earlier latents, so an early period is not yet settled
    assert np.abs(np.asarray(long[:, 1:13]) - np.asarray(long[:, -12:])).max() > 1e-3


def test_loop_closes_on_its_own_start(setup, monkeypatch):
    """The loop's second sampling starts from the first clip's end and is held, at its end, on the first clip's
    latent frame 1 (its frames 1-4): what it generates leads back into the loop's start. Every given latent
    frame sits where training puts such frames (a one-frame latent first, four-frame latents after). The loop
    is the steady decode of A's latents from frame 1 on then B's new ones, started after its calmest
    transition."""
    gen, params = setup
    calls = {}
    sample_tokens, with_given = gen.sample_tokens, gen._with_given

    def record_sample(params, prompts, grid, **kw):
        out = sample_tokens(params, prompts, grid, **kw)
        calls.setdefault("a", (out, grid))
        return out

    def record_given(params, prompts, grid, given, **kw):
        calls["b"] = (given, grid)
        out = with_given(params, prompts, grid, given, **kw)
        calls["b_out"] = (out, grid)
        return out

    monkeypatch.setattr(gen, "sample_tokens", record_sample)
    monkeypatch.setattr(gen, "_with_given", record_given)
    loop = gen.loop(params, ["x"], frames=16, height=32, width=48, seed=5, **STEPS)
    assert loop.shape == (1, 16, 32, 48, 3)
    (a, grid_a), (given, grid_b) = calls["a"], calls["b"]
    per_frame = grid_a[1] * grid_a[2]
    assert grid_a[0] == 3 and grid_b[0] == 5  # A: frames 0-8; B: restart, A's last, 2 new, A's frame 1
    assert sorted(given) == [0, 1, 4]
    np.testing.assert_array_equal(given[1], a[0, 2 * per_frame : 3 * per_frame])  # A's last latent frame
    np.testing.assert_array_equal(given[4], a[0, per_frame : 2 * per_frame])  # A's frames 1-4 close it
    # the restart is one of A's decoded frames re-encoded as a first (one-frame) latent
    latents_a = gen.tokens_to_latents(a, grid_a)
    video_a = gen.decode(latents_a)[0]
    np.testing.assert_allclose(given[0], gen._split_frames(gen.encode(video_a[4]))[0], atol=1e-5)
    # the pixels: the period A[1:] + B's new latents, decoded to its steady state and rotated
    b, _ = calls["b_out"]
    latents_b = gen.tokens_to_latents(b, grid_b)
    period = np.concatenate([np.asarray(latents_a)[:, 1:], np.asarray(latents_b)[:, 2:4]], axis=1)
    cyclic = np.asarray(gen.codec.decode(np.concatenate([np.asarray(latents_a)[:, :1], *[period] * 10], 1)))
    cyclic = cyclic[0, -16:]
    start = smoothest_start(cyclic)
    np.testing.assert_allclose(loop[0], np.roll(cyclic, -start, axis=0), atol=1e-4)
    seams = np.abs(loop[0, -1] - loop[0, 0]).mean()
    assert seams < np.abs(np.diff(loop[0], axis=0)).mean()  # the wrap is the calmest transition
    np.testing.assert_array_equal(
        loop, gen.loop(params, ["x"], frames=16, height=32, width=48, seed=5, **STEPS)
    )


@pytest.mark.parametrize("shape", [{"data": 4, "sequence": 2}, {"data": 2, "fsdp": 2, "sequence": 2}])
def test_sampling_sharded_over_the_mesh_equals_one_device(setup, shape):
    """With a mesh of the 8 test devices, the Generator places the parameters by their logical names and the
    prompts over data (x fsdp), the model shards tokens over sequence: the same samples as on one device."""
    from jaxsora import parallel

    gen, params = setup
    # the VAE's params committed to one device, as a restored checkpoint's are
    codec = VideoCodec(gen.codec.cfg, jax.device_put(gen.codec.params, jax.devices()[0]))
    sharded = Generator(gen.parts, codec, mesh=parallel.make_mesh(shape))
    grid = (2, 4, 6)
    given = np.zeros((1, 48), bool)
    given[:, :24] = True  # the first latent frame held, as image-to-video does
    values = np.random.default_rng(0).normal(size=(1, 48, gen.parts.cfg.patch_dim)).astype(np.float32)
    for prompts, extra in (
        (["a red circle"], {}),
        (["a", "b", "c", "d"], dict(given=given, given_values=values)),
    ):
        one = gen.sample_tokens(params, prompts, grid, seed=3, **STEPS, **extra)
        many = sharded.sample_tokens(params, prompts, grid, seed=3, **STEPS, **extra)
        assert len(many.sharding.device_set) == 8 and not many.sharding.is_fully_replicated, many.sharding
        np.testing.assert_allclose(np.asarray(many), np.asarray(one), atol=1e-5)
    # the modes built on it mix sharded samples with the VAE's one-device latents
    one = gen.loop(params, ["x"], frames=8, height=32, width=48, seed=4, **STEPS)
    many = sharded.loop(params, ["x"], frames=8, height=32, width=48, seed=4, **STEPS)
    np.testing.assert_allclose(many, one, atol=1e-4)


def test_prompt_expansion():
    expand = SyntheticWorldExpander()
    assert expand("a red circle going left") == "A medium red circle moves slowly left, on a grey background."
    out = expand("a big blue star moving quickly up and right and a yellow square on a sage background")
    assert "large blue star" in out and "up and right" in out and "yellow square" in out and "sage" in out
    assert expand("a cat") == "a cat"  # nothing the synthetic vocabulary knows: unchanged
    assert CallableExpander(str.upper)("a red circle") == "A RED CIRCLE"
    with pytest.raises(ValueError, match="non-empty"):
        CallableExpander(lambda p: "")("x")
