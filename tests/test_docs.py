"""The README matches the code: every `jaxsora` command line it shows parses, with `--config.*` overrides that
name keys of the config it loads; every experiment script it runs takes the options it is shown with; every
repository file it names exists."""

import pathlib
import re
import shlex

import pytest

from jaxsora import cli
from jaxsora.config import load_config, split_override_args

REPO = pathlib.Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
# One line per shell command: continuation lines joined.
LINES = re.sub(r"\\\n\s*", " ", README).splitlines()
END = r"(?=`|\s+#|\s*&&|\s*;|\s*\||$)"  # where a shown command ends: a code span, a comment, the next command


def shown(pattern: str) -> list[str]:
    """Every command line of the README matching ``pattern`` (a regex for its start), up to where it ends."""
    found = []
    for line in LINES:
        for m in re.finditer(pattern + r"[^`#;&|]*?" + END, line):
            found.append(m.group(0).strip())
    return sorted(set(found))


COMMANDS = sorted(cli.build_parser()._subparsers._group_actions[0].choices, key=len, reverse=True)
SUBCOMMANDS = {"data", "config"}  # `jaxsora data preview`, `jaxsora config show`
JAXSORA = shown(rf"\bjaxsora (?:{'|'.join(COMMANDS)})(?![\w-])")
SCRIPTS = shown(r"\bpython3? experiments/[\w/]+\.py")


def test_the_readme_shows_commands():
    assert len(JAXSORA) >= 15 and len(SCRIPTS) >= 5  # the patterns still find them


@pytest.mark.parametrize("command", JAXSORA)
def test_jaxsora_command_lines_parse_and_their_overrides_exist(command):
    argv = shlex.split(command)[1:]
    parser = cli.build_parser()
    if len(argv) == 1 or (argv[0] in SUBCOMMANDS and len(argv) == 2):
        return  # the command named in prose, without arguments
    overrides, rest = split_override_args(argv)
    try:
        args = parser.parse_args(rest)
    except SystemExit:
        pytest.fail(f"README shows a command line the CLI rejects: {command}")
    if overrides:  # a key the config lacks raises ConfigError (eval-vae: the trained run's, from tiny.py too)
        load_config(getattr(args, "config", cli.DEFAULT_CONFIG), overrides)


@pytest.mark.parametrize("command", SCRIPTS)
def test_experiment_scripts_take_the_options_the_readme_shows(command):
    tokens = shlex.split(command)
    script = next(t for t in tokens if t.startswith("experiments/"))
    source = (REPO / script).read_text()
    for token in tokens:
        option = token.split("=")[0]
        if option.startswith("--") and not option.startswith("--config."):
            assert f'"{option}"' in source, f"{script} has no option {option} (README: {command})"


def test_files_the_readme_names_exist():
    named = {
        p.rstrip(".,:;")
        for p in re.findall(r"\b(?:configs|experiments|jaxsora|tests|colab|\.ci)/[^\s`'\")\],]+", README)
        if not any(c in p for c in "{*<$")  # patterns such as results/recipe_log_2026-11-23{c,d}.txt
    }
    missing = [
        p
        for p in sorted(named)
        if not (REPO / p).exists() and not (REPO / p).with_suffix(".py").exists()  # modules named without .py
    ]
    assert not missing, f"README names files that do not exist: {missing}"
