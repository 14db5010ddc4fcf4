"""experiments/synthetic/recipe.sh's stage plumbing, with a stand-in for the jaxsora command (no GPU, no jax)."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tarfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_recipe(tmp_path, vae_seconds: float, encode_seconds: float = 0, encode_rc: int = 0, **env):
    """Runs the recipe with JAXSORA = a script that logs its arguments (sleeping in `train-vae` and `encode`,
    which logs `encode-end` as it ends with ``encode_rc``); returns the logged lines (split) and the completed
    process."""
    log = tmp_path / "calls.txt"
    fake = tmp_path / "fake_jaxsora"
    fake.write_text(
        f'#!/usr/bin/env bash\necho "$*" >> {log}\ncase "$1" in\n'
        f"  train-vae) sleep {vae_seconds} ;;\n"
        f"  encode) sleep {encode_seconds}; echo encode-end >> {log}; exit {encode_rc} ;;\n"
        '  train) exec sleep "${FAKE_TRAIN_S:-0}" ;;\nesac\n'  # exec: the pid the recipe stops
    )
    fake.chmod(0o755)
    out = subprocess.run(
        ["bash", "experiments/synthetic/recipe.sh", str(tmp_path / "runs")],
        cwd=REPO,
        env={**os.environ, "JAXSORA": str(fake), "VAE_EVAL_NUM": "0", "MODES_NUM": "0", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return [line.split() for line in log.read_text().splitlines()], out


def dit_time_limit(calls) -> int:
    (train,) = [c for c in calls if c[0] == "train"]
    (limit,) = [a for a in train if a.startswith("--config.train.time_limit_s=")]
    return int(limit.split("=")[1])


def test_recipe_trains_the_dit_beside_the_encode_within_its_budget(tmp_path):
    calls, out = run_recipe(tmp_path, 0, 1, DIT_SECONDS="200", DIT_ARGS="--config.train.optim.lr=5e-4")
    assert out.returncode == 0, out.stderr
    names = [c[0] for c in calls]
    # the DiT starts with the encode (compiling while it runs) and waits for its latents
    assert names[0] == "train-vae" and names[-1] == "eval-dit"
    assert names.index("train") < names.index("encode-end") and sorted(names[1:3]) == ["encode", "train"]
    (train,) = [c for c in calls if c[0] == "train"]
    assert "--config.train.wait_for_latents_s=1800" in train and "--config.train.optim.lr=5e-4" in train
    assert "--config.train.start_with_parts=1" in train  # it trains on the first finished part
    assert dit_time_limit(calls) == 200
    assert "the encode and the DiT get" not in out.stdout


def test_recipe_gives_the_dit_less_time_on_a_slow_machine(tmp_path):
    # The VAE "takes" 2 s: the DiT gets DEADLINE_S - 2 s - EVAL_RESERVE_S, here ~198 s instead of 250.
    calls, out = run_recipe(tmp_path, 2, DIT_SECONDS="250", DEADLINE_S="300", EVAL_RESERVE_S="100")
    assert 196 <= dit_time_limit(calls) <= 198
    assert "the encode and the DiT get" in out.stdout
    # ... and never less than 60 s.
    (tmp_path / "floor").mkdir()
    calls, _ = run_recipe(tmp_path / "floor", 2, DIT_SECONDS="250", DEADLINE_S="150", EVAL_RESERVE_S="100")
    assert dit_time_limit(calls) == 60


def test_recipe_gives_the_dit_all_the_time_left_by_default(tmp_path):
    calls, out = run_recipe(tmp_path, 2, DEADLINE_S="300", EVAL_RESERVE_S="100")
    assert 196 <= dit_time_limit(calls) <= 198
    assert "the encode and the DiT get the" in out.stdout
    res = subprocess.run(
        ["bash", "experiments/synthetic/recipe.sh", str(tmp_path / "bad")],
        cwd=REPO,
        env={**os.environ, "JAXSORA": "true", "DIT_SECONDS": "3m"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "DIT_SECONDS must be" in res.stderr


def test_a_failed_encode_stops_the_dit_waiting_for_it(tmp_path):
    start = time.monotonic()
    calls, out = run_recipe(tmp_path, 0, 0, encode_rc=3, FAKE_TRAIN_S="30")
    assert out.returncode == 1 and "encode failed (exit 3)" in out.stderr
    assert time.monotonic() - start < 20  # the waiting DiT was stopped, not waited for
    assert "eval-dit" not in [c[0] for c in calls]


FAKE_EVAL = """#!/usr/bin/env bash
echo "$CUDA_VISIBLE_DEVICES $*" >> {log}
if [ "$1" = eval-dit ]; then
  while [ $# -gt 0 ]; do [ "$1" = --workdir ] && dir=$2; shift; done
  mkdir -p "$dir"
  cat > "$dir/eval_dit.json" <<'JSON'
{{"summary": {{"colour_accuracy": 1.0, "shape_accuracy": 0.75, "motion_accuracy": 0.5,
  "shape_accuracy_by_shape": {{"star": "3 / 4"}},
  "shape_accuracy_by_shape_and_size": {{"star": {{"small": "1 / 2", "large": "2 / 2"}}}},
  "settings": {{"sampler": "euler", "steps": 30, "guidance": 4.0}}}}}}
JSON
  mkdir -p "$dir/eval_dit" && echo "png of $dir" > "$dir/eval_dit/sheet.png"
fi
[ "$1" != train ] || sleep "${{FAKE_TRAIN_S:-0}}"
"""


def returned(out: pathlib.Path, into: pathlib.Path) -> dict[str, str]:
    """What the device would return from OUT (at most 8 files), unpacked into ``into``: name -> text."""
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8, files
    into.mkdir()
    for name in files:
        if name.endswith(".tar.gz") or name.endswith(".tar"):
            with tarfile.open(out / name) as tar:
                tar.extractall(into, filter="data")
        else:
            shutil.copy(out / name, into / name)
    return {p.name: p.read_text() for p in into.iterdir()}


def run_ab(tmp_path, **env) -> tuple[list[list[str]], subprocess.CompletedProcess]:
    """Runs ab_recipe.sh into tmp_path/runs and tmp_path/out with a stand-in jaxsora that logs
    "CUDA_VISIBLE_DEVICES args" and writes an eval JSON; returns the logged calls and the result."""
    log = tmp_path / "calls.txt"
    fake = tmp_path / "fake_jaxsora"
    fake.write_text(FAKE_EVAL.format(log=log))
    fake.chmod(0o755)
    res = subprocess.run(
        ["bash", "experiments/synthetic/ab_recipe.sh", str(tmp_path / "runs"), str(tmp_path / "out")],
        cwd=REPO,
        env={**os.environ, "JAXSORA": str(fake), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return [line.split() for line in log.read_text().splitlines()], res


def test_ab_recipe_runs_each_arm_on_its_own_gpu_with_its_own_settings(tmp_path):
    out = tmp_path / "out"
    calls, _ = run_ab(
        tmp_path,
        ARMS="a b c",
        ARM_B="--config.patch=(1,1,1)",
        VAE_C="--config.vae_train.latent_noise=0.3",
        ENV_C="CLIPS=123",
        EXTRA_EVALS="--guidance 7;--sampler heun",
        EXTRA_A="",
    )
    by_arm = {
        arm: [c for c in calls if any(a.startswith(str(tmp_path / "runs" / arm) + "/") for a in c)]
        for arm in "abc"
    }
    # GPU i for the i-th arm; each arm's overrides reach its own commands only.
    assert {c[0] for c in by_arm["a"]} == {"0"} and {c[0] for c in by_arm["c"]} == {"2"}
    (train_b,) = [c for c in by_arm["b"] if c[1] == "train"]
    assert "--config.patch=(1,1,1)" in train_b
    (vae_c,) = [c for c in by_arm["c"] if c[1] == "train-vae"]
    noise_c = [a for a in vae_c if a.startswith("--config.vae_train.latent_noise=")]
    assert noise_c == [
        "--config.vae_train.latent_noise=0.6",
        "--config.vae_train.latent_noise=0.3",
    ]  # last wins
    assert not any("latent_noise=0.3" in a for c in by_arm["a"] + by_arm["b"] for a in c)
    (encode_c,) = [c for c in by_arm["c"] if c[1] == "encode"]
    assert encode_c[encode_c.index("--max-clips") + 1] == "123"
    # What comes back: summary.txt, arms.tar.gz (logs and eval JSONs) and sheets_1.tar (contact sheets).
    assert sorted(p.name for p in out.iterdir()) == ["arms.tar.gz", "sheets_1.tar", "summary.txt"]
    got = returned(out, tmp_path / "returned")
    # Extra evaluations: none for arm a (EXTRA_A=""), both for b and c.
    assert sorted(n for n in got if n.startswith("eval_dit_")) == [
        "eval_dit_a.json",
        "eval_dit_b.json",
        "eval_dit_b_x1.json",
        "eval_dit_b_x2.json",
        "eval_dit_c.json",
        "eval_dit_c_x1.json",
        "eval_dit_c_x2.json",
    ]
    assert sorted(n for n in got if n.startswith("sheet_")) == [
        "sheet_a.png",
        "sheet_b.png",
        "sheet_b_x1.png",
        "sheet_b_x2.png",
        "sheet_c.png",
        "sheet_c_x1.png",
        "sheet_c_x2.png",
    ]
    assert {"log_a.txt", "log_b.txt", "log_c.txt"} <= set(got)
    evals_b = [c for c in by_arm["b"] if c[1] == "eval-dit"]  # the recipe's, then the two extra ones
    assert evals_b[1][-2:] == ["--guidance", "7"] and evals_b[2][-2:] == ["--sampler", "heun"]
    assert "--no-vae-ceiling" not in evals_b[0] and all("--no-vae-ceiling" in c for c in evals_b[1:])
    summary = got["summary.txt"].splitlines()
    assert len(summary) == 7
    assert "shape 75%" in summary[0] and "stars 3/4 (s 1/2 l 2/2)" in summary[0]
    assert "evaluated at" in summary[0]  # from the arm's log, log_a.txt


def test_ab_recipe_rejects_a_bad_arm_name(tmp_path):
    res = subprocess.run(
        ["bash", "experiments/synthetic/ab_recipe.sh", str(tmp_path / "runs"), str(tmp_path / "out")],
        cwd=REPO,
        env={**os.environ, "ARMS": "a B-2"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "got 'B-2'" in res.stderr


def gpus_on_path(tmp_path, n: int) -> str:
    """A PATH whose nvidia-smi lists n GPUs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(
        "#!/usr/bin/env bash\n" + "".join(f'echo "GPU {i}: NVIDIA H200 (UUID: {i})"\n' for i in range(n))
    )
    smi.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


def test_ab_recipe_takes_a_committed_arm_set_and_runs_as_many_arms_as_gpus(tmp_path):
    calls, res = run_ab(
        tmp_path, PATH=gpus_on_path(tmp_path, 2), ARMS_FILE="experiments/synthetic/arms/stars.sh"
    )
    assert "2 GPUs for 8 arms: running p1 control; skipped linear p1_linear" in res.stdout
    (train_p1,) = [c for c in calls if c[1] == "train" and str(tmp_path / "runs" / "p1" / "dit") in c]
    assert "--config.patch=(1,1,1)" in train_p1 and "--config.packing.seq_len=2560" in train_p1
    got = returned(tmp_path / "out", tmp_path / "returned")
    assert sorted(n for n in got if n.startswith("eval_dit_")) == [
        "eval_dit_control.json",
        "eval_dit_p1.json",
    ]


def test_the_combined_arm_set_runs_the_recipe_then_the_recipe_without_each_change(tmp_path):
    calls, res = run_ab(
        tmp_path, PATH=gpus_on_path(tmp_path, 4), ARMS_FILE="experiments/synthetic/arms/combined.sh"
    )
    assert (
        "4 GPUs for 7 arms: running combined_muon combined_muon_wait combined control; skipped no_ln w384 again"
        in res.stdout
    )
    by_gpu = {}
    for c in calls:
        if c[1] in ("train-vae", "train", "eval-dit"):
            by_gpu.setdefault(c[0], {}).setdefault(c[1], []).append(c)
    # GPU 0: the recipe as committed; 1: its DiT waits for the whole encode; 2: AdamW instead of Muon;
    # 3: the nineteenth session's recipe (384 wide, AdamW, no latent noise, waiting)
    for gpu, noise, start_parts, adamw, w384 in (
        ("0", "0.6", 1, False, False),
        ("1", "0.6", 0, False, False),
        ("2", "0.6", 1, True, False),
        ("3", "0", 0, True, True),
    ):
        stages = by_gpu[gpu]
        (vae,), (train,) = stages["train-vae"], stages["train"]
        assert f"--config.vae_train.latent_noise={noise}" in vae
        assert f"--config.train.start_with_parts={start_parts}" in train
        assert ("--config.train.optim.kind=adamw" in train) == adamw
        assert ("--config.train.optim.lr=1e-3" in train) == adamw
        assert ("--config.dit.width=384" in train) == w384
        assert 450 <= dit_time_limit([c[1:] for c in stages["train"]]) <= 460  # 570 - 110 - ~0
        evals = stages["eval-dit"]
        assert len(evals) == 2 and evals[1][-2:] == ["--sampler", "heun"]
    got = returned(tmp_path / "out", tmp_path / "returned")
    assert {"eval_dit_combined_muon.json", "eval_dit_combined_muon_x1.json", "eval_dit_control.json"} <= set(
        got
    )


def test_ab_recipe_stopped_at_the_time_limit_returns_the_logs_so_far(tmp_path):
    # Eight arms (more files than the device returns) whose DiT training outlasts the call: on SIGTERM, OUT
    # gets the arms' logs so far, packed.
    log = tmp_path / "calls.txt"
    fake = tmp_path / "fake_jaxsora"
    fake.write_text(FAKE_EVAL.format(log=log))
    fake.chmod(0o755)
    arms = " ".join(f"a{i}" for i in range(8))
    printed = tmp_path / "printed.txt"
    with printed.open("w") as sink:  # a file, not a pipe: the arms still running keep their output open
        proc = subprocess.Popen(
            ["bash", "experiments/synthetic/ab_recipe.sh", str(tmp_path / "runs"), str(tmp_path / "out")],
            cwd=REPO,
            env={**os.environ, "JAXSORA": str(fake), "ARMS": arms, "FAKE_TRAIN_S": "60"},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while not log.exists() or log.read_text().count(" train ") < 8:
            assert time.monotonic() < deadline, "the arms never reached their DiT training"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)  # the main script only, as a shell's `timeout` would
        proc.wait(timeout=40)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the arms' stand-ins still sleeping
    stdout = printed.read_text()
    assert proc.returncode == 143, stdout
    assert "stopped by a signal" in stdout
    got = returned(tmp_path / "out", tmp_path / "returned")
    assert sorted(got) == [f"log_a{i}.txt" for i in range(8)]  # no evaluation yet: the logs alone
    assert all("[recipe] VAE trained" in got[f"log_a{i}.txt"] for i in range(8))


def ab_summary_of(tmp_path, option: str, videos: list[dict]) -> str:
    """What ``ab_summary.py OPTION`` prints over one eval JSON per video (each with that one video)."""
    files = []
    for i, video in enumerate(videos):
        files.append(tmp_path / f"eval_dit_{i}.json")
        files[-1].write_text(json.dumps({"summary": {}, "videos": [video]}))
    res = subprocess.run(
        [sys.executable, "experiments/synthetic/ab_summary.py", option, *map(str, files)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_ab_summary_pools_shape_reads_over_eval_files(tmp_path):
    def obj(shape, size, got, scores):
        return {
            "asked": {"shape": shape, "size": size},
            "got": None if got is None else {"shape": got, "shape_scores": scores},
        }

    first = [
        obj("star", "small", "circle", {"star": 0.6, "circle": 0.7}),
        obj("star", "small", "star", {"star": 0.8, "circle": 0.5}),
    ]
    second = [obj("star", "small", None, {}), obj("circle", "large", "circle", {"circle": 0.9, "star": 0.4})]
    printed = ab_summary_of(tmp_path, "--shapes", [{"read": first}, {"read": second}])
    rows = {line.split(" | ")[0].lstrip("| "): line for line in printed.splitlines()[2:]}
    assert list(rows) == ["circle, large", "star, small"]
    # 1 of 3 small stars read right; median asked-shape score over the two scored ones 0.7, best 0.75.
    assert rows["star, small"] == "| star, small | 1 / 3 (33%) | 0.70 | 0.75 | circle 1, not found 1 |"
    assert rows["circle, large"] == "| circle, large | 1 / 1 (100%) | 0.90 | 0.90 | - |"


def test_ab_summary_splits_shape_reads_by_visibility(tmp_path):
    # A new JSON keeps each object's status; an older one says "partly visible" in the object's prompt clause.
    def obj(shape, got, status=None):
        asked = {"shape": shape, "size": "small", "colour": "red"}
        if status:
            asked["status"] = status
        return {"asked": asked, "got": None if got is None else {"shape": got}}

    new = {
        "prompt": "ignored when the statuses are kept",
        "read": [obj("star", "circle", "partial"), obj("circle", "circle", "stays")],
        "vae_read": [obj("star", "star", "partial"), obj("circle", "circle", "stays")],
    }
    old = {
        "prompt": "A small red star moves left, partly visible on the right, while a small red square stays still.",
        "read": [obj("star", "star"), obj("square", None)],
    }
    lines = ab_summary_of(tmp_path, "--visibility", [new, old]).splitlines()
    assert lines[2:4] == [
        "| wholly in the frame at some time | 1 / 2 (50%) | 1 / 2 | 1 / 1 (100%) |",
        "| partly visible throughout | 1 / 2 (50%) | 1 / 2 | 1 / 1 (100%) |",
    ]
    # Per asked shape (the samples' reads only): the new JSON's partial star read as a circle, the old one's
    # partly visible star read right; its square, wholly in the frame, was not found.
    assert lines[7:] == [
        "| circle | 1 / 1 | - |",
        "| square | 0 / 1; not found 1 | - |",
        "| star | - | 1 / 2; circle 1 |",
    ]
