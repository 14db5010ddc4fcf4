import numpy as np
import pytest

from jaxsora import tokenizer
from jaxsora.data.geometry import plan_frames, plan_size, valid_num_frames


@pytest.mark.parametrize(
    "h, w", [(1280, 720), (720, 1280), (1080, 1920), (600, 1400), (480, 480), (768, 1024), (1024, 768)]
)
def test_plan_size_keeps_aspect_within_rounding(h, w):
    out_h, out_w = plan_size(h, w, max_pixels=64 * 64, multiple=16)
    assert out_h % 16 == 0 and out_w % 16 == 0
    assert out_h * out_w <= 64 * 64
    # Within one rounding step of the native aspect ratio.
    lo = (out_w - 16) / (out_h + 16) if out_w > 16 else 0
    hi = (out_w + 16) / max(out_h - 16, 1)
    assert lo <= w / h <= hi


def test_nine_by_sixteen_stays_portrait_at_larger_budget():
    out_h, out_w = plan_size(1920, 1080, max_pixels=256 * 256, multiple=16)
    assert out_h > out_w
    assert abs((out_w / out_h) - 9 / 16) < 0.03


def test_plan_size_square_crop_and_no_upscale():
    assert plan_size(720, 1280, max_pixels=64 * 64, multiple=16, crop="square") == (64, 64)
    assert plan_size(32, 48, max_pixels=64 * 64, multiple=16) == (32, 48)
    assert plan_size(32, 48, max_pixels=64 * 64, multiple=16, upscale=True)[0] > 32
    with pytest.raises(ValueError, match="crop"):
        plan_size(32, 48, max_pixels=4096, multiple=16, crop="circle")


def test_plan_frames_forms_and_strides():
    assert valid_num_frames(17, 4) == 17 and valid_num_frames(16, 4) == 13 and valid_num_frames(1, 4) == 1
    frames, fps = plan_frames(96, 24.0, target_fps=8, max_frames=17, temporal_factor=4)
    assert frames == list(range(0, 49, 3)) and fps == 8.0
    frames, _ = plan_frames(10, 30.0, target_fps=8, max_frames=17, temporal_factor=4)
    assert len(frames) == 1 + 4 * ((len(frames) - 1) // 4) and frames[-1] < 10
    assert plan_frames(1, 24.0, target_fps=8, max_frames=17, temporal_factor=4) == ([0], 24.0)
    starts = {
        plan_frames(96, 24.0, target_fps=8, max_frames=17, temporal_factor=4, rng=np.random.default_rng(s))[
            0
        ][0]
        for s in range(20)
    }
    assert len(starts) > 5 and max(starts) <= 96 - 49


def test_tokenizer_round_trip_and_truncation():
    ids, mask = tokenizer.encode("a red circle — drifts", 64)
    assert (
        ids.dtype == np.int32
        and ids[0] == tokenizer.BOS
        and mask.sum() == len("a red circle — drifts".encode()) + 2
    )
    assert tokenizer.decode(ids) == "a red circle — drifts"
    ids, mask = tokenizer.encode("x" * 100, 16)
    assert mask.all() and ids[-1] == tokenizer.EOS and tokenizer.decode(ids) == "x" * 14
