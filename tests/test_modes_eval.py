"""The generation-mode scorers of `jaxsora eval-modes`, checked on the synthetic world's true clips: a true
continuation continues, a frozen one does not; a closed loop passes, a one-way clip does not; true images
score; PSNR is the usual one."""

import numpy as np

from jaxsora.train.dit_eval import held_out_prompts
from jaxsora.train.modes_eval import continues, loop_seam, psnr, score_image


def test_true_continuations_continue_and_frozen_ones_do_not():
    items = held_out_prompts(16, seed=3_000_017, sizes=[(128, 128), (160, 96)], frames=17)
    true_ok = frozen_ok = cases_with_movers = 0
    for it in items:
        clip = it["frames"]
        given, truth = clip[:9], clip[9:13]
        result = continues(given, truth)
        true_ok += result["ok"]
        if result["moving"]:
            cases_with_movers += 1
            frozen_ok += continues(given, np.repeat(given[-1:], 4, axis=0))["ok"]
        assert not continues(given, np.full_like(truth, 128))["ok"]  # a blank continuation loses the objects
    assert true_ok >= 0.75 * len(items), true_ok
    assert cases_with_movers >= 8 and frozen_ok == 0  # standing still is not continuing a motion


def test_loop_seam_passes_a_closed_loop_and_fails_a_one_way_clip():
    clip = held_out_prompts(1, seed=11, sizes=[(96, 96)], frames=17)[0]["frames"]
    one_way = loop_seam(clip)
    closed = loop_seam(np.concatenate([clip[:9], clip[8:0:-1]]))  # there and back: the end meets the start
    assert closed["ok"] and closed["seam"] < closed["mean_change"]
    if one_way["mean_change"] > 0:  # a moving clip's end is far from its start
        assert not one_way["ok"]


def test_true_images_score_and_psnr():
    items = held_out_prompts(8, seed=5, sizes=[(128, 128)], frames=1, images=True)
    totals = {}
    read: list[dict] = []
    for it in items:
        assert it["frames"].shape == (1, 128, 128, 3)
        for k, v in score_image(it["frames"][0], it, read).items():
            totals[k] = totals.get(k, 0) + v
    assert totals["objects"] >= 8 and len(read) == totals["objects"]
    assert (
        sum(r["got"] is not None and r["got"]["shape"] == r["asked"]["shape"] for r in read)
        == totals["shape"]
    )
    assert totals["colour"] / totals["objects"] >= 0.9 and totals["shape"] / totals["objects"] >= 0.8
    image = items[0]["frames"][0]
    assert psnr(image, image) == float("inf")
    noisy = np.clip(image.astype(np.int16) + 5, 0, 255).astype(np.uint8)
    assert (
        abs(psnr(noisy, image) - 10 * np.log10(255**2 / np.mean((noisy.astype(float) - image) ** 2))) < 1e-6
    )
