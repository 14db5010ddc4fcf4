"""video_io: probe and frame reads of real files, resize semantics, orientation, writing, broken files."""

import sys

import media_factory as mf
import numpy as np
import pytest
from PIL import Image

from jaxsora.data import video_io
from jaxsora.data.source import UnreadableClipError

pytest.importorskip("av")


@pytest.mark.parametrize("ext", ["mp4", "webm", "gif", "mov", "mkv", "avi"])
def test_probe_and_read_selected_frames(tmp_path, ext):
    path = mf.write_index_video(tmp_path / f"clip.{ext}", num_frames=20, height=32, width=48, fps=24.0)
    num_frames, height, width, fps = video_io.probe(path)
    assert (num_frames, height, width) == (20, 32, 48)  # webm/mkv/gif store no count: packets are counted
    assert fps == pytest.approx(25.0 if ext == "gif" else 24.0)  # GIF delays are in 1/100 s
    indices = [5, 0, 3, 3, 19]  # unsorted, repeated, up to the last frame
    frames = video_io.read_frames(path, indices, 16, 24)
    assert frames.shape == (5, 16, 24, 3) and frames.dtype == np.uint8
    assert [mf.frame_index(f) for f in frames] == indices


@pytest.mark.parametrize("ext", ["png", "jpg", "jpeg", "webp", "bmp"])
def test_images_are_one_frame_clips(tmp_path, ext):
    path = tmp_path / f"still.{ext}"
    video_io.write_image(path, mf.index_frames(8, 32, 48)[7])
    assert video_io.probe(path) == (1, 32, 48, video_io.IMAGE_FPS)
    frames = video_io.read_frames(path, [0, 0], 8, 8)
    assert frames.shape == (2, 8, 8, 3)
    assert mf.frame_index(frames[1]) == 7
    with pytest.raises(ValueError, match="1 frame"):
        video_io.read_frames(path, [1], 8, 8)


@pytest.mark.parametrize("size", [(16, 24), (7, 13), (48, 32), (64, 96), (32, 48)])
def test_output_has_exactly_the_requested_size(tmp_path, size):
    path = mf.write_index_video(tmp_path / "clip.mp4", 3)
    assert video_io.read_frames(path, [0, 2], *size).shape == (2, *size, 3)


def test_same_aspect_request_keeps_every_edge(tmp_path):
    path = tmp_path / "portrait.mp4"  # 9:16, coloured 8-px bands along each edge
    video_io.write_video(path, mf.edge_frames(3, 64, 36, band=8), 24)
    frame = video_io.read_frames(path, [1], 32, 18)[0].astype(int)
    assert frame.shape == (32, 18, 3)
    close = lambda pixel, colour: np.abs(pixel - colour).max() < 40
    assert close(frame[0, 9], (255, 0, 0)) and close(frame[-1, 9], (0, 255, 0))  # top, bottom
    assert close(frame[16, 0], (0, 0, 255)) and close(frame[16, -1], (255, 255, 0))  # left, right
    assert close(frame[16, 9], (128, 128, 128))


def test_square_request_centre_crops(tmp_path):
    path = tmp_path / "wide.mp4"  # 1:2, blue quarter | grey half | red quarter
    video_io.write_video(path, mf.column_frames(2, 32, 64), 24)
    square = video_io.read_frames(path, [0], 16, 16)[0].astype(int)
    assert np.abs(square[:, 1:-1] - 128).max() < 12  # only the grey centre is left
    assert (
        np.abs(square - 128).max() < 64
    )  # (the bicubic kernel and 4:2:0 chroma bleed a little at the edges)
    full = video_io.read_frames(path, [0], 16, 32)[0].astype(int)
    assert np.abs(full[8, 0] - (0, 0, 255)).max() < 40 and np.abs(full[8, -1] - (255, 0, 0)).max() < 40


def test_video_scaling_matches_the_array_resize(tmp_path):
    rng = np.random.default_rng(0)
    smooth = np.asarray(
        Image.fromarray(rng.integers(0, 256, (6, 8, 3), np.uint8)).resize((96, 72), Image.BICUBIC)
    )
    path = tmp_path / "smooth.mkv"
    video_io.write_video(path, np.repeat(smooth[None], 2, axis=0), 24)
    native = video_io.read_frames(path, [0])
    for size in [(24, 24), (36, 48), (100, 120)]:
        direct = video_io.read_frames(path, [0], *size).astype(int)
        via_array = video_io.resize_cover(native, *size).astype(int)
        assert np.abs(direct - via_array).mean() < 3.0


def test_resize_cover_antialiases_and_keeps_exact_sizes():
    board = np.repeat((np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)[..., None], 3, axis=-1)
    small = video_io.resize_cover(board, 16, 16)
    assert small.shape == (16, 16, 3) and abs(small.mean() - 127.5) < 3 and small.std() < 5
    frames = np.zeros((2, 30, 50, 3), np.uint8)
    assert video_io.resize_cover(frames, 30, 50) is frames  # already the size: untouched
    assert video_io.resize_cover(frames, 11, 7).shape == (2, 11, 7, 3)


@pytest.mark.parametrize(
    ("degrees", "corner"), [(90, "bottom_left"), (-90, "top_right"), (180, "bottom_right")]
)
def test_rotated_video_is_read_upright(tmp_path, degrees, corner):
    frames = np.full((3, 32, 48, 3), 128, np.uint8)
    frames[:, :16, :24] = (255, 0, 0)  # red top-left quadrant as coded
    path = mf.write_rotated_mp4(tmp_path / "phone.mp4", frames, degrees)
    upright = (48, 32) if degrees % 180 else (32, 48)
    assert video_io.probe(path)[1:3] == upright
    frame = video_io.read_frames(path, [0])[0]
    assert frame.shape[:2] == upright
    h, w = upright
    corners = {
        "top_left": (2, 2),
        "top_right": (2, w - 3),
        "bottom_left": (h - 3, 2),
        "bottom_right": (h - 3, w - 3),
    }
    red = {name for name, (y, x) in corners.items() if frame[y, x, 0] > 200 and frame[y, x, 1] < 60}
    assert red == {corner}


def test_exif_orientation_and_alpha(tmp_path):
    coded = np.full((32, 48, 3), 128, np.uint8)
    coded[:16, :24] = (255, 0, 0)
    image = Image.fromarray(coded)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(tmp_path / "phone.jpg", exif=exif)
    assert video_io.probe(tmp_path / "phone.jpg")[1:3] == (48, 32)
    frame = video_io.read_frames(tmp_path / "phone.jpg", [0])[0]
    assert frame.shape == (48, 32, 3) and frame[2, -3, 0] > 200 and frame[2, 2, 0] < 160  # red now top-right

    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:4, :, 3] = 255  # bottom half transparent
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    frame = video_io.read_frames(tmp_path / "alpha.png", [0])[0]
    assert frame[0, 0].tolist() == [255, 0, 0] and frame[7, 7].tolist() == [255, 255, 255]


def test_write_video_keeps_repeated_gif_frames_and_pads_odd_sizes(tmp_path):
    frames = mf.index_frames(3, 20, 30)[[0, 0, 1, 1, 2]]
    video_io.write_video(tmp_path / "repeat.gif", frames, 10)
    assert video_io.probe(tmp_path / "repeat.gif")[0] == 5
    got = video_io.read_frames(tmp_path / "repeat.gif", range(5))
    assert np.array_equal(got, frames)  # flat colours survive the palette exactly

    odd = mf.index_frames(4, 31, 47)
    video_io.write_video(tmp_path / "odd.mp4", odd, 24)
    assert video_io.probe(tmp_path / "odd.mp4")[:3] == (4, 32, 48)  # padded with the edge pixels
    got = video_io.read_frames(tmp_path / "odd.mp4", [3])[0]
    assert np.abs(got.astype(int) - odd[3, 0, 0]).max() < 8

    with pytest.raises(ValueError, match="uint8"):
        video_io.write_video(tmp_path / "bad.mp4", odd.astype(np.float32), 24)
    with pytest.raises(ValueError, match="cannot write"):
        video_io.write_video(tmp_path / "bad.xyz", odd, 24)


def _faststart_mp4(path, num_frames=20):
    """An mp4 with its index first, so a truncated copy still opens; noisy rows keep frames similar in size."""
    av = video_io.require_av()
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264" if mf._can_encode("libx264") else "mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for frame in mf.index_frames(num_frames):
            frame[:8] = rng.integers(0, 256, (8, 48, 3))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def _decodable(path):
    av = video_io.require_av()
    count = 0
    with av.open(str(path)) as container:
        try:
            for _ in container.decode(video=0):
                count += 1
        except av.error.FFmpegError:
            pass
    return count


def test_truncated_video_policy(tmp_path):
    full = _faststart_mp4(tmp_path / "full.mp4")
    cut = mf.truncated_copy(full, tmp_path / "cut.mp4", 0.5)
    assert video_io.probe(cut)[0] == 20  # the index still promises every frame
    n = _decodable(cut)
    assert 1 <= n < 18
    assert [mf.frame_index(f) for f in video_io.read_frames(cut, [0, n - 1])] == [0, n - 1]
    # a frame just past the end (within 2) repeats the last decodable one; further is an error
    assert mf.frame_index(video_io.read_frames(cut, [n + 1])[0]) == n - 1
    with pytest.raises(UnreadableClipError, match="truncated"):
        video_io.read_frames(cut, range(20))

    plain = mf.write_index_video(tmp_path / "plain.mp4", 20)  # index at the end: a cut file does not open
    cut = mf.truncated_copy(plain, tmp_path / "cut_plain.mp4", 0.5)
    with pytest.raises(UnreadableClipError):
        video_io.probe(cut)
    with pytest.raises(UnreadableClipError):
        video_io.read_frames(cut, [0])


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("random.mp4", mf.random_bytes),
        ("empty.mp4", mf.empty_file),
        ("text.png", mf.text_file),
        ("random.jpg", mf.random_bytes),
        ("text.webm", mf.text_file),
        ("missing.mp4", None),
    ],
)
def test_broken_files_raise_unreadable_clip_error(tmp_path, name, make):
    path = tmp_path / name
    if make is not None:
        make(path)
    with pytest.raises(UnreadableClipError) as info:
        video_io.probe(path)
    assert info.value.source_id == str(path)
    with pytest.raises(UnreadableClipError):
        video_io.read_frames(path, [0], 8, 8)


def test_bad_arguments_are_value_errors(tmp_path):
    path = mf.write_index_video(tmp_path / "clip.mp4", 3)
    with pytest.raises(ValueError):
        video_io.read_frames(path, [-1], 8, 8)
    with pytest.raises(ValueError):
        video_io.read_frames(path, [], 8, 8)
    with pytest.raises(ValueError):
        video_io.read_frames(path, [0], 8, None)


def test_missing_pyav_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ImportError, match=r"jaxsora\[video\]"):
        video_io.probe(tmp_path / "clip.mp4")
    video_io.write_image(tmp_path / "still.png", np.zeros((4, 4, 3), np.uint8))  # images need only Pillow
    assert video_io.probe(tmp_path / "still.png")[0] == 1
