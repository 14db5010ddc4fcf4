"""TfdsSource over tiny TFDS datasets that the tests prepare themselves, without TensorFlow.

Datasets are prepared with a ``GeneratorBasedBuilder`` subclass (``store_as_tfds_dataset`` needs TF) in
``array_record`` format, defined under ``skip_registration`` so that TfdsSource loads them from their
files, as it would a dataset prepared elsewhere. ``Image`` features are given ``PIL.Image`` values (TFDS
encodes NumPy images with TF).
"""

import io
import json
import pickle
import shutil
import sys

import media_factory as mf
import numpy as np
import pytest
from PIL import Image

from jaxsora.data import tfds_source, video_io
from jaxsora.data.source import ClipSource, UnreadableClipError
from jaxsora.data.tfds_source import TfdsSource

tfds = pytest.importorskip("tensorflow_datasets")

VIDEOS = [mf.index_frames(5 + 3 * i, 16 + 8 * i, 24) for i in range(3)]  # 5x16x24, 8x24x24, 11x32x24


def prepare(data_dir, name, features, examples, metadata=None):
    """Prepare dataset ``name`` (array_record) under ``data_dir`` from a list of example dicts."""

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.FeaturesDict(features), metadata=metadata
        )

    with tfds.core.registered.skip_registration():
        builder_cls = type(
            name,
            (tfds.core.GeneratorBasedBuilder,),
            {
                "VERSION": tfds.core.Version("1.0.0"),
                "_info": _info,
                "_split_generators": lambda self, dl_manager: {"train": self._generate_examples()},
                "_generate_examples": lambda self: enumerate(examples),
            },
        )
    builder = builder_cls(data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare()
    return builder.name


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfds")
    prepare(
        d,
        "TensorVideos",
        {
            "video": tfds.features.Tensor(shape=(None, None, None, 3), dtype=np.uint8, encoding="zlib"),
            "caption": tfds.features.Text(),
            "fps": tfds.features.Scalar(np.float32),
        },
        [{"video": v, "caption": f"clip {i}", "fps": 10.0 + i} for i, v in enumerate(VIDEOS)],
    )
    prepare(
        d,
        "FrameVideos",
        {
            "frames": tfds.features.Sequence(tfds.features.Image(shape=(None, None, 3))),
            "label": tfds.features.ClassLabel(names=["run", "jump"]),
        },
        [{"frames": [Image.fromarray(f) for f in v], "label": i % 2} for i, v in enumerate(VIDEOS)],
        metadata=tfds.core.MetadataDict(fps=12.5),
    )
    prepare(
        d,
        "Stills",
        {
            "meta": {"image": tfds.features.Image(shape=(None, None, 3))},
            "text": tfds.features.Text(),
            "short_caption": tfds.features.Text(),
        },
        [
            {"meta": {"image": Image.fromarray(v[-1])}, "text": f"image {i}", "short_caption": f"#{i}"}
            for i, v in enumerate(VIDEOS)
        ],
    )
    prepare(
        d,
        "TensorStills",
        {"pixels": tfds.features.Tensor(shape=(16, 24, 3), dtype=np.uint8), "caption": tfds.features.Text()},
        [{"pixels": v[2, :16], "caption": f"still {i}"} for i, v in enumerate(VIDEOS)],
    )
    prepare(
        d,
        "Ambiguous",
        {
            "left": tfds.features.Tensor(shape=(2, 8, 8, 3), dtype=np.uint8),
            "right": tfds.features.Tensor(shape=(2, 8, 8, 3), dtype=np.uint8),
            "caption": tfds.features.Text(),
        },
        [
            {
                "left": np.zeros((2, 8, 8, 3), np.uint8),
                "right": np.ones((2, 8, 8, 3), np.uint8),
                "caption": "x",
            }
        ],
    )
    prepare(
        d,
        "NoVideo",
        {"caption": tfds.features.Text(), "score": tfds.features.Scalar(np.float32)},
        [{"caption": "words only", "score": 1.0}],
    )
    prepare(
        d,
        "CorruptFrames",
        {
            "video": tfds.features.Sequence(tfds.features.Image(shape=(None, None, 3))),
            "caption": tfds.features.Text(),
        },
        [
            {"video": [Image.fromarray(f) for f in VIDEOS[0]], "caption": "fine"},
            {"video": [io.BytesIO(b"not a png at all")] * 3, "caption": "broken"},
        ],
    )
    return d


@pytest.mark.parametrize(
    ("name", "kind", "fps", "captions"),
    [
        ("tensor_videos", tfds_source.TENSOR_VIDEO, [10.0, 11.0, 12.0], ["clip 0", "clip 1", "clip 2"]),
        ("frame_videos", tfds_source.ENCODED_VIDEO, [12.5] * 3, ["run", "jump", "run"]),  # ClassLabel names
    ],
)
def test_video_datasets_round_trip(data_dir, name, kind, fps, captions):
    source = TfdsSource(name, data_dir=data_dir)
    assert isinstance(source, ClipSource) and len(source) == 3 and source.video_kind == kind
    for i, video in enumerate(VIDEOS):
        info = source.info(i)
        assert (info.num_frames, info.height, info.width) == video.shape[:3]
        assert info.fps == fps[i] and info.caption == captions[i]
        assert info.source_id == f"tfds:{name}/train/{i}"
        indices = [info.num_frames - 1, 0, 2, 2]
        clip = source.load(i, indices, 12, 12)  # portrait or square clips, square request: centre crop
        assert clip.frames.shape == (4, 12, 12, 3) and clip.frames.dtype == np.uint8
        assert [mf.frame_index(f) for f in clip.frames] == indices
        assert np.array_equal(clip.frames, video_io.resize_cover(video[indices], 12, 12))  # the shared resize
        assert clip.caption == captions[i] and clip.meta["index"] == i


def test_image_datasets_are_one_frame_clips(data_dir):
    stills = TfdsSource("stills", data_dir=data_dir)
    assert (stills.video_key, stills.video_kind, stills.text_key) == (
        "meta/image",
        tfds_source.ENCODED_IMAGE,
        "text",
    )
    info = stills.info(2)
    assert (info.num_frames, info.height, info.width, info.fps) == (1, 32, 24, 24.0)
    clip = stills.load(2, [0], 16, 12)
    assert clip.frames.shape == (1, 16, 12, 3) and mf.frame_index(clip.frames[0]) == 10
    assert (clip.caption, clip.short_caption) == ("image 2", "#2")
    with pytest.raises(IndexError):
        stills.load(2, [1], 16, 12)

    tensor_stills = TfdsSource("tensor_stills", data_dir=data_dir, fps=30)
    assert tensor_stills.video_kind == tfds_source.TENSOR_IMAGE
    assert tensor_stills.info(0).fps == 30.0
    assert mf.frame_index(tensor_stills.load(1, [0, 0], 8, 8).frames[1]) == 2


def test_info_reads_headers_only_and_load_decodes_only_requested_frames(data_dir, monkeypatch):
    decoded = []
    original = tfds_source._decode_image
    monkeypatch.setattr(tfds_source, "_decode_image", lambda v, sid: decoded.append(sid) or original(v, sid))
    source = TfdsSource("frame_videos", data_dir=data_dir, cache_size=2)
    for i in range(3):
        source.info(i)
    assert decoded == [] and source._infos.indices() == [1, 2]  # no pixels decoded; LRU bounded
    source.load(2, [7, 1, 1, 7, 3], 8, 8)
    assert len(decoded) == 3  # frames 1, 3, 7 once each


def test_video_feature_is_read_without_tensorflow(data_dir, tmp_path):
    """A dataset declaring tfds.features.Video (written by TFDS with TF) is read as its Sequence(Image)."""
    src = data_dir / "frame_videos" / "1.0.0"
    dst = tmp_path / "video_set" / "1.0.0"
    shutil.copytree(src, dst)
    for path in dst.iterdir():
        if path.name.startswith("frame_videos-"):
            path.rename(dst / path.name.replace("frame_videos-", "video_set-"))
    info = json.loads((dst / "dataset_info.json").read_text())
    info["name"] = "video_set"
    (dst / "dataset_info.json").write_text(json.dumps(info))
    features = json.loads((dst / "features.json").read_text())
    features["featuresDict"]["features"]["frames"] = {  # what Video(shape=(None, None, None, 3)) writes
        "pythonClassName": "tensorflow_datasets.core.features.video_feature.Video",
        "video": {
            "shape": {"dimensions": ["-1", "-1", "-1", "3"]},
            "dtype": "uint8",
            "encodingFormat": "png",
        },
    }
    (dst / "features.json").write_text(json.dumps(features))

    for source in [TfdsSource("video_set", data_dir=tmp_path), TfdsSource(str(dst))]:
        assert source.video_kind == tfds_source.ENCODED_VIDEO
        assert source.info(1).num_frames == 8 and source.info(1).caption == "jump"
        assert [mf.frame_index(f) for f in source.load(2, [10, 4], 8, 8).frames] == [10, 4]

    class VideoSet(tfds.core.GeneratorBasedBuilder):  # registered code whose _info builds a Video (needs TF)
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            video = tfds.features.Video(shape=(None, None, None, 3))
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({"frames": video}))

        def _split_generators(self, dl_manager):
            return {}

        def _generate_examples(self):
            yield from ()

    source = TfdsSource("video_set", data_dir=tmp_path)  # falls back to the prepared files
    assert source.info(2).num_frames == 11
    assert "tensorflow" not in sys.modules


def test_explicit_keys_and_detection_errors(data_dir):
    with pytest.raises(ValueError, match=r"several video features \(left, right\).*video_key"):
        TfdsSource("ambiguous", data_dir=data_dir)
    right = TfdsSource("ambiguous", data_dir=data_dir, video_key="right", text_key="caption")
    assert right.load(0, [1], 8, 8).frames.max() == 1
    with pytest.raises(ValueError, match=r"no video or image feature.*caption \(Text.*score \(Scalar"):
        TfdsSource("no_video", data_dir=data_dir)
    with pytest.raises(ValueError, match="video_key 'nope' is not a feature"):
        TfdsSource("tensor_videos", data_dir=data_dir, video_key="nope")
    with pytest.raises(ValueError, match="neither a Text nor a ClassLabel"):
        TfdsSource("tensor_videos", data_dir=data_dir, text_key="fps")


def test_corrupt_frames_raise_unreadable_clip_error(data_dir):
    source = TfdsSource("corrupt_frames", data_dir=data_dir)
    assert source.load(0, [0], 8, 8).caption == "fine"
    with pytest.raises(UnreadableClipError) as error:
        source.info(1)
    assert error.value.source_id == "tfds:corrupt_frames/train/1"
    with pytest.raises(UnreadableClipError):
        source.load(1, [0], 8, 8)


def test_pickles_and_reopens(data_dir):
    source = TfdsSource("frame_videos", data_dir=data_dir)
    source.info(0)
    clone = pickle.loads(pickle.dumps(source))
    assert len(clone._infos) == 0 and len(clone) == 3
    assert np.array_equal(clone.load(1, [5], 8, 8).frames, source.load(1, [5], 8, 8).frames)


def test_missing_tfds_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r"jaxsora\[tfds\]"):
        TfdsSource("anything")
