"""The text-to-video scorer: true clips of held-out prompts score (nearly) perfectly; prompts are held out."""

import numpy as np

from jaxsora.train.dit_eval import (
    _by_shape,
    _by_status,
    _motion_outcomes,
    _shape_misses,
    held_out_prompts,
    score,
)


def test_true_clips_match_their_prompts():
    items = held_out_prompts(12, seed=2_000_003, sizes=[(128, 128), (160, 96)], frames=17)
    assert len({it["prompt"] for it in items}) == 12
    assert {tuple(it["size"]) for it in items} == {(128, 128), (160, 96)}
    totals = {}
    per_item = []
    for it in items:
        assert it["frames"].shape == (17, it["size"][1], it["size"][0], 3)
        read: list[dict] = []
        for k, v in score(it["frames"], it, read).items():
            totals[k] = totals.get(k, 0) + v
        assert len(read) == len([o for o in it["objects"] if o.get("status") != "absent"])
        for r in read:  # the evidence kept: each frame's shape scores
            if r["got"] is not None:
                assert len(r["got"]["frame_shape_scores"]) == 17
                assert len(r["got"]["areas"]) == 17
        per_item.append({"read": read})
    by_shape = _by_shape([o for it in per_item for o in it["read"]])
    assert sum(int(v.split(" / ")[0]) for v in by_shape.values()) == totals["shape"]
    assert sum(int(v.split(" / ")[1]) for v in by_shape.values()) == totals["objects"]
    by_size = _by_shape([o for it in per_item for o in it["read"]], by_size=True)
    for shape, sizes in by_size.items():  # the same counts, split by asked size, in size order
        assert list(sizes) == [s for s in ("small", "medium", "large") if s in sizes]
        for i in (0, 1):
            assert sum(int(v.split(" / ")[i]) for v in sizes.values()) == int(by_shape[shape].split(" / ")[i])
    # Each read keeps the object's visibility in the clip; the per-visibility counts add up to the same totals.
    statuses = {o["asked"]["status"] for it in per_item for o in it["read"]}
    assert statuses <= {"stays", "enters", "leaves", "crosses", "partial"} and "stays" in statuses
    by_status = _by_status([o for it in per_item for o in it["read"]])
    assert set(by_status) == statuses
    for i, key in ((0, "shape"), (1, "objects")):
        assert sum(int(v.split(" / ")[i]) for v in by_status.values()) == totals[key]
    outcomes = _motion_outcomes(per_item)
    assert sum(outcomes.values()) == totals["moving"]
    assert outcomes["asked direction"] == totals["motion"]
    assert totals["objects"] >= 12  # every prompt shows something
    assert totals["colour"] / totals["objects"] >= 0.9
    assert totals["shape"] / totals["objects"] >= 0.85
    assert totals["motion"] / max(totals["moving"], 1) >= 0.75  # partly visible movers are harder to read


def test_a_blank_video_scores_nothing_and_training_captions_are_skipped():
    items = held_out_prompts(3, seed=7, sizes=[(64, 64)], frames=5)
    blank = np.full((5, 64, 64, 3), 128, np.uint8)
    read: list[dict] = []
    counts = score(blank, items[0], read)
    assert counts["colour"] == counts["shape"] == counts["motion"] == 0
    assert read and all(r["got"] is None for r in read)  # nothing found for any prompt object
    assert all(v.startswith("0 / ") for v in _by_shape(read).values())
    skipped = held_out_prompts(3, seed=7, sizes=[(64, 64)], frames=5, exclude={items[0]["prompt"]})
    assert items[0]["prompt"] not in {it["prompt"] for it in skipped}


def test_contact_sheet_shows_each_frame_and_marks_misread_shapes():
    from jaxsora.train.eval_sheet import LINE, RIGHT, WRONG, contact_sheet, label_lines

    items = held_out_prompts(3, seed=2_000_003, sizes=[(64, 48), (48, 64)], frames=5)
    frames, reads = [], []
    for it in items:
        read: list[dict] = []
        score(it["frames"], it, read)
        frames.append(it["frames"][2])
        reads.append(read)
    # The second video's first object read as another shape, its third's as nothing found.
    wrong = dict(
        reads[1][0]["got"], shape="circle" if reads[1][0]["asked"]["shape"] != "circle" else "square"
    )
    reads[1][0] = {"asked": reads[1][0]["asked"], "got": wrong}
    reads[2][0] = {"asked": reads[2][0]["asked"], "got": None}
    misses = _shape_misses(o for r in reads for o in r)  # the two misreads, and any of the true clips'
    assert misses.get("none", 0) >= 1 and sum(misses.values()) >= 2
    lines = [label_lines(r) for r in reads]
    assert lines[1][0][1] == WRONG and f"-> {wrong['shape']}" in lines[1][0][0]
    assert lines[2][0][1] == WRONG and lines[2][0][0].endswith("-> none")
    for (_, colour), r in zip(lines[0], reads[0], strict=True):  # untouched reads: green where read right
        assert (colour == RIGHT) == (r["got"] is not None and r["got"]["shape"] == r["asked"]["shape"])

    sheet = np.asarray(contact_sheet(frames, reads, columns=2))
    tile_h = 64 + LINE * max(len(x) for x in lines) + 4
    tile_w = sheet.shape[1] // 2
    assert sheet.shape[0] == 2 * tile_h and tile_w >= 64
    for i, frame in enumerate(frames):  # each tile holds its frame unchanged, top left
        x, y = (i % 2) * tile_w, (i // 2) * tile_h
        np.testing.assert_array_equal(sheet[y : y + frame.shape[0], x : x + frame.shape[1]], frame)
    label_1 = sheet[64:tile_h, tile_w : 2 * tile_w].reshape(-1, 3)  # second tile's labels: some in red
    assert (np.abs(label_1.astype(int) - WRONG).sum(-1) < 60).any()
