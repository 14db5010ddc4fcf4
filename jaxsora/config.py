"""Configs: Python files in ``configs/`` whose ``get_config()`` returns an ``ml_collections.ConfigDict``,
overridden from the command line as ``--config.a.b=value`` (or ``--config.a.b value``).

Overrides are checked against the config: an unknown key or a value of the wrong type is a
:class:`ConfigError` naming the key (the CLI prints it as a one-line error, no traceback). The returned
config is locked, so code cannot add keys by accident either.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import pathlib
from collections.abc import Iterable, Sequence

import ml_collections

CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A bad config file, key or value; the message names the key and the fix."""


def resolve_config_path(name: str) -> pathlib.Path:
    """``configs/tiny.py``, an absolute path, or a bare preset name such as ``tiny``."""
    path = pathlib.Path(name)
    candidates = [path]
    if not path.is_absolute():
        candidates += [CONFIG_DIR / path.name, CONFIG_DIR / f"{path.name}.py"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    presets = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_"))
    raise ConfigError(f"config file '{name}' not found (presets in {CONFIG_DIR}: {', '.join(presets)})")


def preset(name: str) -> ml_collections.ConfigDict:
    """An unlocked copy of a preset, for config files that start from another (``preset("tiny")``)."""
    config = _load_file(resolve_config_path(name))
    config.unlock()
    return config


def _load_file(path: pathlib.Path) -> ml_collections.ConfigDict:
    spec = importlib.util.spec_from_file_location(f"jaxsora_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # a syntax error in the user's config file: name the file
        raise ConfigError(f"cannot load config {path}: {type(e).__name__}: {e}") from e
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config {path} has no get_config() function")
    config = module.get_config()
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"get_config() in {path} must return an ml_collections.ConfigDict")
    return config


def load_config(name: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """Loads a config file and applies ``key=value`` overrides (keys without the ``config.`` prefix)."""
    config = _load_file(resolve_config_path(name))
    apply_overrides(config, overrides)
    config.lock()
    return config


def split_override_args(argv: Iterable[str]) -> tuple[list[str], list[str]]:
    """Separates ``--config.a.b=v`` / ``--config.a.b v`` arguments from the rest; returns (overrides, rest)."""
    argv = list(argv)
    overrides, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            body = arg[len("--config.") :]
            if "=" in body:
                overrides.append(body)
            elif i + 1 < len(argv):
                overrides.append(f"{body}={argv[i + 1]}")
                i += 1
            else:
                raise ConfigError(f"override '{arg}' has no value (write {arg}=VALUE)")
        else:
            rest.append(arg)
        i += 1
    return overrides, rest


def _all_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in config.items():
        keys.append(prefix + key)
        if isinstance(value, ml_collections.ConfigDict):
            keys += _all_keys(value, prefix + key + ".")
    return keys


def _parse_value(key: str, text: str, current):
    """Converts the override text to the type of the existing value."""
    if isinstance(current, bool):
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"config key '{key}' expects true/false, got '{text}'")
    if isinstance(current, int):
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"config key '{key}' expects an integer, got '{text}'") from None
    if isinstance(current, float):
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"config key '{key}' expects a number, got '{text}'") from None
    if isinstance(current, str):
        return text
    if isinstance(current, tuple | list):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = tuple(part.strip() for part in text.split(",") if part.strip())
        if not isinstance(value, tuple | list):
            value = (value,)
        if current and any(not isinstance(v, type(current[0])) for v in value):
            if isinstance(current[0], float) and all(isinstance(v, int | float) for v in value):
                value = [float(v) for v in value]
            else:
                raise ConfigError(
                    f"config key '{key}' expects a sequence of {type(current[0]).__name__}, got '{text}'"
                )
        return type(current)(value)
    if current is None:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    raise ConfigError(
        f"config key '{key}' has a value of type {type(current).__name__} that cannot be overridden"
    )


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
    """Applies ``a.b=value`` overrides in place, with errors that name the key."""
    known = _all_keys(config)
    for override in overrides:
        key, sep, text = override.partition("=")
        key = key.removeprefix("--").removeprefix("config.")
        if not sep:
            raise ConfigError(f"override '{override}' must look like --config.{key}=VALUE")
        node = config
        for part in key.split(".")[:-1]:
            node = node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
        leaf = key.split(".")[-1]
        if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{key}'{hint}")
        current = node[leaf]
        if isinstance(current, ml_collections.ConfigDict):
            raise ConfigError(f"config key '{key}' is a section; override one of its fields instead")
        value = _parse_value(key, text, current)
        try:
            node[leaf] = value
        except TypeError as e:
            raise ConfigError(f"config key '{key}': {e}") from None
