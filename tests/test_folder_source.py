"""FolderSource: file discovery, captions (JSONL and sidecars), info/load, broken files, pickling."""

import json
import pickle

import media_factory as mf
import numpy as np
import pytest

from jaxsora.data import video_io
from jaxsora.data.folder import FolderSource
from jaxsora.data.source import ClipSource, UnreadableClipError

pytest.importorskip("av")


@pytest.fixture
def folder(tmp_path):
    """A small tree: JSONL captions for two files, sidecars for two, one file without a caption."""
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "b" / "deep").mkdir(parents=True)
    (root / ".cache").mkdir()
    mf.write_index_video(root / "a" / "clip1.mp4", 12, 32, 48)
    mf.write_index_video(root / "a" / "clip2.webm", 9, 48, 32)
    mf.write_index_video(root / "b" / "deep" / "loop.gif", 6, 16, 16)
    mf.write_index_video(root / "b" / "movie.MOV", 5, 32, 32)
    video_io.write_image(root / "still.png", mf.index_frames(4, 20, 30)[3])
    video_io.write_image(root / "b" / "photo.jpg", mf.index_frames(6, 24, 24)[5])
    mf.write_index_video(root / ".cache" / "hidden.mp4", 3)
    mf.write_index_video(root / "._resource_fork.mp4", 3)
    (root / "notes.md").write_text("not media")
    captions = [
        {"path": "a/clip1.mp4", "caption": "  a grey clip that brightens  ", "short_caption": "grey clip"},
        {"path": str(root / "b" / "deep" / "loop.gif"), "caption": "a looping gif"},  # absolute path
        {"path": "gone.mp4", "caption": "no such file"},
    ]
    (root / "captions.jsonl").write_text("\n".join(json.dumps(c) for c in captions) + "\n\n")
    (root / "a" / "clip2.txt").write_text("sidecar caption\n")  # clip2.webm -> clip2.txt
    (root / "still.png.txt").write_text("a still image")  # still.png -> still.png.txt
    return root


def test_finds_media_in_sorted_order_and_reads_captions(folder):
    source = FolderSource(folder)
    assert isinstance(source, ClipSource)
    assert source.files == [
        "a/clip1.mp4",
        "a/clip2.webm",
        "b/deep/loop.gif",
        "b/movie.MOV",
        "b/photo.jpg",
        "still.png",
    ]
    captions = [source.info(i).caption for i in range(len(source))]
    assert captions == [
        "a grey clip that brightens",
        "sidecar caption",
        "a looping gif",
        "",
        "",
        "a still image",
    ]
    assert source.num_uncaptioned == 2 and source.num_orphan_captions == 1
    assert source.load(0, [0], 8, 8).short_caption == "grey clip"


def test_info_and_load(folder):
    source = FolderSource(folder)
    info = source.info(1)  # a/clip2.webm: 9 frames, portrait
    assert (info.num_frames, info.height, info.width, info.fps) == (9, 48, 32, 24.0)
    assert info.source_id == str(folder / "a" / "clip2.webm")
    clip = source.load(1, [8, 2, 2], 24, 16)
    assert clip.frames.shape == (3, 24, 16, 3) and clip.frames.dtype == np.uint8
    assert [mf.frame_index(f) for f in clip.frames] == [8, 2, 2]
    assert clip.caption == "sidecar caption"
    assert clip.meta == {"path": str(folder / "a" / "clip2.webm")} and clip.source_id == clip.meta["path"]
    still = source.files.index("still.png")
    assert source.info(still).num_frames == 1
    assert mf.frame_index(source.load(still, [0], 10, 10).frames[0]) == 3


def test_options(folder, tmp_path):
    assert FolderSource(folder, recursive=False).files == ["still.png"]
    assert FolderSource(folder, extensions=["MP4", ".gif"]).files == ["a/clip1.mp4", "b/deep/loop.gif"]
    required = FolderSource(folder, require_captions=True)
    assert required.files == ["a/clip1.mp4", "a/clip2.webm", "b/deep/loop.gif", "still.png"]
    assert required.num_uncaptioned == 2

    elsewhere = tmp_path / "other.jsonl"
    elsewhere.write_text(json.dumps({"path": "b/movie.MOV", "caption": "from elsewhere"}) + "\n")
    source = FolderSource(folder, captions=elsewhere)
    assert source.info(source.files.index("b/movie.MOV")).caption == "from elsewhere"
    assert source.info(0).caption == ""  # the root captions.jsonl is not read when another file is given

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"path": "a/clip1.mp4", "caption": "ok"}\n{not json}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        FolderSource(folder, captions=bad)


def test_empty_or_missing_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("nothing here")
    with pytest.raises(ValueError, match="empty"):
        FolderSource(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        FolderSource(tmp_path / "nowhere")


def test_broken_files_raise_only_unreadable_clip_error(tmp_path):
    root = tmp_path / "broken"
    root.mkdir()
    good = mf.write_index_video(root / "good.mp4", 20)
    mf.truncated_copy(good, root / "half.mp4", 0.5)
    mf.random_bytes(root / "noise.mp4")
    mf.empty_file(root / "empty.mp4")
    mf.text_file(root / "text.png")
    mf.write_index_video(root / "deleted.mp4", 4)
    source = FolderSource(root)
    (root / "deleted.mp4").unlink()  # gone after the scan
    assert source.files == ["deleted.mp4", "empty.mp4", "good.mp4", "half.mp4", "noise.mp4", "text.png"]
    for i, name in enumerate(source.files):
        if name == "good.mp4":
            assert source.load(i, [0, 19], 8, 8).frames.shape == (2, 8, 8, 3)
            continue
        with pytest.raises(UnreadableClipError) as error:
            source.info(i)
        assert error.value.source_id == str(root / name)
        with pytest.raises(UnreadableClipError):
            source.load(i, [0], 8, 8)


def test_pickles_without_its_cache(folder):
    source = FolderSource(folder, cache_size=2)
    infos = [source.info(i) for i in range(len(source))]
    assert len(source._infos) == 2  # bounded
    clone = pickle.loads(pickle.dumps(source))
    assert len(clone._infos) == 0
    assert [clone.info(i) for i in range(len(clone))] == infos
    assert np.array_equal(clone.load(0, [3], 8, 8).frames, source.load(0, [3], 8, 8).frames)


def test_runs_through_the_clip_pipeline_and_skips_broken_files(folder):
    from jaxsora.config import load_config
    from jaxsora.data.pipeline import clip_dataset

    mf.random_bytes(folder / "a" / "zz_broken.mp4")
    source = FolderSource(folder)
    config = load_config("configs/tiny.py", [])
    elements = list(clip_dataset(source, config, shard_index=0, shard_count=1, num_epochs=1))
    assert len(elements) == len(source)
    skipped = [e["skipped"] for e in elements if "skipped" in e]
    assert skipped == [str(folder / "a" / "zz_broken.mp4")]
    for element in elements:
        if "video" in element:
            assert element["video"].dtype == np.uint8 and element["video"].ndim == 4
