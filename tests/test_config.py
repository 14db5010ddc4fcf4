import re
import subprocess
import sys

import pytest

from jaxsora.config import ConfigError, load_config, split_override_args


def test_tiny_loads_and_is_locked():
    config = load_config("configs/tiny.py")
    assert config.data.source == "synthetic"
    with pytest.raises(AttributeError):
        config.data.new_key = 1


def test_preset_name_resolves():
    assert load_config("tiny").data.max_frames == load_config("configs/tiny.py").data.max_frames


@pytest.mark.parametrize(
    "override, key, value",
    [
        ("data.max_frames=33", "max_frames", 33),
        ("data.fps=12", "fps", 12.0),
        ("data.shuffle=false", "shuffle", False),
        ("data.crop=square", "crop", "square"),
    ],
)
def test_overrides_are_typed(override, key, value):
    config = load_config("configs/tiny.py", [override])
    assert config.data[key] == value and type(config.data[key]) is type(value)


def test_split_override_args_both_forms():
    overrides, rest = split_override_args(
        ["--config", "x.py", "--config.a.b=1", "--config.c", "2", "--out", "d"]
    )
    assert overrides == ["a.b=1", "c=2"]
    assert rest == ["--config", "x.py", "--out", "d"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.fpss=3", "unknown config key 'data.fpss' (did you mean 'data.fps'?)"),
        ("data.max_frames=abc", "config key 'data.max_frames' expects an integer, got 'abc'"),
        ("data.shuffle=maybe", "config key 'data.shuffle' expects true/false"),
        ("nope.x=1", "unknown config key 'nope.x'"),
        ("data=1", "is a section"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("configs/tiny.py", [override])


def test_missing_config_file_lists_presets():
    with pytest.raises(ConfigError, match="not found.*tiny"):
        load_config("configs/nope.py")


def test_cli_error_is_one_line_without_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "jaxsora.cli", "config", "show", "--config.data.fpss=3"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip() == "jaxsora: error: unknown config key 'data.fpss' (did you mean 'data.fps'?)"
    )
    assert "Traceback" not in result.stderr


def test_cli_help_for_every_command():
    for args in (["--help"], ["data", "--help"], ["data", "preview", "--help"], ["config", "show", "--help"]):
        result = subprocess.run([sys.executable, "-m", "jaxsora.cli", *args], capture_output=True, text=True)
        assert result.returncode == 0 and "usage: jaxsora" in result.stdout


def test_model_presets_load_and_have_their_sizes():
    from jaxsora.models.dit import DiTConfig

    sizes = {}
    for name, text_dim in (("tiny", 64), ("small", 256), ("base", 512), ("wan13b_shape", 4096)):
        config = load_config(f"configs/{name}.py", [])
        cfg = DiTConfig.from_config(config.dit, patch_dim=64, text_dim=text_dim, max_segments=4)
        sizes[name] = cfg.param_count()
    assert sizes["tiny"] < sizes["small"] < sizes["base"] < sizes["wan13b_shape"]
    assert 1.35e9 < sizes["wan13b_shape"] < 1.5e9  # Wan 2.1's 1.3B DiT: ~1.42B parameters
    wan = load_config("configs/wan13b_shape.py", [])
    assert (wan.dit.depth, wan.dit.width, wan.dit.num_heads, wan.dit.head_dim, wan.dit.mlp_dim) == (
        30,
        1536,
        12,
        128,
        8960,
    )


def test_large_presets_do_not_inherit_the_synthetic_recipes_settings():
    """base.py starts from small.py (and wan13b_shape.py from base.py): small's unrolled blocks, Muon, time box
    and fixed timestep shift suit its 5-minute synthetic recipe only. Scanned, the 30-block Wan-shape step
    compiles in ~20 s (~70 s unrolled); a 230 s time limit would stop a 200k-step run after four minutes."""
    small = load_config("configs/small.py", [])
    assert small.dit.scan is False and small.train.time_limit_s > 0  # what the large presets must undo
    assert small.train.optim.kind == "muon"
    for name in ("base", "wan13b_shape"):
        config = load_config(f"configs/{name}.py", [])
        assert config.dit.scan is True, name
        assert config.train.time_limit_s == 0 and config.train.schedule == "steps", name
        assert config.diffusion.shift_base < config.diffusion.shift_max, name  # grows with the token count
        assert config.text.max_len >= 256, name  # descriptive captions, not the synthetic world's <= 64 words
        assert config.train.optim.kind == "adamw", name  # small's Muon is measured on its recipe only


def test_compiler_options_turn_triton_gemm_off_on_gpu_only(monkeypatch):
    import jax
    import ml_collections

    from jaxsora import parallel

    config = load_config("tiny")
    assert config.xla.gpu_triton_gemm is False
    assert parallel.compiler_options(config) is None  # CPU: no GPU option is passed
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert parallel.compiler_options(config) == {"xla_gpu_enable_triton_gemm": False}
    on = load_config("tiny", ["xla.gpu_triton_gemm=true"])
    assert parallel.compiler_options(on) is None
    old = ml_collections.ConfigDict({"train": {"steps": 1}})  # a run config saved before the section existed
    assert parallel.compiler_options(old) is None
