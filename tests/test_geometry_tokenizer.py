import os
import pickle
import subprocess
import sys

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


# -- hashed word tokens ----------------------------------------------------------------------------------------
V = 16384


def test_words_split_lowercase_words_and_single_punctuation_marks():
    assert tokenizer.words("A Red circle moves up-right, fast!") == [
        "a", "red", "circle", "moves", "up", "-", "right", ",", "fast", "!",
    ]  # fmt: skip
    assert tokenizer.words("Café NAÏVE 日本語 x_2 ...") == ["café", "naïve", "日本語", "x_2", ".", ".", "."]
    assert tokenizer.words("cafe\u0301 ｆｕｌｌ") == ["café", "full"]  # NFKC: one word however it is written
    assert tokenizer.words("  \n\t") == []


def test_encode_words_layout_case_and_cutting():
    ids, mask = tokenizer.encode_words("A red circle, moving up-right.", 16, V)
    pieces = ["a", "red", "circle", ",", "moving", "up", "-", "right", "."]
    assert ids.shape == mask.shape == (16,) and ids.dtype == np.int32 and mask.dtype == bool
    assert ids[0] == tokenizer.BOS and ids[len(pieces) + 1] == tokenizer.EOS
    assert ids[1 : len(pieces) + 1].tolist() == [tokenizer.word_id(p, V) for p in pieces]
    assert mask.tolist() == [True] * (len(pieces) + 2) + [False] * (16 - len(pieces) - 2)
    assert (ids[~mask] == tokenizer.PAD).all() and (ids[1 : len(pieces) + 1] >= tokenizer.OFFSET).all()
    assert (ids < V).all()
    # case-insensitive; punctuation is its own token, not part of the word
    assert tokenizer.encode_words("RED Red red", 8, V)[0][1:4].tolist() == [tokenizer.word_id("red", V)] * 3
    assert tokenizer.encode_words("red.", 8, V)[0][1:3].tolist() == [
        tokenizer.word_id("red", V),
        tokenizer.word_id(".", V),
    ]
    # cut: BOS, the first max_len - 2 words, EOS kept at the end
    long_ids, long_mask = tokenizer.encode_words(" ".join(f"w{i}" for i in range(50)), 10, V)
    assert long_mask.all() and long_ids[0] == tokenizer.BOS and long_ids[-1] == tokenizer.EOS
    assert long_ids[1:-1].tolist() == [tokenizer.word_id(f"w{i}", V) for i in range(8)]
    empty, empty_mask = tokenizer.encode_words("", 4, V)
    assert empty.tolist() == [tokenizer.BOS, tokenizer.EOS, 0, 0] and empty_mask.sum() == 2


def test_word_ids_are_fixed_numbers():
    """CRC-32 of the UTF-8 bytes, not Python's salted hash: these ids are the same in every process and run;
    a change of hash function (which would orphan every trained embedding) fails here."""
    fixed = {"red": 7342, "circle": 7819, ",": 3629, "-": 4788, "a": 10084, "café": 11051, "日本語": 13260}
    assert {w: tokenizer.word_id(w, V) for w in fixed} == fixed
    assert tokenizer.word_id("red", 1000) == 433
    code = (
        "from jaxsora import tokenizer; print(tokenizer.encode_words('a red circle', 6, 16384)[0].tolist())"
    )
    for seed in ("1", "2"):  # other processes with other str hash seeds
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "[1, 10084, 7342, 7819, 2, 0]"


def test_word_tokenizer_pickles_and_matches_encode_words():
    tok = pickle.loads(pickle.dumps(tokenizer.WordTokenizer(12, V)))
    captions = ["A red circle.", "", "a BLUE star moves left, slowly " * 3]
    ids, mask = tok(captions)
    assert ids.shape == mask.shape == (3, 12) and ids.dtype == np.int32 and mask.dtype == bool
    for row, caption in enumerate(captions):
        want_ids, want_mask = tokenizer.encode_words(caption, 12, V)
        np.testing.assert_array_equal(ids[row], want_ids)
        np.testing.assert_array_equal(mask[row], want_mask)
    assert tok([])[0].shape == (0, 12)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: tokenizer.encode_words("a", 1, V), "max_len must be >= 2"),
        (lambda: tokenizer.encode_words("a", 8, 3), "vocab_size must be in"),
        (lambda: tokenizer.WordTokenizer(8, 0), "vocab_size must be in"),
        (lambda: tokenizer.WordTokenizer(0, V), "max_len must be >= 2"),
    ],
)
def test_word_tokenizer_argument_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _synthetic_captions(n: int) -> list[str]:
    """Full-clip captions (``info``) of ``n`` synthetic clips, plus captions of a 17-frame window and a single
    frame of every 4th, in random phrasings (every template and verb) and short, as the pipeline writes them."""
    from jaxsora.data.synthetic import SyntheticWorld
    from jaxsora.data.synthetic.captions import descriptive_caption, short_caption
    from jaxsora.data.synthetic.meta import window_meta
    from jaxsora.data.synthetic.render import layout

    world, rng = SyntheticWorld(num_clips=n), np.random.default_rng(0)
    captions = [world.info(i).caption for i in range(n)]
    for i in range(0, n, 4):
        scene = world.scene(i)
        for frames in (list(range(min(scene.num_frames, 17))), [0]):
            meta = window_meta(scene, layout(scene, frames, scene.height, scene.width), frames)
            captions += [descriptive_caption(meta, rng), short_caption(meta)]
    return captions


def test_synthetic_world_words_do_not_collide_at_16384():
    """Every word and punctuation mark the synthetic world's captions use (and every name in its vocabulary)
    gets an id of its own at vocab_size 16384: the hashing loses nothing on this data."""
    from jaxsora.data.synthetic import vocab

    captions = _synthetic_captions(2000)
    names = [*vocab.COLOURS, *vocab.BACKGROUND_NAMES, *vocab.SHAPES, *vocab.SIZE_CLASSES, *vocab.MOTIONS]
    pieces = {p for text in [*captions, *names, *vocab.SPEED_CLASSES] for p in tokenizer.words(text)}
    by_id: dict[int, set[str]] = {}
    for piece in pieces:
        by_id.setdefault(tokenizer.word_id(piece, V), set()).add(piece)
    assert len(pieces) > 80, sorted(pieces)
    assert not [group for group in by_id.values() if len(group) > 1]
    lengths = np.array([len(tokenizer.words(c)) + 2 for c in captions[:2000]])  # for text.max_len (pytest -s)
    print(f"word tokens a caption, BOS and EOS included: mean {lengths.mean():.1f}, max {lengths.max()}")
