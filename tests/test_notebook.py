"""colab/quickstart.ipynb runs end to end (tiny settings, CPU) in a kernel on this interpreter, shows its
videos inline with mediapy and writes every sample with the frames and sizes it asked for."""

import json
import os
import pathlib
import sys

import nbformat
import numpy as np
from nbclient import NotebookClient

from jaxsora.data import video_io

NOTEBOOK = pathlib.Path(__file__).resolve().parent.parent / "colab" / "quickstart.ipynb"
KERNEL = "jaxsora-test-python"


def html_outputs(nb) -> list[str]:
    return [
        "".join(out["data"]["text/html"])
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "display_data" and "text/html" in out.get("data", {})
    ]


def test_quickstart_notebook_runs_end_to_end(tmp_path, monkeypatch, capsys):
    # A kernel spec for this very interpreter (the fresh virtualenv in CI), found first through JUPYTER_PATH.
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "jaxsora tests",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    # One CPU device, as on a Colab CPU runtime (conftest forces 8 for the sharding tests; the demo's CPU mesh
    # is one device).
    flags = os.environ.get("XLA_FLAGS", "").split()
    monkeypatch.setenv("XLA_FLAGS", " ".join(f for f in flags if "force_host_platform_device_count" not in f))
    monkeypatch.setenv("JAXSORA_NOTEBOOK_TINY", "1")
    monkeypatch.delenv("JAXSORA_NOTEBOOK_CHECKPOINT", raising=False)
    work = tmp_path / "work"  # the notebook's working directory: it writes jaxsora_quickstart/ here
    work.mkdir()

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), "commit it cleared"
    # Raises CellExecutionError (with the cell's traceback) if any cell fails.
    NotebookClient(nb, kernel_name=KERNEL, timeout=600, resources={"metadata": {"path": str(work)}}).execute()

    out = work / "jaxsora_quickstart"
    assert (out / "dit" / "checkpoints").is_dir() and (out / "vae" / "checkpoints").is_dir()
    written = json.loads((out / "samples" / "index.json").read_text())
    by_mode: dict[str, list[dict]] = {}
    for item in written:
        by_mode.setdefault(item["mode"], []).append(item)
    assert set(by_mode) == {"landscape", "portrait", "image", "image_to_video"}
    assert len(by_mode["landscape"]) == len(by_mode["portrait"]) == len(by_mode["image"]) == 2
    for mode, (width, height), frames in (
        ("landscape", (48, 32), 5),
        ("portrait", (32, 48), 5),
        ("image", (32, 32), 1),
        ("image_to_video", (48, 32), 5),
    ):
        for item in by_mode[mode]:
            assert (item["frames"], item["height"], item["width"]) == (frames, height, width), item
            for name in item["files"]:
                path = out / name
                assert path.is_file() and path.stat().st_size > 0, path
                if frames > 1:  # the files themselves hold every frame at the requested size
                    assert video_io.probe(path)[:3] == (frames, height, width), path
                    assert video_io.read_frames(path, [0, frames - 1], height, width).std() > 0
                else:
                    assert np.asarray(video_io.read_frames(path, [0], height, width)).shape == (
                        1,
                        height,
                        width,
                        3,
                    )

    # Shown inline: one mediapy table per call, videos as embedded H.264 <video>, images as <img>.
    html = html_outputs(nb)
    videos = [h for h in html if "<video" in h]
    images = [h for h in html if "<img" in h and "<video" not in h]
    assert len(videos) == 3 and all(h.count("<video") == 2 for h in videos), [h[:200] for h in html]
    assert all("data:video/mp4;base64," in h for h in videos)
    assert len(images) == 1 and images[0].count("<img") == 2
    printed = "".join(
        "".join(o.get("text", "")) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "-> 'A medium red circle moves" in printed  # the expanded prompt is shown

    # The notebook's trained workdir through `jaxsora sample` (in process): a loop, a connection, and bad input
    # as one-line errors.
    from jaxsora import cli

    monkeypatch.chdir(work)
    dit = str(out / "dit")
    clips = [str(out / f) for item in by_mode["landscape"] for f in item["files"] if f.endswith(".mp4")]
    common = ["sample", "--checkpoint", dit, "--prompt", "a red circle", "--size", "48x32", "--steps", "2"]
    for extra, folder, frames in (
        (["--loop", "--frames", "8"], "loop", 8),  # a loop's frames are its period
        (["--connect", clips[0], clips[1], "--middle-frames", "4"], "connect", 5 + 4 + 4),
    ):
        assert cli.main([*common, *extra, "--out", str(tmp_path / folder)]) == 0
        settings = json.loads((tmp_path / folder / "sample.json").read_text())
        assert settings["mode"] == folder and settings["frames"] == [frames]
        assert video_io.probe(tmp_path / folder / "sample0.mp4")[:3] == (frames, 32, 48)
    # ... scored by `jaxsora eval-dit`: its JSON, and every sample on the labelled contact sheet.
    evaluation = [
        "eval-dit",
        "--workdir",
        dit,
        "--num",
        "3",
        "--sizes",
        "48x32",
        "--frames",
        "5",
        "--steps",
        "2",
    ]
    assert cli.main(evaluation) == 0
    result = json.loads((out / "dit" / "eval_dit.json").read_text())
    assert result["summary"]["videos"] == len(result["videos"]) == 3
    assert result["summary"]["settings"]["steps"] == 2 and 0 <= result["summary"]["shape_accuracy"] <= 1
    for video in result["videos"]:  # each prompt object as read on the sample and on the VAE's round trip
        assert [o["asked"] for o in video["vae_read"]] == [o["asked"] for o in video["read"]]
    misses = sum(
        o["got"] is None or o["got"]["shape"] != o["asked"]["shape"]
        for v in result["videos"]
        for o in v["read"]
    )
    assert sum(result["summary"]["shape_misses_read_as"].values()) == misses
    from PIL import Image

    with Image.open(out / "dit" / "eval_dit" / "sheet.png") as sheet:
        assert sheet.width >= 3 * 48 and sheet.height > 32
    # Scored in 2 worker processes beside the generation (this machine's default is none), without the round
    # trip: the same samples read the same.
    assert cli.main([*evaluation, "--score-workers", "2", "--no-vae-ceiling"]) == 0
    pooled = json.loads((out / "dit" / "eval_dit.json").read_text())
    assert pooled["summary"]["score_workers"] == 2 and pooled["summary"]["vae_ceiling"] is None
    assert [v["read"] for v in pooled["videos"]] == [v["read"] for v in result["videos"]]
    assert not any("vae_read" in v for v in pooled["videos"])
    capsys.readouterr()
    for extra, message in (
        (["--loop", "--frames", "9"], "a loop's frames are its period: a multiple of 4"),
        (["--image", "nope.png"], "nope.png not found"),
    ):
        assert cli.main([*common, *extra, "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("jaxsora: error: ") and message in err and "\n" not in err, err
