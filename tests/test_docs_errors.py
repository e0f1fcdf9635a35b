"""The user docs cannot drift from the code.

- every ``RunConfig`` field (and every ``augment.*`` field) is documented in docs/configuration.md;
- every option of ``blitz run`` (taken from the typer app itself) appears in
  docs/configuration.md or docs/strategies.md;
- every ``BLITZ_*`` environment variable the code reads is documented in docs/configuration.md;
- docs/troubleshooting.md explains every exit code blitz's errors use, and --debug/BLITZ_DEBUG.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main

from blitz import cli, errors
from blitz.config import AugmentConfig, RunConfig

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
INTERNAL_ENV = {"BLITZ_COMMAND_LINE", "BLITZ_FINISHED_FILE"}  # set by blitz itself for its own processes, not user settings


def read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def run_options() -> list[str]:
    command = typer.main.get_command(cli.app)
    run = command.commands["run"]  # type: ignore[attr-defined]
    return sorted({opt for param in run.params for opt in [*param.opts, *param.secondary_opts]})


@pytest.mark.parametrize("field", sorted(RunConfig.model_fields))
def test_every_config_field_is_documented(field: str) -> None:
    assert f"`{field}`" in read("configuration.md"), f"RunConfig.{field} is missing from docs/configuration.md"


@pytest.mark.parametrize("field", sorted(AugmentConfig.model_fields))
def test_every_augment_field_is_documented(field: str) -> None:
    assert f"`augment.{field}`" in read("configuration.md"), f"augment.{field} is missing from docs/configuration.md"


def test_the_run_command_has_options() -> None:
    options = run_options()
    assert "--epochs" in options and "--nproc-per-node" in options and "--no-shuffle" in options


@pytest.mark.parametrize("option", run_options())
def test_every_run_option_is_documented(option: str) -> None:
    text = read("configuration.md") + read("strategies.md")
    # the option as a whole word: '--lr' must not be satisfied by '--lr-something'
    assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), (
        f"'blitz run {option}' is missing from docs/configuration.md and docs/strategies.md"
    )


def env_vars_in_code() -> set[str]:
    found: set[str] = set()
    for folder in ("core", "plugins"):
        for path in (ROOT / folder).glob("*.py"):
            found |= set(re.findall(r"\bBLITZ_[A-Z_]+\b", path.read_text(encoding="utf-8")))
    return found - INTERNAL_ENV


def test_every_environment_variable_is_documented() -> None:
    text = read("configuration.md")
    variables = env_vars_in_code()
    assert "BLITZ_DATA_ROOT" in variables  # the scan works
    missing = sorted(v for v in variables if f"`{v}`" not in text)
    assert not missing, f"environment variables missing from docs/configuration.md: {missing}"


def error_classes() -> list[type[errors.BlitzError]]:
    return [
        obj for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, errors.BlitzError)
    ]


def test_troubleshooting_explains_every_exit_code_and_debug() -> None:
    text = read("troubleshooting.md")
    codes = {cls.exit_code for cls in error_classes()} | {128 + 2, 128 + 15, 128 + 1}  # Interrupted: SIGINT, SIGTERM, SIGHUP
    for code in sorted(codes):
        assert f"`{code}`" in text, f"exit code {code} is not explained in docs/troubleshooting.md"
    assert "--debug" in text and "BLITZ_DEBUG" in text


def test_docs_index_links_every_page() -> None:
    index = read("index.md")
    for page in sorted(p.name for p in DOCS.glob("*.md") if p.name != "index.md"):
        assert f"({page})" in index, f"docs/index.md does not link {page}"


def documented_block(text: str, start: str, fence: str) -> str:
    """The fenced block of ``fence`` type whose first line starts with ``start``."""
    for block in re.findall(rf"```{fence}\n(.*?)```", text, re.S):
        if block.startswith(start):
            return block
    raise AssertionError(f"no ```{fence} block starting with {start!r}")


def config_rows(table: str) -> list[tuple[str, ...]]:
    """(key, value, from) of each row of a printed --print-config table."""
    return [tuple(cell.strip() for cell in line.split("│")[1:4]) for line in table.splitlines() if line.startswith("│")]


def test_the_print_config_example_is_what_blitz_prints(tmp_path, monkeypatch) -> None:
    """configuration.md's precedence example, run as written: the same rows, values and sources."""
    from typer.testing import CliRunner

    text = read("configuration.md")
    (tmp_path / "my-run.toml").write_text(documented_block(text, "# my-run.toml", "toml"))
    example = documented_block(text, "$ blitz run --config my-run.toml", "console")
    command = example.splitlines()[0].removeprefix("$ blitz ").split()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(cli.app, command)
    assert result.exit_code == 0, result.output
    assert config_rows(result.output) == config_rows(example)
