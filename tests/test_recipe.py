"""experiments/synthetic/recipe.sh's stage plumbing, with a stand-in for the jaxsora command (no GPU, no jax)."""

import os
import pathlib
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_recipe(tmp_path, encode_seconds: float, **env) -> tuple[list[list[str]], str]:
    """Runs the recipe with JAXSORA = a script that logs its arguments (and sleeps in `encode`); returns the
    logged command lines and the recipe's output."""
    log = tmp_path / "calls.txt"
    fake = tmp_path / "fake_jaxsora"
    fake.write_text(
        f'#!/usr/bin/env bash\necho "$*" >> {log}\n[ "$1" != encode ] || sleep {encode_seconds}\n'
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
    assert out.returncode == 0, out.stderr
    return [line.split() for line in log.read_text().splitlines()], out.stdout


def dit_time_limit(calls) -> int:
    (train,) = [c for c in calls if c[0] == "train"]
    (limit,) = [a for a in train if a.startswith("--config.train.time_limit_s=")]
    return int(limit.split("=")[1])


def test_recipe_runs_its_stages_and_gives_the_dit_its_budget(tmp_path):
    calls, out = run_recipe(tmp_path, 0, DIT_SECONDS="200", DIT_ARGS="--config.train.optim.lr=5e-4")
    assert [c[0] for c in calls] == ["train-vae", "encode", "train", "eval-dit"]
    assert dit_time_limit(calls) == 200
    assert "--config.train.optim.lr=5e-4" in calls[2]
    assert "the DiT gets" not in out


def test_recipe_gives_the_dit_less_time_on_a_slow_machine(tmp_path):
    # The encode "takes" 2 s: the DiT gets DEADLINE_S - 2 s - EVAL_RESERVE_S, here ~198 s instead of 250.
    calls, out = run_recipe(tmp_path, 2, DIT_SECONDS="250", DEADLINE_S="300", EVAL_RESERVE_S="100")
    assert 196 <= dit_time_limit(calls) <= 198
    assert "the DiT gets" in out
    # ... and never less than 60 s.
    (tmp_path / "floor").mkdir()
    calls, _ = run_recipe(tmp_path / "floor", 2, DIT_SECONDS="250", DEADLINE_S="150", EVAL_RESERVE_S="100")
    assert dit_time_limit(calls) == 60
